"""The OT core's torch branch (the one a GPU runs) on the CPU: host views forced to stay tensors, checked against the reference.

On the CPU :func:`jtln._host.host_view` hands the Sinkhorn loop NumPy views
of the tensors (faster at these sizes); on any other device it keeps the
tensors and the same code runs through :data:`jtln._host.TORCH`.  Forcing
the tensors here tests that branch on every machine, not only where CUDA is.
"""

import numpy as np
import pytest
import torch

import jtln._checks
import jtln.ot
import jtln.sinkhorn
from jtln.ot import OTLoss, ot_loss, ot_loss_with_logits
from reference.algorithm1 import ot_loss as reference_ot_loss
from reference.algorithm1 import ot_loss_grad, ot_loss_grad_C
from tests.conftest import RTOL, random_histograms


@pytest.fixture
def torch_branch(monkeypatch):
    """Every host view stays a (detached) tensor, as on a GPU; the NumPy branch is never entered (checked)."""
    import numpy

    def tensors_only(x):
        assert not isinstance(x, numpy.ndarray), "a NumPy array reached the OT core"
        return x.detach()

    for module in (jtln._checks, jtln.ot, jtln.sinkhorn):
        monkeypatch.setattr(module, "host_view", tensors_only)


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
    z_s, z_t = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    C = torch.rand(9, 4, dtype=torch.float64)
    rows = ot_loss_with_logits(z_s, z_t, C, 10.0, tol=1e-12)
    torch.testing.assert_close(rows, ot_loss(z_s.softmax(1), z_t.softmax(1), C, 10.0, tol=1e-12), rtol=1e-10, atol=0)
    torch.testing.assert_close(OTLoss(C, 10.0, logits=True, tol=1e-12)(z_s, z_t), rows.mean(), rtol=1e-10, atol=0)
    assert ot_loss_with_logits(z_s[:0], z_t[:0], C, 10.0).shape == (0,)


def test_the_two_branches_agree(rng, monkeypatch):
    z_s, z_t = torch.randn(8, 6, requires_grad=True), torch.randn(8, 3, requires_grad=True)
    C = torch.rand(6, 3)
    results = []
    for force in (False, True):
        if force:
            for module in (jtln._checks, jtln.ot, jtln.sinkhorn):
                monkeypatch.setattr(module, "host_view", lambda x: x.detach())
        loss = ot_loss_with_logits(z_s, z_t, C, 20.0, reduction="sum")
        results.append((loss.detach(), *torch.autograd.grad(loss, (z_s, z_t))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float32: two orders of summation
