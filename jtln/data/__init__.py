"""Inductive Transfer Learning (ITL) datasets (Sec. 4): target = one parent group's fine classes, source = the rest.

* :mod:`jtln.data.itl` — the split logic, independent of any dataset;
* :mod:`jtln.data.fgvc_aircraft` — FGVC-Aircraft (the paper's benchmark), ITL datasets Boeing and Airbus;
* :mod:`jtln.data.fashion_mnist` — Fashion-MNIST (the offline default), ITL datasets Tops and Footwear.
"""

from jtln.data.itl import Draw, ITLDataset, Sample, build_itl, draw, draw_digest, restrict

__all__ = ["Draw", "ITLDataset", "Sample", "build_itl", "draw", "draw_digest", "load_itl", "restrict"]


def load_itl(dataset, group, **options):
    """The ITL dataset ``group`` of ``dataset`` ("fgvc_aircraft" or "fashion_mnist")."""
    if dataset == "fgvc_aircraft":
        from jtln.data.fgvc_aircraft import fgvc_aircraft_itl

        return fgvc_aircraft_itl(group, **options)
    if dataset == "fashion_mnist":
        from jtln.data.fashion_mnist import fashion_mnist_itl

        return fashion_mnist_itl(group, **options)
    if dataset == "synthetic":
        from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays

        return fashion_mnist_itl(group, arrays=synthetic_arrays())  # nothing to find or fetch
    raise ValueError(f"dataset must be 'fgvc_aircraft', 'fashion_mnist' or 'synthetic', got {dataset!r}")
