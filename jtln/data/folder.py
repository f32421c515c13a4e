"""Your own images as an ITL dataset: class folders, as torchvision's ImageFolder reads them.

Layout under ``root``::

    source/<source class>/<image>          every source image
    target/train/<target class>/<image>    the labelled target images (each seed draws its level from them)
    target/test/<target class>/<image>     the target test images

Class names are the folder names, sorted.  Source and target classes must be
disjoint (a source class named like a target class would otherwise be
ambiguous), and the target's train and test folders must hold the same
classes; both are checked, and every class needs an image.  Any image format
that Pillow reads; grey images are used as they are (the cache repeats them
to three channels).
"""

from pathlib import Path

from jtln.data.itl import ITLDataset

#: the extensions read as images (torchvision's ImageFolder's)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "source/<class>/, target/train/<class>/, target/test/<class>/"


def _classes(folder):
    if not folder.is_dir():
        raise FileNotFoundError(f"folder dataset: {folder} is not a folder; expected the layout {LAYOUT} under the root")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"folder dataset: {folder} holds no class folders; expected the layout {LAYOUT}")
    return classes


def _images(folder, classes):
    pool = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise FileNotFoundError(f"folder dataset: class folder {folder / name} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        pool += [(str(f), label) for f in files]
    return pool


def folder_itl(group, root=None, download=False):
    """The ITL dataset of the class folders under ``root`` (layout in the module docstring); ``group`` is its name in the tables.

    ``download`` does not apply (your data is where you put it).
    """
    if not root:
        raise ValueError("folder dataset: no root; set [data] root in the profile or pass --data-root, a folder holding "
                         f"{LAYOUT}")
    root = Path(root).expanduser()
    source_classes, target_classes = _classes(root / "source"), _classes(root / "target" / "train")
    test_classes = _classes(root / "target" / "test")
    if test_classes != target_classes:
        raise ValueError(f"folder dataset: {root / 'target' / 'train'} and {root / 'target' / 'test'} hold different classes "
                         f"({sorted(set(target_classes) ^ set(test_classes))} in only one of them)")
    shared = sorted(set(source_classes) & set(target_classes))
    if shared:
        raise ValueError(f"folder dataset: class(es) {shared} are both source and target classes under {root}; the two label "
                         "spaces must be disjoint (rename the folders)")
    return ITLDataset(name=group, target_classes=target_classes, source_classes=source_classes,
                      target_train=_images(root / "target" / "train", target_classes),
                      target_test=_images(root / "target" / "test", target_classes),
                      source=_images(root / "source", source_classes), loader=load_image)


def load_image(path):
    """An image file as a PIL image (RGB, or L for grey images)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("L" if image.mode in ("1", "L", "I;16", "I") else "RGB")


def unreadable(itl, threads=8):
    """``[(path, reason)]`` of every image of ``itl`` that Pillow cannot decode (an empty file, a truncated or foreign one),
    each image decoded once, in ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    def problem(path):
        try:
            load_image(path).load()
            return None
        except Exception as error:  # noqa: BLE001 -- whatever stops the decoder is what the user must fix
            return path, f"{type(error).__name__}: {error}"

    paths = [path for pool in (itl.target_train, itl.target_test, itl.source) for path, _ in pool]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        return [found for found in pool.map(problem, paths) if found is not None]


def check_images(group, root):
    """Raise ValueError naming every image under ``root`` that does not decode (before any work: the command's checks)."""
    itl = folder_itl(group, root)
    bad = unreadable(itl)
    if bad:
        listed = "\n".join(f"    {path}: {reason}" for path, reason in bad)
        raise ValueError(f"folder dataset: {len(bad)} of the images under {Path(root).expanduser()} cannot be read; remove or "
                         f"replace them:\n{listed}")
    return itl

