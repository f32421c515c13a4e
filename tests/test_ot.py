"""jtln.ot (batched Algorithm 1 + Eq. 11) against reference.algorithm1 and POT."""

import warnings

import numpy as np
import pytest
import torch

from jtln.ot import OTLoss, ot_loss, ot_loss_with_logits
from reference.algorithm1 import ot_loss as reference_ot_loss
from reference.algorithm1 import ot_loss_grad as reference_grad
from tests.conftest import RTOL, random_histograms

B, L_S, L_T = 6, 9, 4


@pytest.fixture
def ot():
    """POT, where a test holds the loss to it; the tests that hold it to the reference alone run without POT (the GPU check)."""
    return pytest.importorskip("ot")


def batch(rng, dtype, device="cpu"):
    h_s, h_t = random_histograms(rng, B, L_S), random_histograms(rng, B, L_T)
    C = rng.random((L_S, L_T))
    as_t = lambda x: torch.tensor(x, dtype=dtype, device=device)  # noqa: E731
    return (h_s, h_t, C), (as_t(h_s).requires_grad_(), as_t(h_t).requires_grad_(), as_t(C))


@pytest.mark.parametrize("lam", [1.0, 20.0])
def test_loss_and_gradient_match_reference(rng, dtype, device, lam):
    (h_s, h_t, C), (Hs, Ht, Ct) = batch(rng, dtype, device)
    tol = 1e-13 if dtype == torch.float64 else None
    losses = ot_loss(Hs, Ht, Ct, lam, tol=tol)
    losses.sum().backward()
    for b in range(B):
        ref = reference_ot_loss(h_s[b], h_t[b], C, lam, tol=1e-14)
        alpha, beta = reference_grad(ref.u, ref.v, lam)
        np.testing.assert_allclose(losses[b].item(), ref.loss, rtol=RTOL[dtype])
        scale = max(np.abs(alpha).max(), np.abs(beta).max())
        np.testing.assert_allclose(Hs.grad[b].cpu().numpy(), alpha, rtol=0, atol=RTOL[dtype] * 10 * scale)
        np.testing.assert_allclose(Ht.grad[b].cpu().numpy(), beta, rtol=0, atol=RTOL[dtype] * 10 * scale)


def test_log_and_scaling_domains_agree(rng):
    _, (Hs, Ht, Ct) = batch(rng, torch.float64)
    a = ot_loss(Hs, Ht, Ct, 20.0, tol=1e-13, domain="scaling")
    b = ot_loss(Hs, Ht, Ct, 20.0, tol=1e-13, domain="log")
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("lam", [200.0, 1000.0])
def test_large_lam_is_finite_and_correct(ot, rng, dtype, lam):
    """exp(-lam C - 1) underflows here; the log domain takes over and agrees with POT's log-domain Sinkhorn."""
    (h_s, h_t, C), (Hs, Ht, Ct) = batch(rng, dtype)
    tol = 1e-9 if dtype == torch.float64 else 1e-4  # float32 log-domain floor: eps * lam
    losses = ot_loss(Hs, Ht, Ct, lam, tol=tol, max_iter=100_000)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(Hs.grad).all() and torch.isfinite(Ht.grad).all()
    for b in range(2):
        plan = ot.bregman.sinkhorn_log(h_s[b], h_t[b], C, reg=1 / lam, stopThr=1e-10, numItermax=200_000)
        np.testing.assert_allclose(losses[b].item(), np.sum(plan * C), rtol=1e-4)
        exact = ot.emd2(h_s[b], h_t[b], C)  # the unregularised LP of Eq. 6
        assert abs(losses[b].item() - exact) < 20 / lam * np.log(L_S * L_T)  # entropic bias ~ log(n)/lam


def test_pot_sinkhorn_plan_marginals_and_value(ot, rng):
    (h_s, h_t, C), (Hs, Ht, Ct) = batch(rng, torch.float64)
    losses = ot_loss(Hs, Ht, Ct, 20.0, tol=1e-13)
    for b in range(B):
        plan = ot.sinkhorn(h_s[b], h_t[b], C, reg=1 / 20.0, stopThr=1e-14, numItermax=100_000)
        np.testing.assert_allclose(losses[b].item(), np.sum(plan * C), rtol=1e-9)


def test_gradient_matches_pot_envelope(ot, rng):
    (h_s, h_t, C), (Hs, Ht, Ct) = batch(rng, torch.float64)
    ot_loss(Hs, Ht, Ct, 10.0, tol=1e-13).sum().backward()
    for b in range(2):
        a = torch.tensor(h_s[b], requires_grad=True)
        c = torch.tensor(h_t[b], requires_grad=True)
        res = ot.solve(Ct, a, c, reg=0.1, reg_type="entropy", grad="envelope", tol=1e-14, max_iter=100_000)
        res.value.backward()
        np.testing.assert_allclose(Hs.grad[b].numpy(), a.grad.numpy(), atol=1e-9)
        np.testing.assert_allclose(Ht.grad[b].numpy(), c.grad.numpy(), atol=1e-9)


def test_gradient_flows_through_softmax(rng):
    logits_s = torch.randn(B, L_S, dtype=torch.float64, requires_grad=True)
    logits_t = torch.randn(B, L_T, dtype=torch.float64, requires_grad=True)
    C = torch.rand(L_S, L_T, dtype=torch.float64)
    loss = OTLoss(C, lam=10.0)(logits_s.softmax(1), logits_t.softmax(1))
    loss.backward()
    assert loss.dim() == 0
    assert logits_s.grad.abs().sum() > 0 and logits_t.grad.abs().sum() > 0


@pytest.mark.parametrize("logits", [False, True])
def test_reductions_inside_the_node_match_reducing_the_rows(rng, dtype, logits):
    """reduction="mean"/"sum" (functions and module): the same value and gradient as reducing the per-row losses."""
    _, (Hs, Ht, Ct) = batch(rng, dtype)
    x_s, x_t = (Hs.detach().log().requires_grad_(), Ht.detach().log().requires_grad_()) if logits else (Hs, Ht)
    loss = ot_loss_with_logits if logits else ot_loss
    rows = loss(x_s, x_t, Ct, 5.0)
    for reduction, reduce in (("mean", torch.mean), ("sum", torch.sum)):
        expected_grads = torch.autograd.grad(reduce(rows), (x_s, x_t), retain_graph=True)
        for got in (loss(x_s, x_t, Ct, 5.0, reduction=reduction), OTLoss(Ct, 5.0, reduction=reduction, logits=logits)(x_s, x_t)):
            assert got.dim() == 0
            torch.testing.assert_close(got, reduce(rows), rtol=RTOL[dtype], atol=0)
            for grad, expected in zip(torch.autograd.grad(got, (x_s, x_t)), expected_grads):
                torch.testing.assert_close(grad, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * expected.abs().max().item())
    torch.testing.assert_close(OTLoss(Ct, 5.0, reduction="none", logits=logits)(x_s, x_t), rows, rtol=0, atol=0)
    for bad in (lambda: OTLoss(Ct, 5.0, reduction="avg"), lambda: loss(x_s, x_t, Ct, 5.0, reduction="avg")):
        with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'avg'"):
            bad()


def test_empty_batch_gives_empty_losses_and_refuses_a_mean():
    logits_s = torch.zeros(0, L_S, requires_grad=True)
    C = torch.rand(L_S, L_T)
    assert ot_loss_with_logits(logits_s, torch.zeros(0, L_T), C, 10.0).shape == (0,)
    total = ot_loss_with_logits(logits_s, torch.zeros(0, L_T), C, 10.0, reduction="sum")
    assert total.item() == 0.0
    total.backward()
    assert logits_s.grad.shape == (0, L_S)
    # torch's own empty mean is NaN; a returned loss is finite or the call raises
    with pytest.raises(ValueError, match="an empty batch has no mean OT loss"):
        ot_loss_with_logits(logits_s, torch.zeros(0, L_T), C, 10.0, reduction="mean")
    with pytest.raises(ValueError, match="an empty batch has no mean OT loss"):
        OTLoss(C, 10.0, logits=True)(logits_s, torch.zeros(0, L_T))


def test_rough_edges_get_errors_that_say_what_to_do(rng):
    """Logits where histograms belong, a cap below the check period, float labels, and a cost that would keep a graph."""
    from jtln.costs import mmd_cost_matrix

    C = torch.rand(L_S, L_T, dtype=torch.float64)
    logits_s, logits_t = torch.randn(4, L_S, dtype=torch.float64), torch.randn(4, L_T, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"h_s has negative entries .*\(logits\? pass them to ot_loss_with_logits"):
        ot_loss(logits_s, logits_t, C, 10.0)
    with pytest.raises(ValueError, match="max_iter = 5 is below check_every = 10: convergence would never be checked"):
        ot_loss(logits_s.softmax(1), logits_t.softmax(1), C, 10.0, max_iter=5)
    features = torch.randn(12, 3, requires_grad=True)
    labels = torch.arange(12) % 3
    with pytest.raises(ValueError, match="y_s must hold integer class labels, got dtype torch.float32"):
        mmd_cost_matrix(features, labels.float(), features, labels)
    cost = mmd_cost_matrix(features * 2, labels, features * 2, labels)
    assert not cost.requires_grad and cost.grad_fn is None  # a constant: no graph of the features kept


def test_second_derivatives_are_refused(rng):
    """Eq. 11 is formed without a graph, so a second derivative would be silently wrong: it raises instead."""
    _, (Hs, Ht, Ct) = batch(rng, torch.float64)
    weight = torch.ones((), dtype=torch.float64, requires_grad=True)  # so that the first derivative has a graph
    (grad_s,) = torch.autograd.grad(ot_loss(Hs, Ht, Ct, 5.0, reduction="sum"), Hs, grad_outputs=weight, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_s.sum().backward()


def test_float32_softmax_histograms_are_accepted(rng):
    """A float32 softmax sums to 1 only within ~1e-7: accepted, renormalised, converges."""
    logits = torch.randn(B, 87) * 5
    h_t = torch.randn(B, 13).softmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses = ot_loss(logits.softmax(1), h_t, torch.rand(87, 13), 20.0)
    assert torch.isfinite(losses).all()


def test_zero_mass_entries_give_finite_gradients(rng):
    h_s = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    h_t = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    C = torch.rand(3, 2, dtype=torch.float64)
    ot_loss(h_s, h_t, C, 10.0).sum().backward()
    assert torch.isfinite(h_s.grad).all() and torch.isfinite(h_t.grad).all()


def test_bad_input_raises_value_error_naming_the_argument(rng):
    _, (Hs, Ht, Ct) = batch(rng, torch.float64)
    Hs, Ht = Hs.detach(), Ht.detach()
    nan = Ht.clone()
    nan[0, 0] = float("nan")
    negative = Hs.clone()
    negative[0, 0], negative[0, 1] = -0.1, negative[0, 1] + negative[0, 0] + 0.1
    cases = [
        ((Hs * 2, Ht, Ct, 1.0), "h_s rows must sum to 1"),
        ((Hs, nan, Ct, 1.0), "h_t contains NaN"),
        ((negative, Ht, Ct, 1.0), "h_s has negative"),
        ((Hs, Ht, Ct.T, 1.0), "C must have shape"),
        ((Hs, Ht[:2], Ct, 1.0), "same batch size"),
        ((Hs[0], Ht, Ct, 1.0), r"h_s must have shape \[B, L\]"),
        ((Hs, Ht, Ct.float(), 1.0), "share a dtype"),
        ((Hs, Ht, Ct, 0.0), "lam must be"),
        ((Hs, Ht, Ct, float("inf")), "lam must be"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            ot_loss(*args)


def test_non_convergence_warns_with_final_error_and_a_gross_miss_raises(rng):
    _, (Hs, Ht, Ct) = batch(rng, torch.float64)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 60 iterations: marginal error 5.4\d*e-04"):
        ot_loss(Hs, Ht, Ct, 50.0, max_iter=60)  # a near miss: 0.05% of the mass
    with pytest.raises(FloatingPointError, match=r"after 20 iterations at lam=50 the plan's marginals are off by 0.264"):
        with pytest.warns(RuntimeWarning):
            ot_loss(Hs, Ht, Ct, 50.0, max_iter=20)


def test_logits_entry_equals_softmax_then_ot_loss(rng, dtype):
    """Value and gradient of ot_loss_with_logits against autograd through softmax + ot_loss."""
    logits_s = torch.tensor(rng.normal(size=(B, L_S)) * 2, dtype=dtype, requires_grad=True)
    logits_t = torch.tensor(rng.normal(size=(B, L_T)) * 2, dtype=dtype, requires_grad=True)
    C = torch.tensor(rng.random((L_S, L_T)), dtype=dtype)
    weights = torch.tensor(rng.random(B), dtype=dtype)  # a non-uniform upstream gradient
    fused = ot_loss_with_logits(logits_s, logits_t, C, 10.0)
    (fused * weights).sum().backward()
    grads = logits_s.grad.clone(), logits_t.grad.clone()
    logits_s.grad = logits_t.grad = None
    composed = ot_loss(logits_s.softmax(1), logits_t.softmax(1), C, 10.0)
    (composed * weights).sum().backward()
    rtol = RTOL[dtype] * 10
    torch.testing.assert_close(fused, composed, rtol=rtol, atol=0)
    scale = max(grads[0].abs().max().item(), grads[1].abs().max().item())
    torch.testing.assert_close(grads[0], logits_s.grad, rtol=0, atol=rtol * scale)
    torch.testing.assert_close(grads[1], logits_t.grad, rtol=0, atol=rtol * scale)


def test_logits_gradient_is_the_gradient_of_the_regularised_optimum(rng):
    """Central differences of <gamma, C> + 1/lam sum gamma log gamma along random logit directions."""
    from reference.algorithm1 import regularised_optimum

    lam = 10.0
    logits_s, logits_t = rng.normal(size=L_S), rng.normal(size=L_T)
    C = rng.random((L_S, L_T))
    zs, zt = torch.tensor(logits_s[None], requires_grad=True), torch.tensor(logits_t[None], requires_grad=True)
    ot_loss_with_logits(zs, zt, torch.tensor(C), lam, tol=1e-14).sum().backward()
    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # noqa: E731
    eps = 1e-6
    for _ in range(3):
        d_s, d_t = rng.normal(size=L_S), rng.normal(size=L_T)
        fd = (regularised_optimum(softmax(logits_s + eps * d_s), softmax(logits_t + eps * d_t), C, lam)
              - regularised_optimum(softmax(logits_s - eps * d_s), softmax(logits_t - eps * d_t), C, lam)) / (2 * eps)
        np.testing.assert_allclose(zs.grad[0].numpy() @ d_s + zt.grad[0].numpy() @ d_t, fd, rtol=1e-5, atol=1e-8)


def test_logits_entry_checks_its_input(rng):
    logits_s, logits_t = torch.randn(3, L_S, dtype=torch.float64), torch.randn(3, L_T, dtype=torch.float64)
    C = torch.rand(L_S, L_T, dtype=torch.float64)
    masked = logits_s.clone()
    masked[0, 0] = -float("inf")  # a masked class: zero mass, finite loss
    assert torch.isfinite(ot_loss_with_logits(masked, logits_t, C, 10.0)).all()
    cases = []
    for bad in (float("nan"), float("inf")):
        z = logits_t.clone()
        z[1, 2] = bad
        cases.append(((logits_s, z, C, 10.0), "logits_t contains NaN or inf"))
    all_masked = logits_s.clone()
    all_masked[2] = -float("inf")
    cases += [
        ((all_masked, logits_t, C, 10.0), "logits_s contains NaN or inf"),
        ((logits_s[0], logits_t, C, 10.0), r"logits_s must be a tensor of logits \[B, L\]"),
        ((logits_s, logits_t[:2], C, 10.0), "logits_s and logits_t must have the same batch size"),
        ((logits_s, logits_t, C.T, 10.0), "C must have shape"),
        ((logits_s.float(), logits_t, C, 10.0), "share a dtype"),
        ((logits_s, logits_t, C, -1.0), "lam must be"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            ot_loss_with_logits(*args)


def test_module_with_logits(rng):
    logits_s, logits_t = torch.randn(5, L_S, dtype=torch.float64), torch.randn(5, L_T, dtype=torch.float64)
    C = torch.rand(L_S, L_T, dtype=torch.float64)
    module = OTLoss(C, 10.0, logits=True)
    torch.testing.assert_close(module(logits_s, logits_t), OTLoss(C, 10.0)(logits_s.softmax(1), logits_t.softmax(1)), rtol=1e-10, atol=0)
    assert "logits=True" in repr(module)


@pytest.mark.parametrize("lam", [1.0, 10.0, 50.0])
def test_the_regularized_value_passes_gradcheck_and_the_linear_one_does_not(lam):
    """The consistent pair: value="regularized" is W_lam, and the backward (Eq. 11 in the logits, the plan in C) is its
    exact gradient; the paper's line-6 value keeps the same backward, which is not its own derivative."""
    from torch.autograd.gradcheck import GradcheckError

    torch.manual_seed(0)
    logits_s = torch.randn(3, L_S, dtype=torch.float64, requires_grad=True)
    logits_t = torch.randn(3, L_T, dtype=torch.float64, requires_grad=True)
    C = torch.rand(L_S, L_T, dtype=torch.float64, requires_grad=True)

    def loss(value):
        return lambda zs, zt, c: ot_loss_with_logits(zs, zt, c, lam, value=value, tol=1e-12)

    assert torch.autograd.gradcheck(loss("regularized"), (logits_s, logits_t, C), eps=1e-6, atol=1e-6, rtol=1e-4)
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        torch.autograd.gradcheck(loss("linear"), (logits_s, logits_t, C), eps=1e-6, atol=1e-6, rtol=1e-4)
    # the module: the same value, reduced
    module = OTLoss(C.detach(), lam, logits=True, value="regularized", tol=1e-12)
    torch.testing.assert_close(module(logits_s, logits_t), loss("regularized")(logits_s, logits_t, C).mean(), rtol=1e-12, atol=0)
    assert "value='regularized'" in repr(module)


def test_the_regularized_value_is_the_references_and_pots(rng, ot):
    """W_lam per row against reference.algorithm1.regularised_optimum and POT's ot.solve(reg=1/lam, reg_type="entropy")
    .value (POT's default regulariser is the KL to a b^T, which adds the marginals' entropies), and its
    derivative along the simplex (the histograms' tangent directions) by central differences."""
    from reference.algorithm1 import regularised_optimum

    lam = 10.0
    (h_s, h_t, C), (ths, tht, tC) = batch(rng, torch.float64)
    tC = tC + 0.5  # a shift of C moves W_lam by the shift: the dual form adds back the one Sinkhorn takes out
    values = ot_loss(ths, tht, tC, lam, value="regularized", tol=1e-12)
    values.sum().backward()
    for i in range(B):
        expected = regularised_optimum(h_s[i], h_t[i], C + 0.5, lam)
        np.testing.assert_allclose(values[i].item(), expected, rtol=1e-10)
        np.testing.assert_allclose(values[i].item(), ot.solve(C + 0.5, h_s[i], h_t[i], reg=1 / lam, reg_type="entropy").value, rtol=1e-8)
        d_s = rng.normal(size=L_S)
        d_s -= d_s.mean()  # along the simplex
        eps = 1e-6
        fd = (regularised_optimum(h_s[i] + eps * d_s, h_t[i], C + 0.5, lam)
              - regularised_optimum(h_s[i] - eps * d_s, h_t[i], C + 0.5, lam)) / (2 * eps)
        np.testing.assert_allclose(ths.grad[i].numpy() @ d_s, fd, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="value must be 'linear' .* or 'regularized'"):
        ot_loss(ths, tht, tC, lam, value="entropic")


def test_cost_matrices_that_are_no_costs_are_refused_at_construction():
    """Integer, NaN and negative C, named at OTLoss's construction; integer logits named as logits, not as C."""
    with pytest.raises(ValueError, match="C must be a floating-point cost matrix, got torch.int64"):
        OTLoss(torch.tensor([[0, 1], [1, 0]]), 10.0)
    with pytest.raises(ValueError, match="C contains NaN or inf"):
        OTLoss(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), 10.0)
    with pytest.raises(ValueError, match="C must hold non-negative costs"):
        OTLoss(torch.tensor([[0.0, -1.0], [1.0, 0.0]]), 10.0)
    loss = OTLoss(torch.rand(3, 2), 10.0, logits=True)
    with pytest.raises(ValueError, match="logits_s must be a floating-point tensor, got torch.int64"):
        loss(torch.tensor([[1, 2, 3]]), torch.tensor([[0.5, 0.1]]))
    with pytest.raises(ValueError, match="logits_t must be a floating-point tensor, got torch.int64"):
        ot_loss_with_logits(torch.randn(1, 3), torch.tensor([[1, 2]]), torch.rand(3, 2), 10.0)


def test_the_module_builds_its_kernel_once_and_again_only_when_C_changes():
    """The Gibbs kernel that validated C at construction serves the first forward pass; an in-place edit of C, a new C or
    another compute dtype rebuilds it (a stale kernel would give the loss of the old C)."""
    C = torch.rand(L_S, L_T, dtype=torch.float64)
    logits_s, logits_t = torch.randn(4, L_S, dtype=torch.float64), torch.randn(4, L_T, dtype=torch.float64)
    module = OTLoss(C, 10.0, logits=True)
    built = module._kernel
    assert built is not None
    first = module(logits_s, logits_t)
    assert module._kernel is built
    with torch.no_grad():
        module.C.mul_(2.0)
    torch.testing.assert_close(module(logits_s, logits_t), OTLoss(2 * C, 10.0, logits=True)(logits_s, logits_t), rtol=0, atol=0)
    assert module._kernel is not built and not torch.equal(module(logits_s, logits_t), first)
    module.C = C.clone()
    torch.testing.assert_close(module(logits_s, logits_t), first, rtol=0, atol=0)
    module(logits_s.float(), logits_t.float())
    assert module._kernel_key[-1] == torch.float32


def test_probabilities_passed_as_logits_warn():
    h_s, h_t = torch.softmax(torch.randn(4, 3), 1), torch.softmax(torch.randn(4, 2), 1)
    C = torch.rand(3, 2)
    with pytest.warns(UserWarning, match="look like probabilities .* softmaxed again"):
        OTLoss(C, 10.0, logits=True)(h_s, h_t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OTLoss(C, 10.0, logits=True)(torch.randn(4, 3), torch.randn(4, 2))  # logits: no warning
        OTLoss(C, 10.0)(h_s, h_t)  # probabilities where they belong
        ot_loss_with_logits(h_s, h_t, C, 10.0, deferred=True)  # deferred reads nothing, so checks nothing
