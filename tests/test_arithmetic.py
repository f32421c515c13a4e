"""What a GPU user sets, checked on the CPU: bf16 autocast with the OT loss in float32, TF32 restored, threaded decoding."""

import numpy as np
import torch

import jtln.methods
import jtln.ot
from jtln.train import arithmetic, train
from tests.tiny import HP


def test_bf16_trains_the_network_in_bfloat16_and_the_ot_loss_in_float32(tiny, monkeypatch):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    seen, steps = [], []
    original_forward, original_loss = jtln.ot._OTLossFunction.forward, jtln.methods.Joint.loss

    def forward(ctx, x_s, x_t, *args):
        seen.append((x_s.dtype, x_t.dtype))
        return original_forward(ctx, x_s, x_t, *args)

    def loss(self, batch_t, batch_s):
        steps.append((torch.is_autocast_enabled("cpu"), self.network(batch_t[0])[1].dtype))
        return original_loss(self, batch_t, batch_s)

    monkeypatch.setattr(jtln.ot._OTLossFunction, "forward", staticmethod(forward))
    monkeypatch.setattr(jtln.methods.Joint, "loss", loss)
    _, log = train("jtln_mmd", factory, data, HP, 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes, precision="bf16")
    assert seen and set(seen) == {(torch.float32, torch.float32)}
    assert steps and set(steps) == {(True, torch.bfloat16)}  # the spy sees autocast where there is one: it can fail
    assert all(np.isfinite(v) for s in log["steps"] for v in s.values())
    with arithmetic("cpu", "bf16"):
        logits = torch.nn.Linear(4, 3)(torch.ones(2, 4))
    assert logits.dtype == torch.bfloat16
    # the default arithmetic is float32 with no autocast: the network's logits are float32 at every step
    steps.clear()
    train("jtln_mmd", factory, data, HP, 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    assert steps and set(steps) == {(False, torch.float32)}


def test_tf32_is_set_for_the_block_only():
    before = torch.backends.cuda.matmul.allow_tf32
    with arithmetic("cpu", tf32=not before):
        assert torch.backends.cuda.matmul.allow_tf32 == (not before)
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_threaded_decoding_gives_the_serial_batches(tiny):
    from jtln.cache import _image_batches
    from jtln.models import efficientnet_lite0

    itl = tiny.itl
    backbone = efficientnet_lite0(weights=None, image_size=32)
    serial = list(_image_batches(itl, itl.source, backbone, 5, False, "x", threads=1))
    threaded = list(_image_batches(itl, itl.source, backbone, 5, False, "x", threads=4))
    assert len(serial) == len(threaded) and all(torch.equal(a, b) for a, b in zip(serial, threaded))


def test_bf16_autocast_leaves_the_ot_loss_and_the_cost_matrices_in_full_precision(monkeypatch):
    """Every product of the OT loss (Sinkhorn's torch loop, the one a GPU runs; line 6; Eq. 11) and of the cost matrices stays
    in its inputs' dtype under autocast: the loss within 1e-6 relative of float32 on the same logits (bf16 products put it
    ~4e-3 off)."""
    from jtln.costs import class_cost_matrix
    from jtln.ot import OTLoss
    from tests.test_torch_branch import force_torch_loop

    force_torch_loop(monkeypatch)

    generator = torch.Generator().manual_seed(0)
    C = torch.rand(7, 5, generator=generator)
    loss = OTLoss(C, 10.0, logits=True)
    logits_s = torch.randn(32, 7, generator=generator, requires_grad=True)
    logits_t = torch.randn(32, 5, generator=generator, requires_grad=True)
    results = []
    for enabled in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            value = loss(logits_s, logits_t)
            P, y = torch.randn(40, 16, generator=torch.Generator().manual_seed(1)), torch.arange(40) % 4
            costs = [class_cost_matrix(kind, P, y, P + 0.1, y, 4, 4) for kind in ("mmd", "ot")]
        grads = torch.autograd.grad(value, (logits_s, logits_t))
        results.append((value, grads, costs))
    (value, grads, costs), (value_bf16, grads_bf16, costs_bf16) = results
    assert value_bf16.dtype == torch.float32
    torch.testing.assert_close(value_bf16, value, rtol=1e-6, atol=0)
    for g, g_bf16 in zip(grads, grads_bf16):
        torch.testing.assert_close(g_bf16, g, rtol=1e-6, atol=1e-9)
    for c, c_bf16 in zip(costs, costs_bf16):
        assert c_bf16.dtype == c.dtype
        torch.testing.assert_close(c_bf16, c, rtol=1e-6, atol=1e-9)


def test_tf32_sets_matmul_and_cudnn_together_inside_a_run(tiny, monkeypatch):
    itl, factory, data, probes = tiny.itl, tiny.factory, tiny.data, tiny.probes
    seen, original = [], jtln.methods.TargetOnly.loss

    def loss(self, batch_t, batch_s):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return original(self, batch_t, batch_s)

    monkeypatch.setattr(jtln.methods.TargetOnly, "loss", loss)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    for tf32 in (True, False):
        seen.clear()
        train("target_only", factory, data, HP, 0, itl.L_s, itl.L_t, probes=probes, tf32=tf32)
        assert seen and set(seen) == {(tf32, tf32)}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
