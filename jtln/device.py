"""Where a run computes: one spelling per device, so that ``"cuda"`` and ``"cuda:0"`` compare equal.

``torch.device("cuda") != torch.device("cuda:0")``: a comparison of a
tensor's device (always indexed) with a device named without its index is
never true.  :func:`canonical` gives every device its index (the current
one of its kind, or 0 where the kind has no runtime here, as under
:class:`torch._subclasses.fake_tensor.FakeTensorMode`).
"""

import contextlib

import torch


def canonical(device):
    """``device`` (a string or :class:`torch.device`) with its index: ``"cuda"`` -> ``cuda:<current>``; the CPU as it is.

    >>> canonical("cpu"), canonical("cuda:1")
    (device(type='cpu'), device(type='cuda', index=1))
    """
    device = torch.device(device)
    if device.type == "cpu" or device.index is not None:
        return device
    module = getattr(torch, device.type, None)
    available = module is not None and hasattr(module, "is_available") and module.is_available()
    return torch.device(device.type, module.current_device() if available else 0)


def same(a, b):
    """Whether devices ``a`` and ``b`` are one and the same, whichever way each is spelt."""
    return canonical(a) == canonical(b)


class full_precision(contextlib.ContextDecorator):
    """Autocast off, on the CPU and on CUDA, for a block or a decorated function: the OT loss and the cost matrices compute
    in their inputs' float32 or float64 whatever the network around them runs in (bf16 products would put the loss off by
    ~1e-3 relative, where Sinkhorn's marginals are held to 1e-6)."""

    def _recreate_cm(self):  # a fresh one for each call of a decorated function: reentrant and thread-safe
        return type(self)()

    def __enter__(self):
        self._blocks = [torch.autocast(kind, enabled=False) for kind in ("cpu", "cuda") if torch.is_autocast_enabled(kind)]
        for block in self._blocks:
            block.__enter__()
        return self

    def __exit__(self, *exc):
        for block in reversed(self._blocks):
            block.__exit__(*exc)
        return False
