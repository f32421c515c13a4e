"""Inductive Transfer Learning (ITL) datasets (Sec. 4): target = one parent group's fine classes, source = the rest.

* :mod:`jtln.data.itl` — the split logic, independent of any dataset;
* :mod:`jtln.data.fgvc_aircraft` — FGVC-Aircraft (the paper's benchmark), ITL datasets Boeing and Airbus;
* :mod:`jtln.data.fashion_mnist` — Fashion-MNIST (the offline default), ITL datasets Tops and Footwear;
* :mod:`jtln.data.folder` — your own images in class folders (``dataset = "folder"``, ``[data] root``);
* :mod:`jtln.data.relatedness` — Fashion-MNIST's Tops with source classes that are known sub-classes of the target
  classes, at three settings of a dial from related to unrelated.
"""

from jtln.data.itl import Draw, ITLDataset, Sample, build_itl, draw, draw_digest, restrict

__all__ = ["DATASETS", "Draw", "ITLDataset", "Sample", "build_itl", "check_dataset", "draw", "draw_digest", "load_itl", "restrict",
           "target_pool"]


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


#: the datasets by name: how to load one of its ITL datasets (``loader(group, root=..., download=...)``), its groups
#: (a function giving them without the data, or None where only the data's annotations tell), and, where its groups share
#: one target, the name of that target pool (a function of the group; None: each group has its own target)
DATASETS = {
    "fgvc_aircraft": (_fgvc_aircraft, None, None),
    "fashion_mnist": (_fashion_mnist, _fashion_mnist_groups, None),
    "synthetic": (_synthetic, _fashion_mnist_groups, None),
    "folder": (_folder, None, None),
    "fashion_mnist_relatedness": (_relatedness, _relatedness_groups, _relatedness_pool),
    "synthetic_relatedness": (_synthetic_relatedness, _relatedness_groups, _relatedness_pool),
}


def check_dataset(dataset, groups=()):
    """Raise ValueError for an unknown dataset, or a group it does not have (where known without the data)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    known = DATASETS[dataset][1]
    unknown = [g for g in groups if known is not None and g not in known()]
    if unknown:
        raise ValueError(f"dataset {dataset!r} has no group(s) {unknown}; known: {sorted(known())}")


def target_pool(dataset, group):
    """The target pool that ``group`` of ``dataset`` shares with other groups (their target images and draws), or None."""
    check_dataset(dataset)
    pool = DATASETS[dataset][2]
    return None if pool is None else pool(group)


def load_itl(dataset, group, **options):
    """The ITL dataset ``group`` of ``dataset`` (a name in :data:`DATASETS`)."""
    check_dataset(dataset)
    return DATASETS[dataset][0](group, **options)
