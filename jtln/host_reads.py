"""Counting the host reads of tensors: every way a tensor's value reaches Python, where a GPU would make the host wait.

:func:`counting` wraps ``Tensor.item``, ``tolist``, ``cpu``, ``numpy`` and
the conversions ``bool``, ``float``, ``int``, ``index`` for the duration of
a block.  The tests hold one training step of every method to its documented
number of reads (``Method.step_reads`` and :data:`jtln.sinkhorn.READS`) on
the CPU, and ``python -m reproduce rehearse`` reports the reads per step of
whole runs on the profile's device.
"""

import contextlib

import torch

#: the methods of :class:`torch.Tensor` through which a value reaches the host
READERS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def counting():
    """Within the block, ``counts["reads"]`` (of the dict it yields) counts every host read of a tensor, in any thread."""
    counts = {"reads": 0}
    originals = {name: getattr(torch.Tensor, name) for name in READERS}

    def counted(original):
        def read(self, *args, **kwargs):
            counts["reads"] += 1
            return original(self, *args, **kwargs)

        return read

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(original))
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
