"""Inductive Transfer Learning (ITL) datasets (Sec. 4): target = one parent group's fine classes, source = the rest.

* :mod:`jtln.data.itl` — the split logic, independent of any dataset;
* :mod:`jtln.data.fgvc_aircraft` — FGVC-Aircraft (the paper's benchmark), ITL datasets Boeing and Airbus;
* :mod:`jtln.data.fashion_mnist` — Fashion-MNIST (the offline default), ITL datasets Tops and Footwear.
"""

from jtln.data.itl import Draw, ITLDataset, Sample, build_itl, draw, draw_digest, restrict

__all__ = ["DATASETS", "Draw", "ITLDataset", "Sample", "build_itl", "check_dataset", "draw", "draw_digest", "load_itl", "restrict"]


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


#: the datasets by name: how to load one of its ITL datasets (``loader(group, root=..., download=...)``), and its groups
#: (a function giving them without the data, or None where only the data's annotations tell)
DATASETS = {
    "fgvc_aircraft": (_fgvc_aircraft, None),
    "fashion_mnist": (_fashion_mnist, _fashion_mnist_groups),
    "synthetic": (_synthetic, _fashion_mnist_groups),
}


def check_dataset(dataset, groups=()):
    """Raise ValueError for an unknown dataset, or a group it does not have (where known without the data)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    known = DATASETS[dataset][1]
    unknown = [g for g in groups if known is not None and g not in known()]
    if unknown:
        raise ValueError(f"dataset {dataset!r} has no group(s) {unknown}; known: {sorted(known())}")


def load_itl(dataset, group, **options):
    """The ITL dataset ``group`` of ``dataset`` (a name in :data:`DATASETS`)."""
    check_dataset(dataset)
    return DATASETS[dataset][0](group, **options)
