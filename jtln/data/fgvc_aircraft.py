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

from jtln.data.itl import Sample, build_itl

HOW_TO_GET = (
    "Get it with download=True (python -m reproduce ... --download), or from "
    "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (fgvc-aircraft-2013b.tar.gz; the 375 KB "
    "annotations-only archive suffices for Table 1), and pass the folder that holds fgvc-aircraft-2013b/ "
    "as root (--data-root) or in $JTLN_FGVC_ROOT."
)


def resolve_root(root=None):
    root = root or os.environ.get("JTLN_FGVC_ROOT")
    if not root:
        raise FileNotFoundError(f"FGVC-Aircraft: no root given and $JTLN_FGVC_ROOT is unset. {HOW_TO_GET}")
    return Path(root)


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


def fgvc_aircraft_samples(root=None, download=False):
    """All 10,000 images as :class:`Sample` (key = image path) and the manufacturer -> variants map."""
    root = resolve_root(root)
    if download:
        from torchvision.datasets import FGVCAircraft

        FGVCAircraft(root, split="trainval", download=True)  # fetches and extracts the archive once
    data = root / "fgvc-aircraft-2013b" / "data"
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
    """An FGVC-Aircraft image without its 20-pixel copyright banner at the bottom, as is customary."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        return image.crop((0, 0, image.width, image.height - 20))
