"""The OT loss's gradient with respect to the cost matrix C: the envelope gradient (the plans), against POT and the reference."""

import numpy as np
import ot
import pytest
import torch
from torch import nn

import jtln.ot
from jtln.ot import OTLoss, ot_loss, ot_loss_with_logits
from reference.algorithm1 import ot_loss as reference_ot_loss
from reference.algorithm1 import ot_loss_grad_C, regularised_optimum
from tests.conftest import random_histograms

B, L_S, L_T, LAM = 5, 6, 4, 10.0


def problem(rng):
    h_s, h_t = random_histograms(rng, B, L_S), random_histograms(rng, B, L_T)
    return h_s, h_t, rng.random((L_S, L_T))


def pot_envelope(h_s, h_t, C, lam):
    """POT's gradient in M of ot.solve's regularised value, for each row: [B, L_s, L_t]."""
    grads = []
    for a, b in zip(h_s, h_t):
        M = torch.tensor(C, requires_grad=True)
        res = ot.solve(M, torch.tensor(a), torch.tensor(b), reg=1 / lam, reg_type="entropy", grad="envelope", tol=1e-14,
                       max_iter=100_000)
        res.value.backward()
        grads.append(M.grad.numpy())
    return np.stack(grads)


@pytest.mark.parametrize("logits", [False, True])
def test_the_gradient_in_C_is_pot_envelope_gradient_weighted_by_the_incoming_gradient(rng, logits):
    h_s, h_t, C = problem(rng)
    envelope = pot_envelope(h_s, h_t, C, LAM)
    g = torch.tensor(rng.standard_normal(B))  # an arbitrary incoming gradient, one per row
    Ct = torch.tensor(C, requires_grad=True)
    x_s, x_t = (torch.tensor(np.log(h)) if logits else torch.tensor(h) for h in (h_s, h_t))
    loss = ot_loss_with_logits if logits else ot_loss
    (grad,) = torch.autograd.grad(loss(x_s, x_t, Ct, LAM, tol=1e-13), Ct, grad_outputs=g)
    np.testing.assert_allclose(grad.numpy(), np.einsum("b,bij->ij", g.numpy(), envelope), rtol=0, atol=1e-8)
    for b in range(2):  # and each row's plan is the reference's gradient for that pair
        r = reference_ot_loss(h_s[b], h_t[b], C, LAM, tol=1e-14)
        np.testing.assert_allclose(ot_loss_grad_C(r.u, r.v, C, LAM), envelope[b], rtol=0, atol=1e-10)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_each_reduction_weighs_the_plans_as_it_weighs_the_rows(rng, reduction):
    h_s, h_t, C = problem(rng)
    envelope = pot_envelope(h_s, h_t, C, LAM).sum(0) / (B if reduction == "mean" else 1)
    for module in (False, True):
        Ct = nn.Parameter(torch.tensor(C))
        args = (torch.tensor(h_s), torch.tensor(h_t))
        value = OTLoss(Ct, LAM, reduction=reduction, tol=1e-13)(*args) if module else ot_loss(*args, Ct, LAM, reduction=reduction,
                                                                                                 tol=1e-13)
        (3.0 * value).backward()  # the incoming gradient scales the plans too
        np.testing.assert_allclose(Ct.grad.numpy(), 3.0 * envelope, rtol=0, atol=1e-8)


def test_the_gradient_in_C_is_the_finite_difference_of_the_regularised_optima(rng):
    h_s, h_t, C = problem(rng)
    Ct = torch.tensor(C, requires_grad=True)
    ot_loss(torch.tensor(h_s), torch.tensor(h_t), Ct, LAM, reduction="sum", tol=1e-13).backward()

    def total(X):
        return sum(regularised_optimum(a, b, X, LAM, tol=1e-14) for a, b in zip(h_s, h_t))

    eps = 1e-6
    for _ in range(3):
        D = rng.standard_normal(C.shape)
        fd = (total(C + eps * D) - total(C - eps * D)) / (2 * eps)
        np.testing.assert_allclose(float((Ct.grad * torch.tensor(D)).sum()), fd, rtol=1e-5, atol=1e-8)


def test_the_histogram_gradients_do_not_change_when_C_requires_grad(rng):
    h_s, h_t, C = problem(rng)
    grads = []
    for requires in (False, True):
        Hs, Ht = torch.tensor(h_s, requires_grad=True), torch.tensor(h_t, requires_grad=True)
        ot_loss(Hs, Ht, torch.tensor(C, requires_grad=requires), LAM, reduction="mean").backward()
        grads.append((Hs.grad, Ht.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_plan_is_formed_for_a_constant_C(rng, monkeypatch):
    h_s, h_t, C = problem(rng)
    calls = []
    real = jtln.ot.transport_plan
    monkeypatch.setattr(jtln.ot, "transport_plan", lambda *a: calls.append(1) or real(*a))
    Hs = torch.tensor(h_s, requires_grad=True)
    ot_loss(Hs, torch.tensor(h_t), torch.tensor(C), LAM, reduction="sum").backward()
    assert calls == []
    ot_loss(Hs, torch.tensor(h_t), torch.tensor(C, requires_grad=True), LAM, reduction="sum").backward()
    assert calls == [1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_C_gets_its_gradient_in_its_own_dtype(rng, dtype):
    h_s, h_t, C = problem(rng)
    exact = pot_envelope(h_s, h_t, C, LAM).sum(0)
    Ct = torch.tensor(C, dtype=dtype, requires_grad=True)
    logits_s, logits_t = (torch.tensor(np.log(h), dtype=dtype) for h in (h_s, h_t))
    ot_loss_with_logits(logits_s, logits_t, Ct, LAM, reduction="sum").backward()
    assert Ct.grad.dtype == dtype
    # the inputs are rounded to dtype first: float32 ~1e-6, bfloat16 (8 bits) ~1e-2 of the plans' mass
    np.testing.assert_allclose(Ct.grad.double().numpy(), exact, rtol=0, atol=1e-5 if dtype == torch.float32 else 0.1)


def test_a_parameter_C_stays_the_module_parameter_and_a_tensor_C_is_copied():
    C = torch.rand(L_S, L_T, dtype=torch.float64)
    learned = nn.Parameter(C.clone())
    module = OTLoss(learned, LAM)
    assert module.C is learned and list(module.parameters()) == [learned]
    fixed = OTLoss(C, LAM)
    assert fixed.C is not C and list(fixed.parameters()) == [] and "C" in dict(fixed.named_buffers())
    # an optimiser step on the parameter is seen by the next call (the kept kernel is rebuilt)
    h_s, h_t = torch.full((2, L_S), 1 / L_S, dtype=torch.float64), torch.full((2, L_T), 1 / L_T, dtype=torch.float64)
    module(h_s, h_t)
    with torch.no_grad():
        learned.mul_(2.0)
    torch.testing.assert_close(module(h_s, h_t), OTLoss(2.0 * C, LAM)(h_s, h_t), rtol=1e-12, atol=0)
