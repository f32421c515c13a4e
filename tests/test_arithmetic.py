"""What a GPU user sets, checked on the CPU: bf16 autocast with the OT loss in float32, TF32 restored, threaded decoding."""

import numpy as np
import torch

import jtln.ot
from jtln.train import arithmetic, train
from tests.test_models_methods import HP, tiny  # noqa: F401  (the tiny ITL problem, a module fixture)


def test_bf16_trains_the_network_in_bfloat16_and_the_ot_loss_in_float32(tiny, monkeypatch):  # noqa: F811
    itl, _, factory, _, costs, data, probes = tiny
    seen = []
    original = jtln.ot._OTLossFunction.forward

    def forward(ctx, x_s, x_t, *args):
        seen.append((x_s.dtype, x_t.dtype))
        return original(ctx, x_s, x_t, *args)

    monkeypatch.setattr(jtln.ot._OTLossFunction, "forward", staticmethod(forward))
    _, log = train("jtln_mmd", factory, data, HP, 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes, precision="bf16")
    assert seen and set(seen) == {(torch.float32, torch.float32)}
    assert all(np.isfinite(v) for s in log["steps"] for v in s.values())
    with arithmetic("cpu", "bf16"):
        logits = torch.nn.Linear(4, 3)(torch.ones(2, 4))
    assert logits.dtype == torch.bfloat16
    # the default arithmetic is the float32 of before: the same run, bit for bit
    a = train("jtln_mmd", factory, data, HP, 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)[1]
    b = train("jtln_mmd", factory, data, HP, 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes, precision="float32")[1]
    assert a["steps"] == b["steps"] and a["val_loss_curve"] == b["val_loss_curve"]


def test_tf32_is_set_for_the_block_only():
    before = torch.backends.cuda.matmul.allow_tf32
    with arithmetic("cpu", tf32=not before):
        assert torch.backends.cuda.matmul.allow_tf32 == (not before)
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_threaded_decoding_gives_the_serial_batches(tiny):  # noqa: F811
    from jtln.cache import _image_batches
    from jtln.models import efficientnet_lite0

    itl = tiny[0]
    backbone = efficientnet_lite0(weights=None, image_size=32)
    serial = list(_image_batches(itl, itl.source, backbone, 5, False, "x", threads=1))
    threaded = list(_image_batches(itl, itl.source, backbone, 5, False, "x", threads=4))
    assert len(serial) == len(threaded) and all(torch.equal(a, b) for a, b in zip(serial, threaded))
