"""FGVC-Aircraft 2013b (Maji et al. [17]) as the paper's two ITL datasets, Boeing and Airbus.

Fine categories are the 100 variants; the parent group of a variant is its
manufacturer, read from the ``images_manufacturer_*`` annotations.  The
dataset's "trainval" split is the ITL training subset and "test" the test
subset.  Files and layout are torchvision's :class:`~torchvision.datasets.FGVCAircraft`
(``<root>/fgvc-aircraft-2013b/data/...``); Table 1 needs only the annotation
text files, not the images.
"""

import os
from collections import defaultdict
from pathlib import Path

from jtln.data.itl import Sample, build_itl, cache_dir

ARCHIVE = "fgvc-aircraft-2013b.tar.gz"
#: where the archive (2.75 GB, images and annotations) is published
URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
#: replaces :data:`URL` when set: a URL whose folder holds the archive (a local mirror; the tests' HTTP server)
MIRROR_ENV = "JTLN_FGVC_MIRROR"
#: the archive's size as the dataset's page states it (2.75 GB); a fetch needs about twice that while archive and images coexist
ARCHIVE_BYTES = 2.75e9
#: the copyright banner at the bottom of every image, in pixels, which :func:`load_rgb` crops
BANNER = 20
HOW_TO_GET = (
    "Get it with download=True (python -m reproduce ... --download fetches the 2.75 GB archive into the root), or from "
    "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (fgvc-aircraft-2013b.tar.gz; the 375 KB "
    "annotations-only archive suffices for Table 1), and pass the folder that holds fgvc-aircraft-2013b/ "
    "as root (--data-root) or in $JTLN_FGVC_ROOT."
)


def default_root():
    """Where FGVC-Aircraft goes when no root is given: ``$JTLN_CACHE/fgvc-aircraft`` (default ``~/.cache/jtln/fgvc-aircraft``)."""
    return cache_dir() / "fgvc-aircraft"


def resolve_root(root=None):
    """The folder that holds (or will hold) ``fgvc-aircraft-2013b/``: ``root``, ``$JTLN_FGVC_ROOT``, or :func:`default_root`."""
    return Path(root or os.environ.get("JTLN_FGVC_ROOT") or default_root())


def data_dir(root):
    return Path(root) / "fgvc-aircraft-2013b" / "data"


def annotated_images(root):
    """The path of every image the annotation files list (trainval and test), in their order."""
    data = data_dir(root)
    return [data / "images" / f"{image_id}.jpg" for split in ("trainval", "test")
            for image_id, _ in _read_pairs(data / f"images_variant_{split}.txt")]


def missing_images(root, images=None):
    """The annotated images (or ``images``) that are not files under ``root``."""
    return [path for path in (annotated_images(root) if images is None else images) if not Path(path).is_file()]


def fetch(root, keep_archive=False, progress=True, timeout_s=60, attempts=2):
    """Download the archive into ``root`` and extract it, so that every annotated image is there; returns ``root``.

    The archive is downloaded to a ``.part`` file (a progress bar) and renamed
    only once complete; an archive that does not extract whole (truncated,
    corrupt) is deleted and downloaded again, up to ``attempts`` times — never
    trusted.  No checksum of the archive is published, so it is verified by
    its content: after extraction every image the annotation files list must
    be there, or FileNotFoundError says how many are missing.  The archive is
    deleted after extraction unless ``keep_archive``.  Annotation files
    already under ``root`` are overwritten by the archive's.
    """
    import tarfile
    import zlib

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE
    url = (os.environ.get(MIRROR_ENV) or URL).rstrip("/") + "/" + ARCHIVE
    errors = []
    for _ in range(attempts):
        if not archive.is_file():
            _download(url, archive, progress, timeout_s)
        try:
            _extract(archive, root, progress)
            break
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            errors.append(f"{type(error).__name__}: {error}")
            archive.unlink(missing_ok=True)  # damaged: never used again
    else:
        raise FileNotFoundError(f"FGVC-Aircraft: the archive from {url} did not extract whole in {attempts} attempts "
                                f"({'; '.join(errors)}). {HOW_TO_GET}")
    missing = missing_images(root)
    if missing:
        raise FileNotFoundError(f"FGVC-Aircraft: {len(missing)} annotated images are still missing after extracting {archive} "
                                f"(e.g. {missing[0]}): the archive is not the full FGVC-Aircraft 2013b. {HOW_TO_GET}")
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return root


def _download(url, archive, progress, timeout_s):
    import shutil
    import urllib.request

    from tqdm.auto import tqdm

    partial = archive.with_name(archive.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {archive.name}", disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total is not None and partial.stat().st_size != total:
            raise OSError(f"the download stopped at {partial.stat().st_size} of {total} bytes")
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise FileNotFoundError(f"FGVC-Aircraft: could not download {url} ({error}). {HOW_TO_GET}") from error
    shutil.move(partial, archive)


def _extract(archive, root, progress):
    import tarfile

    from tqdm.auto import tqdm

    with tarfile.open(archive, "r:gz") as tar:
        for member in tqdm(tar, desc=f"extracting {archive.name}", unit=" files", disable=not progress):
            tar.extract(member, root, filter="data")


def _read_pairs(path):
    """Lines ``<image id> <label with spaces>``; a clear error for a missing, empty or corrupt file."""
    if not path.is_file():
        raise FileNotFoundError(f"FGVC-Aircraft annotation file not found: {path}. {HOW_TO_GET}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.strip().split(" ", 1)
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1]:
            raise ValueError(f"corrupt FGVC-Aircraft annotation {path}:{number}: {line!r} (expected '<image id> <label>')")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"FGVC-Aircraft annotation file {path} is empty (truncated download?)")
    return pairs


def needs_fetch(root):
    """Whether the annotation files or any annotated image are missing under ``root``."""
    data = data_dir(root)
    annotations = ["variants.txt"] + [f"images_{kind}_{split}.txt" for kind in ("variant", "manufacturer")
                                      for split in ("trainval", "test")]
    return not all((data / name).is_file() for name in annotations) or bool(missing_images(root))


def fgvc_aircraft_samples(root=None, download=False):
    """All 10,000 images as :class:`Sample` (key = image path) and the manufacturer -> variants map.

    With ``download``, the archive is fetched (:func:`fetch`) when the
    annotation files or any annotated image are missing under the root,
    also where an annotations-only tree exists.
    """
    root = resolve_root(root)
    if download and needs_fetch(root):
        fetch(root)
    data = data_dir(root)
    if not (data / "variants.txt").is_file():
        raise FileNotFoundError(f"FGVC-Aircraft not found: looked for {data / 'variants.txt'}. {HOW_TO_GET}")
    known_variants = set(_read_nonempty_lines(data / "variants.txt"))
    samples, manufacturer_of_variant = [], {}
    for split, subset in (("trainval", "train"), ("test", "test")):
        variant_of = dict(_read_pairs(data / f"images_variant_{split}.txt"))
        manufacturer_of = dict(_read_pairs(data / f"images_manufacturer_{split}.txt"))
        if variant_of.keys() != manufacturer_of.keys():
            raise ValueError(f"FGVC-Aircraft: images_variant_{split}.txt and images_manufacturer_{split}.txt list different images")
        for image_id, variant in variant_of.items():
            if variant not in known_variants:
                raise ValueError(f"FGVC-Aircraft: image {image_id} has variant {variant!r}, which variants.txt does not list")
            manufacturer = manufacturer_of_variant.setdefault(variant, manufacturer_of[image_id])
            if manufacturer != manufacturer_of[image_id]:
                raise ValueError(f"FGVC-Aircraft: variant {variant!r} is listed under {manufacturer!r} and {manufacturer_of[image_id]!r}")
            samples.append(Sample(str(data / "images" / f"{image_id}.jpg"), variant, subset))
    manufacturers = defaultdict(list)
    for variant in sorted(manufacturer_of_variant):
        manufacturers[manufacturer_of_variant[variant]].append(variant)
    return samples, dict(manufacturers)


def _read_nonempty_lines(path):
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"FGVC-Aircraft annotation file {path} is empty")
    return lines


def fgvc_aircraft_itl(group, root=None, download=False):
    """The ITL dataset whose target categories are the variants of manufacturer ``group`` (e.g. "Boeing")."""
    samples, manufacturers = fgvc_aircraft_samples(root, download)
    itl = build_itl("FGVC-Aircraft", samples, manufacturers, group)
    itl.loader = load_rgb
    return itl


def load_rgb(path):
    """An FGVC-Aircraft image without its copyright banner at the bottom (:data:`BANNER` pixels), as is customary."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        return image.crop((0, 0, image.width, image.height - BANNER))
