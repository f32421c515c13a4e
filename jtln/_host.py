"""Host views: the OT loss's small-array arithmetic in NumPy on the CPU, in torch elsewhere.

The OT loss runs a few hundred operations on [B, L] arrays per training step
(B = 32, L <= 100).  At these sizes the cost is per call, not per element:
torch's dispatcher takes about 3 µs a call on the CPU, NumPy about 1 µs,
and NumPy's ``ndarray.sum`` / ``clip`` pass through Python wrappers that
``np.add.reduce`` / ``np.maximum`` skip.  So the CPU path works on NumPy
views of the tensors' memory (no copy), through one namespace of operations
whose torch twin serves every other device.
"""

from functools import partial
from types import SimpleNamespace

import numpy as np
import torch

#: the operations the Sinkhorn loop and the OT loss need, on NumPy arrays
NUMPY = SimpleNamespace(
    dot=np.dot,  # 2-D product; with ``out=`` the cheapest NumPy has at these sizes (np.matmul costs a third more)
    divide=np.divide,
    exp=np.exp,
    log=np.log,
    abs=np.abs,
    floor=np.maximum,  # floor(x, low): elementwise max(x, low)
    rowsum=partial(np.add.reduce, axis=1),
    rowmax=partial(np.maximum.reduce, axis=1),
    sum=partial(np.add.reduce, axis=None),
    max=partial(np.maximum.reduce, axis=None),
    min=partial(np.minimum.reduce, axis=None),
)
#: the same on torch tensors
TORCH = SimpleNamespace(
    dot=torch.matmul,
    divide=torch.divide,
    exp=torch.exp,
    log=torch.log,
    abs=torch.abs,
    floor=torch.clamp_min,
    rowsum=partial(torch.sum, dim=1),
    rowmax=partial(torch.amax, dim=1),
    sum=torch.sum,
    max=torch.amax,
    min=torch.amin,
)


def host_view(x):
    """``x`` as a NumPy array sharing its memory where it lives on the CPU, else ``x`` itself (detached).

    An array passes through.
    """
    if isinstance(x, np.ndarray):
        return x
    x = x.detach()
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return x.numpy()
    return x


def ops(x):
    """The namespace of operations for ``x`` (a host view)."""
    return NUMPY if isinstance(x, np.ndarray) else TORCH


def to_tensor(x):
    """A host view (or NumPy scalar) as a tensor sharing its memory; tensors and None pass through."""
    if isinstance(x, (np.ndarray, np.generic)):
        return torch.from_numpy(np.asarray(x))
    return x
