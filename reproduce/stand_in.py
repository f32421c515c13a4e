"""Stand-in FGVC-Aircraft images where the real ones cannot be had: the rehearsal's tree (:mod:`reproduce.rehearsal`).

With the real annotation files, one noise JPEG per listed image under its
real file name, sized from ``images_box.txt`` (the box, as much margin right
as left and below as above, and the copyright banner the loader crops),
beside links to the real annotation files; without them, generated
annotation files at FGVC-Aircraft's scale (100 variants of 100 images;
Boeing's 22 and Airbus's 13 among them).
"""

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: FGVC-Aircraft's manufacturers as the generated annotations draw them: Boeing's and Airbus's variant counts are the real ones
VARIANTS = {"Boeing": 22, "Airbus": 13, **{f"Maker{k:02d}": 5 for k in range(13)}}


def _write_images(job):
    import numpy as np
    from PIL import Image

    folder, images = job
    rng = np.random.default_rng(int(images[0][0]))
    for image_id, width, height in images:
        small = rng.integers(0, 255, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
        Image.fromarray(small).resize((width, height)).save(Path(folder) / f"{image_id}.jpg", quality=85)
    return len(images)


def _generated_annotations(data, per_variant):
    """FGVC-Aircraft's annotation files at its scale, written into ``data``; the listed image ids."""
    variants = {maker: [f"{maker}-{v}" for v in range(n)] for maker, n in VARIANTS.items()}
    (data / "variants.txt").write_text("".join(f"{v}\n" for vs in variants.values() for v in vs))
    image_id, lines = 1_000_000, {}
    n_trainval = round(per_variant * 2 / 3)
    for split, n in (("trainval", n_trainval), ("test", per_variant - n_trainval)):
        for maker, vs in variants.items():
            for variant in vs:
                for _ in range(n):
                    image_id += 1
                    lines.setdefault(split, []).append((str(image_id), variant, maker))
    for split, rows in lines.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v, _ in rows))
        (data / f"images_manufacturer_{split}.txt").write_text("".join(f"{i} {m}\n" for i, _, m in rows))
    return [i for rows in lines.values() for i, _, _ in rows]


def stand_in_tree(work, annotations=None, per_variant=100, width=1000, height=700, processes=None):
    """``<work>/data/fgvc-aircraft-2013b/data``: annotation files and a noise JPEG per listed image (module docstring).

    ``annotations``: a folder holding ``fgvc-aircraft-2013b/data`` with the
    real annotation files, linked (not copied) into the tree, each image
    sized from its box; None: generated annotation files, every image
    ``width`` x ``height``.  Built once for what it is built from (other
    annotations or sizes rebuild it): returns the root and the number of
    images written now (0 when the tree was there).
    """
    from jtln.data import fgvc_aircraft as fgvc

    root = Path(work) / "data"
    data = fgvc.data_dir(root)
    done = data / ".complete"
    source = f"annotations {Path(annotations).absolute()}" if annotations is not None else f"generated {per_variant} {width} {height}"
    if done.is_file() and done.read_text().splitlines()[0] == source:
        return root, 0
    if data.exists():
        shutil.rmtree(data)
    (data / "images").mkdir(parents=True)
    if annotations is not None:
        real = fgvc.data_dir(annotations)
        fgvc.fgvc_aircraft_samples(annotations)  # the annotation files are there and consistent, or a clear error
        for path in sorted(real.glob("*.txt")):
            (data / path.name).symlink_to(path.absolute())
        boxes = {}
        if (real / "images_box.txt").is_file():
            for line in (real / "images_box.txt").read_text().splitlines():
                image_id, *box = line.split()
                xmin, ymin, xmax, ymax = map(int, box)
                boxes[image_id] = (xmax + 1 + xmin, ymax + 1 + ymin + fgvc.BANNER)
        images = [(p.stem, *boxes.get(p.stem, (width, height))) for p in fgvc.annotated_images(root)]
    else:
        images = [(i, width, height) for i in _generated_annotations(data, per_variant)]
    chunks = [(str(data / "images"), images[k:k + 200]) for k in range(0, len(images), 200)]
    with ProcessPoolExecutor(processes or os.cpu_count()) as pool:
        written = sum(pool.map(_write_images, chunks))
    done.write_text(f"{source}\n{written} images\n")
    return root, written
