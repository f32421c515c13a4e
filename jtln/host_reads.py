"""Counting the host reads of tensors: every way a tensor's value reaches Python, where a GPU would make the host wait.

:func:`counting` counts at two levels for the duration of a block:

* ``reads``: the Python-level reads, ``Tensor.item``, ``tolist``, ``cpu``,
  ``numpy`` and the conversions ``bool``, ``float``, ``int``, ``index``, one
  each, on any device (on the CPU they stand for what a GPU would wait on);
* at the dispatcher (a :class:`torch.utils._python_dispatch.TorchDispatchMode`),
  what no Python-level wrapper sees: ``hidden_reads``, a device tensor's
  value reaching the host outside those calls (a scalar read, a copy to the
  host, an operation whose output shape depends on the data, which must
  wait for it); and ``host_indices``, a device tensor indexed with indices
  that live on the host (each a blocking copy of the indices).

The tests hold one training step of every method to its documented number of
reads (``Method.step_reads`` and :data:`jtln.sinkhorn.READS`) and to no hidden
read nor host index, on the CPU and on a fake CUDA device
(``tests/test_fake_cuda.py``); ``python -m reproduce rehearse`` reports the
reads per step of whole runs on the profile's device.
"""

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: the methods of :class:`torch.Tensor` through which a value reaches the host
READERS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")

_aten = torch.ops.aten
#: operators that gather from or scatter into their first argument with index tensors
INDEXING = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default,
            _aten.index_select.default, _aten.index_add.default, _aten.index_add_.default, _aten.gather.default,
            _aten.scatter.src, _aten.scatter_.src, _aten.scatter_add.default, _aten.scatter_add_.default}
#: operators whose result reaches the host
TO_HOST = {_aten._to_copy.default, _aten.copy_.default, _aten._local_scalar_dense.default}


def _on_device(x):
    return torch.is_tensor(x) and x.device.type not in ("cpu", "meta")


def _tensors(args):
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from _tensors(a)
        elif torch.is_tensor(a):
            yield a


class DeviceSyncs(TorchDispatchMode):
    """Counts, into ``counts``, the device-to-host traffic of every operator outside a Python-level read (module docstring)."""

    def __init__(self, counts):
        super().__init__()
        self.counts = counts

    @staticmethod
    def host_indices(func, args):
        """Whether ``func`` indexes a device tensor with indices on the host."""
        return func in INDEXING and _on_device(args[0]) and any(t.device.type == "cpu" for t in _tensors(args[1:]))

    @staticmethod
    def reads(func, args, kwargs):
        """Whether ``func`` makes the host wait for a device tensor's value: a scalar read, a copy to the host, a shape that
        depends on the data (a boolean mask among the indices too)."""
        if not any(_on_device(t) for t in _tensors(args)):
            return False
        if func is _aten._local_scalar_dense.default:
            return True
        if func in TO_HOST:
            target = args[0].device if func is _aten.copy_.default else kwargs.get("device")
            return target is not None and torch.device(target).type == "cpu"
        if func in INDEXING:  # tagged as of a dynamic shape for the boolean masks they take
            return any(t.dtype == torch.bool for t in _tensors(args[1:]))
        return torch.Tag.dynamic_output_shape in func.tags or torch.Tag.data_dependent_output in func.tags

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.counts["_inside_read"]:
            self.counts["host_indices"] += self.host_indices(func, args)
            self.counts["hidden_reads"] += self.reads(func, args, kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def counting(dispatch=True, classes=()):
    """Within the block, the dict it yields counts ``reads`` (Python-level, in any thread) and, with ``dispatch``,
    ``hidden_reads`` and ``host_indices`` (the module docstring).  ``classes``: tensor subclasses that define readers of
    their own (fake tensors' ``tolist``), wrapped too."""
    counts = {"reads": 0, "hidden_reads": 0, "host_indices": 0, "_inside_read": 0}
    originals = {(cls, name): getattr(cls, name) for cls in (torch.Tensor, *classes) for name in READERS
                 if cls is torch.Tensor or name in vars(cls)}

    def counted(original):
        def read(self, *args, **kwargs):
            counts["reads"] += not counts["_inside_read"]  # a read made inside another one is part of it
            counts["_inside_read"] += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                counts["_inside_read"] -= 1

        return read

    try:
        for (cls, name), original in originals.items():
            setattr(cls, name, counted(original))
        with DeviceSyncs(counts) if dispatch else contextlib.nullcontext():
            yield counts
    finally:
        for (cls, name), original in originals.items():
            setattr(cls, name, original)
