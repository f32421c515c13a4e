"""Fashion-MNIST as the offline default benchmark's two ITL datasets, Tops and Footwear.

Parent groups (fine categories in brackets):
tops [T-shirt/top, Pullover, Coat, Shirt], footwear [Sandal, Sneaker, Ankle boot],
other [Trouser, Dress, Bag].  Fashion-MNIST has no per-image trainval/test
beyond its two files, so: labelled target images = a few per target class
drawn by each seed from the train file (scarce, like the paper's ~67 per
class; :func:`jtln.data.itl.draw`); target testing images = all test-file
images of the target classes; source images = train-file images of the
source classes (a profile may subsample them per seed).
"""

import gzip
import os
import shutil
from pathlib import Path

import numpy as np

from jtln.atomic import atomic_path
from jtln.data.itl import Sample, build_itl, cache_dir

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
GROUPS = {
    "Tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "Footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "Other": ["Trouser", "Dress", "Bag"],
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
#: the size of each unzipped file: an idx header (16 bytes for images, 8 for labels) and 28x28 bytes an image, 1 a label
SIZES = {"train-images-idx3-ubyte": 16 + 60_000 * 784, "train-labels-idx1-ubyte": 8 + 60_000,
         "t10k-images-idx3-ubyte": 16 + 10_000 * 784, "t10k-labels-idx1-ubyte": 8 + 10_000}
HOW_TO_GET = ("Delete it and run again with --download (download=True), or install Debian's dataset-fashion-mnist "
              "(apt-get install dataset-fashion-mnist) and omit the root.")
#: replaces torchvision's mirrors when set (a local mirror, or one that a network allows): a URL whose folder holds the .gz files
MIRROR_ENV = "JTLN_FASHION_MNIST_MIRROR"


def resources():
    """``[(file.gz, md5)]`` of the four files, as torchvision checks them."""
    from torchvision.datasets import FashionMNIST

    return list(FashionMNIST.resources)


def mirrors():
    """Where the files are downloaded from: ``$JTLN_FASHION_MNIST_MIRROR`` alone if set, else torchvision's mirrors."""
    from torchvision.datasets import FashionMNIST

    own = os.environ.get(MIRROR_ENV)
    return [own.rstrip("/") + "/"] if own else list(FashionMNIST.mirrors)


def fetch(root, timeout_s=60):
    """Download the four ``.gz`` files into ``<root>/FashionMNIST/raw`` (a progress bar each, md5-checked), then unzip them.

    Files already there with the right checksum are kept.  Every mirror is
    tried for each file; if none serves it intact, FileNotFoundError says
    what failed and the two other ways to get the data.
    """
    import socket

    from torchvision.datasets.utils import check_integrity, download_url

    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # an unreachable mirror fails instead of hanging
    try:
        for filename, md5 in resources():
            failures = []
            for mirror in mirrors():
                if check_integrity(raw / filename, md5):
                    break
                try:
                    download_url(mirror + filename, raw, filename, md5)  # tqdm progress bar; RuntimeError on a bad checksum
                except (OSError, RuntimeError, ValueError) as error:
                    failures.append(f"{mirror}{filename}: {error}")
            if not check_integrity(raw / filename, md5):
                (raw / filename).unlink(missing_ok=True)
                raise FileNotFoundError(
                    f"could not download Fashion-MNIST ({'; '.join(failures)}). Get it another way: `apt-get install "
                    "dataset-fashion-mnist` (Debian), or pass --data-root DIR holding FashionMNIST/raw/ (or set "
                    f"${MIRROR_ENV} to a mirror you can reach)")
    finally:
        socket.setdefaulttimeout(previous)
    return _prepare_from_gz_dir(raw, root)




def _has_raw(root):
    raw = Path(root) / "FashionMNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in FILES)


def _prepare_from_gz_dir(gz_dir, root):
    """torchvision reads ``<root>/FashionMNIST/raw/<file>`` unzipped; unzip the ``.gz`` files there once."""
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        if not (raw / f).is_file():
            try:
                with atomic_path(raw / f) as tmp, gzip.open(Path(gz_dir) / f"{f}.gz") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)  # an interrupted unzip leaves no truncated file
            except (OSError, EOFError) as error:
                raise FileNotFoundError(f"Fashion-MNIST file {Path(gz_dir) / f'{f}.gz'} is damaged ({error}). {HOW_TO_GET}") from error
    return Path(root)


def check_files(root):
    """Raise FileNotFoundError naming the first unzipped file of ``<root>/FashionMNIST/raw`` whose size is not its format's."""
    raw = Path(root) / "FashionMNIST" / "raw"
    for f, size in SIZES.items():
        found = (raw / f).stat().st_size
        if found != size:
            raise FileNotFoundError(f"Fashion-MNIST file {raw / f} is damaged: {found} bytes, expected {size} "
                                    f"(truncated download?). {HOW_TO_GET}")


def locate(root=None, download=False):
    """The root for :class:`torchvision.datasets.FashionMNIST`, found in this order.

    1. ``root`` if given; 2. ``$JTLN_DATA``; 3. the cache (``$JTLN_CACHE`` or
    ``~/.cache/jtln``), filled from Debian's ``dataset-fashion-mnist`` package
    (``/usr/share/datasets/fashion-mnist/*.gz``) when that is installed;
    4. a download (:func:`fetch`) into the cache (or the root given) if
    ``download``.  Otherwise a FileNotFoundError says where it looked and how
    to get the data.
    """
    candidates = [Path(p) for p in (root, os.environ.get("JTLN_DATA")) if p]
    for candidate in candidates:
        if _has_raw(candidate):  # unzip files found only as .gz, where torchvision expects them unzipped
            return _prepare_from_gz_dir(candidate / "FashionMNIST" / "raw", candidate)
    if root is not None and not download:
        raise FileNotFoundError(
            f"Fashion-MNIST not found under {Path(root) / 'FashionMNIST' / 'raw'} (the root you gave). "
            "Pass download=True (--download), or install Debian's dataset-fashion-mnist and omit the root."
        )
    cache = cache_dir()
    if _has_raw(cache):
        return _prepare_from_gz_dir(cache / "FashionMNIST" / "raw", cache)
    if all((DEBIAN_DIR / f"{f}.gz").is_file() for f in FILES):
        return _prepare_from_gz_dir(DEBIAN_DIR, cache)
    if download:
        return fetch(candidates[0] if candidates else cache)
    looked = [str(c / "FashionMNIST" / "raw") for c in candidates] + [str(cache / "FashionMNIST" / "raw"), str(DEBIAN_DIR)]
    raise FileNotFoundError(
        f"Fashion-MNIST not found; looked in {', '.join(looked)}. Get it with `apt-get install dataset-fashion-mnist` "
        "(Debian), or download=True (--download), or pass a root holding FashionMNIST/raw/."
    )


def load_arrays(root=None, download=False):
    """Images uint8 [N, 28, 28] and labels [N] of the train and test files, through torchvision."""
    from torchvision.datasets import FashionMNIST

    root = locate(root, download)
    check_files(root)
    train = FashionMNIST(root, train=True, download=False)
    test = FashionMNIST(root, train=False, download=False)
    return (train.data.numpy(), train.targets.numpy()), (test.data.numpy(), test.targets.numpy())


def fashion_mnist_itl(group, root=None, download=False, arrays=None):
    """The ITL dataset whose target categories are those of ``group`` ("Tops" or "Footwear").

    Pools: every train-file image of the target classes (each seed's
    :func:`jtln.data.itl.draw` takes its labelled images from them), every
    test-file image of the target classes, every train-file image of the
    source classes.  Keys are ``("train", i)`` / ``("test", i)``;
    ``itl.loader`` maps a key to a uint8 28x28 array.  ``arrays`` (as
    :func:`load_arrays` returns) lets tests pass small synthetic data.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r} for Fashion-MNIST; known groups: {sorted(GROUPS)}")
    (x_train, y_train), (x_test, y_test) = arrays if arrays is not None else load_arrays(root, download)
    target = set(GROUPS[group])
    samples = []
    for c, name in enumerate(CLASSES):
        samples += [Sample(("train", int(i)), name, "train") for i in np.flatnonzero(y_train == c)]
        if name in target:
            samples += [Sample(("test", int(i)), name, "test") for i in np.flatnonzero(y_test == c)]
    itl = build_itl("Fashion-MNIST", samples, GROUPS, group)
    images = {"train": x_train, "test": x_test}
    itl.loader = lambda key: images[key[0]][key[1]]
    return itl


def synthetic_arrays(per_class_train=24, per_class_test=6, seed=0):
    """Fashion-MNIST-shaped stand-in data (class-dependent brightness and stripes), for the smoke profile and tests."""
    rng = np.random.default_rng(seed)

    def part(n):
        y = np.repeat(np.arange(len(CLASSES)), n)
        rows = np.arange(28)[None, :, None]
        stripes = (np.sin(rows * (1 + y[:, None, None] % 5) / 3) + 1) * 40
        x = np.clip(rng.random((len(y), 28, 28)) * 50 + y[:, None, None] * 12 + stripes, 0, 255).astype(np.uint8)
        return x, y

    return part(per_class_train), part(per_class_test)
