"""Inductive Transfer Learning (ITL) datasets (Sec. 4): target = one parent group's fine classes, source = the rest.

* :mod:`jtln.data.itl` — the split logic, independent of any dataset;
* :mod:`jtln.data.fgvc_aircraft` — FGVC-Aircraft (the paper's benchmark), ITL datasets Boeing and Airbus;
* :mod:`jtln.data.fashion_mnist` — Fashion-MNIST (the offline default), ITL datasets Tops and Footwear;
* :mod:`jtln.data.folder` — your own images in class folders (``dataset = "folder"``, ``[data] root``);
* :mod:`jtln.data.relatedness` — Fashion-MNIST's Tops with source classes that are known sub-classes of the target
  classes, at three settings of a dial from related to unrelated.
"""

from collections.abc import Callable
from dataclasses import dataclass

from jtln.data.itl import Draw, ITLDataset, Sample, build_itl, draw, draw_digest, restrict

__all__ = ["DATASETS", "Dataset", "Draw", "ITLDataset", "Sample", "build_itl", "check_dataset", "draw", "draw_digest",
           "load_itl", "register_dataset", "restrict", "target_pool"]


def _fgvc_aircraft(group, **options):
    from jtln.data.fgvc_aircraft import fgvc_aircraft_itl

    return fgvc_aircraft_itl(group, **options)


def _fashion_mnist(group, **options):
    from jtln.data.fashion_mnist import fashion_mnist_itl

    return fashion_mnist_itl(group, **options)


def _synthetic(group, **options):
    from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays

    return fashion_mnist_itl(group, arrays=synthetic_arrays())  # nothing to find or fetch: root and download do not apply


def _fashion_mnist_groups():
    from jtln.data.fashion_mnist import GROUPS

    return tuple(GROUPS)


def _folder(group, **options):
    from jtln.data.folder import folder_itl

    return folder_itl(group, **options)


def _relatedness(group, **options):
    from jtln.data.relatedness import relatedness_itl

    return relatedness_itl(group, **options)


def _synthetic_relatedness(group, **options):
    from jtln.data.fashion_mnist import synthetic_arrays
    from jtln.data.relatedness import relatedness_itl

    return relatedness_itl(group, arrays=synthetic_arrays())


def _relatedness_groups():
    from jtln.data.relatedness import SETTINGS

    return tuple(SETTINGS)


def _relatedness_pool(group):
    from jtln.data.relatedness import POOL

    return POOL


def _fashion_mnist_present(root, groups, download):
    if not download:
        from jtln.data.fashion_mnist import locate

        locate(root, download=False)  # FileNotFoundError: where it looked and how to get it


def _folder_present(root, groups, download):
    from jtln.data.folder import check_images

    check_images(groups[0], root)  # the layout, the class folders and their disjointness, and every image decoded once


@dataclass(frozen=True)
class Dataset:
    """A dataset the experiments draw ITL datasets from, with the hooks the rest of the project calls.

    ``load(group, root=..., download=...)``: one of its ITL datasets;
    ``groups()``: their names without the data (None where only the data's
    annotations tell); ``pool(group)``: the target pool the group shares with
    others (None: each group has its own target); ``present(root, groups,
    download)``: raises (FileNotFoundError or ValueError, saying where it
    looked and how to get the data) unless the data is there, called before
    any work (:mod:`reproduce.preflight`; None: nothing to check, or checked
    there); ``root_in_identity``: whether the files under ``[data] root`` are
    part of a run's identity (a run on other files is another run), rather
    than one fixed dataset found wherever it lies; ``plays_paper``: whether
    its first two groups stand in for the paper's Boeing and Airbus columns
    unless a profile says otherwise (the benchmarks built for it); a
    dataset of the user's own is compared with the paper only where the
    profile's ``[data] plays`` says so.
    """

    load: Callable
    groups: Callable = None
    pool: Callable = None
    present: Callable = None
    root_in_identity: bool = False
    plays_paper: bool = True


#: the datasets by name (:class:`Dataset`); a new one is one entry (:func:`register_dataset`)
DATASETS = {
    "fgvc_aircraft": Dataset(_fgvc_aircraft),  # its annotations and images are checked by reproduce.preflight, with its download
    "fashion_mnist": Dataset(_fashion_mnist, _fashion_mnist_groups, present=_fashion_mnist_present),
    "synthetic": Dataset(_synthetic, _fashion_mnist_groups),
    "folder": Dataset(_folder, present=_folder_present, root_in_identity=True, plays_paper=False),
    "fashion_mnist_relatedness": Dataset(_relatedness, _relatedness_groups, _relatedness_pool, present=_fashion_mnist_present),
    "synthetic_relatedness": Dataset(_synthetic_relatedness, _relatedness_groups, _relatedness_pool),
}


def register_dataset(name, dataset):
    """Add ``dataset`` (a :class:`Dataset`) under ``name``: profiles can then name it, with nothing else to edit."""
    if name in DATASETS:
        raise ValueError(f"dataset {name!r} registered twice")
    DATASETS[name] = dataset
    return dataset


def check_dataset(dataset, groups=()):
    """Raise ValueError for an unknown dataset, or a group it does not have (where known without the data)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    known = DATASETS[dataset].groups
    unknown = [g for g in groups if known is not None and g not in known()]
    if unknown:
        raise ValueError(f"dataset {dataset!r} has no group(s) {unknown}; known: {sorted(known())}")


def target_pool(dataset, group):
    """The target pool that ``group`` of ``dataset`` shares with other groups (their target images and draws), or None."""
    check_dataset(dataset)
    pool = DATASETS[dataset].pool
    return None if pool is None else pool(group)


def load_itl(dataset, group, **options):
    """The ITL dataset ``group`` of ``dataset`` (a name in :data:`DATASETS`)."""
    check_dataset(dataset)
    return DATASETS[dataset].load(group, **options)
