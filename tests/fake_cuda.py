"""A CUDA device on any machine: PyTorch's fake tensors, with the reads a run makes answered by stand-in values.

:class:`torch._subclasses.fake_tensor.FakeTensorMode` gives tensors a device
and a shape but no memory, and raises ``FakeTensorDeviceMismatchError`` on an
operation that mixes devices, as CUDA does.  What it cannot do is read a
value: :class:`Answers` answers every scalar read (``item``, ``bool``,
``tolist``, ...) with a value that keeps a run going (0.0 for floats: a loss,
a Sinkhorn error that has converged; a large count for integers; True for
a check), and :func:`jtln.host_reads.counting` counts them and flags every
hidden read and host index.

The one part of PyTorch that needs a real device is the autograd engine,
whose worker thread for CUDA starts by asking the driver for a context
(pytorch/pytorch#92627).  Within :func:`fake_cuda`, ``Tensor.backward`` runs
the same graph in this thread instead (:func:`backward_here`): every node's
own backward, with the engine's checks (shapes summed to the input's,
dtypes cast, devices compared); ``tests/test_fake_cuda.py`` holds it to the
engine's gradients on the CPU.
"""

import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from jtln.host_reads import counting

#: what a fake integer read returns: a count large enough for every "at least n images" check
FAKE_COUNT = 10**6


class Answers(TorchDispatchMode):
    """Answers scalar reads of fake tensors, which :class:`FakeTensorMode` cannot."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            dtype = args[0].dtype
            return True if dtype == torch.bool else 0.0 if dtype.is_floating_point else FAKE_COUNT
        return func(*args, **(kwargs or {}))


def backward_here(loss, gradient=None, **_):
    """``loss.backward()`` in this thread: the graph's nodes called in dependency order, their gradients accumulated
    into the leaves' ``.grad`` by the graph's own AccumulateGrad nodes."""
    root = loss.grad_fn
    pending, stack, seen = {}, [root], {root}
    while stack:  # how many edges enter each node: it runs once all its gradients have arrived
        node = stack.pop()
        for following, _ in node.next_functions:
            if following is not None:
                pending[following] = pending.get(following, 0) + 1
                if following not in seen:
                    seen.add(following)
                    stack.append(following)
    buffers, ready = {root: {0: torch.ones_like(loss) if gradient is None else gradient}}, [root]
    while ready:
        node = ready.pop()
        received = buffers.pop(node, {})
        incoming = [received.get(k) for k in range(len(node._input_metadata))]
        if callable(node):  # a node of PyTorch's own: one gradient per edge
            grads = node(*incoming)
            grads = grads if isinstance(grads, tuple) else (grads,)
        else:  # a custom Function's: one gradient per forward argument, its tensors first (jtln.ot's), edges for tensors only
            grads = node.apply(*incoming)
            assert all(g is None for g in grads[len(node.next_functions):]), node.name()
        for (following, k), grad in zip(node.next_functions, grads):
            if following is None:
                continue
            if grad is not None:  # what the engine's validate_outputs does
                meta = following._input_metadata[k]
                if grad.device != meta.device:
                    raise RuntimeError(f"{node.name()} returned a gradient on {grad.device} for an input on {meta.device}")
                grad = grad if tuple(grad.shape) == tuple(meta.shape) else grad.sum_to_size(meta.shape)
                grad = grad.to(meta.dtype)
                into = buffers.setdefault(following, {})
                into[k] = grad if k not in into else into[k] + grad
            pending[following] -= 1
            if not pending[following]:
                ready.append(following)


@contextlib.contextmanager
def fake_cuda():
    """Within the block, ``.to("cuda")`` and ``device="cuda"`` make fake CUDA tensors; yields the counts of
    :func:`jtln.host_reads.counting` (reset them between the parts to measure)."""
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    # Module.to() replaces each parameter by a new one: a fake tensor cannot take over a real one's identity
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    engine_backward, torch.Tensor.backward = torch.Tensor.backward, backward_here
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), Answers(), counting(classes=(FakeTensor,)) as counts:
            yield counts
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
        torch.Tensor.backward = engine_backward


def reset(counts):
    """Zero the counts (between the parts of a run measured one by one)."""
    for key in ("reads", "hidden_reads", "host_indices"):
        counts[key] = 0
