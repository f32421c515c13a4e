"""The OT core's torch loop (the one a GPU runs) on the CPU, checked against the reference and the compiled loop.

On the CPU the scaling-domain loop is a compiled kernel (faster at these
sizes, :mod:`jtln.scaling_kernel`); everything else in the
OT core is torch on every device.  Forcing every :class:`GibbsKernel` to the
torch loop here tests that code path on every machine, not only where CUDA is.
"""

import numpy as np
import pytest
import torch

import jtln.scaling_kernel
import jtln.sinkhorn
from jtln.ot import OTLoss, ot_loss, ot_loss_with_logits
from jtln.sinkhorn import GibbsKernel
from reference.algorithm1 import ot_loss as reference_ot_loss
from reference.algorithm1 import ot_loss_grad, ot_loss_grad_C
from tests.conftest import RTOL, random_histograms


def force_torch_loop(monkeypatch):
    """Every kernel built from now on runs the torch loop; the compiled loop is never entered (checked)."""
    build = GibbsKernel.of.__func__

    def compiled_loop(*args):
        raise AssertionError("the compiled loop ran")

    monkeypatch.setattr(GibbsKernel, "of", classmethod(lambda cls, C, lam, loop=None: build(cls, C, lam, loop="torch")))
    monkeypatch.setattr(jtln.scaling_kernel, "iterate", compiled_loop)


@pytest.fixture
def torch_branch(monkeypatch):
    force_torch_loop(monkeypatch)


@pytest.mark.parametrize("lam", [1.0, 20.0, 500.0])  # 500: the log domain and its annealing
def test_loss_and_gradients_match_the_reference_on_the_torch_branch(torch_branch, rng, dtype, lam):
    B, L_s, L_t = 5, 7, 4
    h_s, h_t, C = random_histograms(rng, B, L_s), random_histograms(rng, B, L_t), rng.random((L_s, L_t))
    Hs, Ht = (torch.tensor(h, dtype=dtype, requires_grad=True) for h in (h_s, h_t))
    Ct = torch.tensor(C, dtype=dtype, requires_grad=True)
    tol = (1e-12 if lam < 100 else 1e-9) if dtype == torch.float64 else (1e-6 if lam < 100 else 1e-4)
    losses = ot_loss(Hs, Ht, Ct, lam, tol=tol, max_iter=100_000)
    assert isinstance(losses, torch.Tensor) and losses.dtype == dtype
    losses.sum().backward()
    rtol = RTOL[dtype] if lam < 100 else (1e-6 if dtype == torch.float64 else 1e-3)
    for b in range(B):
        ref = reference_ot_loss(h_s[b], h_t[b], C, lam, tol=1e-14, max_iter=1_000_000)
        np.testing.assert_allclose(losses[b].item(), ref.loss, rtol=rtol)
        if lam < 100:  # the reference's plain scaling underflows beyond; the values above still agree
            alpha, beta = ot_loss_grad(ref.u, ref.v, lam)
            scale = max(np.abs(alpha).max(), np.abs(beta).max())
            np.testing.assert_allclose(Hs.grad[b].numpy(), alpha, atol=10 * RTOL[dtype] * scale)
            np.testing.assert_allclose(Ht.grad[b].numpy(), beta, atol=10 * RTOL[dtype] * scale)
    if lam < 100:
        refs = [reference_ot_loss(h_s[b], h_t[b], C, lam, tol=1e-14) for b in range(B)]
        plans = sum(ot_loss_grad_C(r.u, r.v, C, lam) for r in refs)
        np.testing.assert_allclose(Ct.grad.numpy(), plans, atol=10 * RTOL[dtype] * B)


def test_logits_module_and_reductions_on_the_torch_branch(torch_branch, rng):
    logits_s, logits_t = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    C = torch.rand(9, 4, dtype=torch.float64)
    rows = ot_loss_with_logits(logits_s, logits_t, C, 10.0, tol=1e-12)
    torch.testing.assert_close(rows, ot_loss(logits_s.softmax(1), logits_t.softmax(1), C, 10.0, tol=1e-12), rtol=1e-10, atol=0)
    torch.testing.assert_close(OTLoss(C, 10.0, logits=True, tol=1e-12)(logits_s, logits_t), rows.mean(), rtol=1e-10, atol=0)
    assert ot_loss_with_logits(logits_s[:0], logits_t[:0], C, 10.0).shape == (0,)


def test_the_two_branches_agree(rng, monkeypatch):
    logits_s, logits_t = torch.randn(8, 6, requires_grad=True), torch.randn(8, 3, requires_grad=True)
    C = torch.rand(6, 3)
    results = []
    for force in (False, True):
        if force:
            force_torch_loop(monkeypatch)
        loss = ot_loss_with_logits(logits_s, logits_t, C, 20.0, reduction="sum")
        results.append((loss.detach(), *torch.autograd.grad(loss, (logits_s, logits_t))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float32: two orders of summation


def test_the_kernel_chooses_the_loop_and_refuses_a_compiled_loop_it_cannot_run():
    C = torch.rand(3, 2, dtype=torch.float64)
    assert GibbsKernel.of(C, 5.0).loop == "numba" and GibbsKernel.of(C, 5.0, loop="torch").loop == "torch"
    assert GibbsKernel.of(C.to(torch.float16), 5.0).loop == "torch"  # the kernel is compiled for float32 and float64
    with pytest.raises(ValueError, match="loop must be 'torch', 'numba' for float32/float64 C on the CPU"):
        GibbsKernel.of(C.to(torch.float16), 5.0, loop="numba")
    with pytest.raises(ValueError, match="loop must be"):
        GibbsKernel.of(C, 5.0, loop="cuda")


def test_scalings_are_tensors_whichever_loop_ran(rng):
    a, b = torch.tensor(random_histograms(rng, 4, 3)), torch.tensor(random_histograms(rng, 4, 2))
    C = torch.rand(3, 2, dtype=torch.float64)
    results = [jtln.sinkhorn.sinkhorn(a, b, C, 5.0, tol=1e-12, kernel=GibbsKernel.of(C, 5.0, loop=loop)) for loop in ("numba", "torch")]
    for result in results:
        assert all(torch.is_tensor(x) for x in (result.log_u, result.log_v, result.cost))
    for x, y in zip((results[0].log_u, results[0].log_v, results[0].cost), (results[1].log_u, results[1].log_v, results[1].cost)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
