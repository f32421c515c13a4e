"""jtln.sinkhorn: Aitken extrapolation keeps the fixed point, the Gibbs kernel is checked and kept."""

import numpy as np
import pytest
import torch

from jtln.ot import OTLoss, ot_loss
from jtln.sinkhorn import GibbsKernel, _Extrapolation, aitken, sinkhorn, transport_plan
from tests.conftest import random_histograms


def peaked_histograms(rng, B, L, scale):
    """Softmax outputs of scaled Gaussian logits: the harder, slower problems of late training."""
    return torch.tensor(rng.normal(size=(B, L)) * scale).softmax(1)


def problems(rng):
    """(a, b, C, lam): near-uniform and peaked histograms, a zero in b, a batch of several C (log domain)."""
    C = torch.tensor(rng.random((6, 4)))
    a, b = peaked_histograms(rng, 16, 6, 3.0), peaked_histograms(rng, 16, 4, 3.0)
    b_zero = b.clone()
    b_zero[0] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    yield "uniform-ish", torch.tensor(random_histograms(rng, 16, 6)), torch.tensor(random_histograms(rng, 16, 4)), C, 10.0
    yield "peaked", a, b, C, 10.0
    yield "peaked, lam 50", a, b, C, 50.0
    yield "zero mass in b", a, b_zero, C, 10.0
    yield "batched C", a, b, torch.tensor(rng.random((16, 6, 4))), 10.0


@pytest.mark.parametrize("domain", ["scaling", "log"])
def test_extrapolation_keeps_the_fixed_point(rng, domain):
    """Same plans with and without extrapolation, to the tolerance asked (1e-12 marginal error)."""
    for name, a, b, C, lam in problems(rng):
        if domain == "scaling" and C.dim() == 3:
            continue
        plain = sinkhorn(a, b, C, lam, tol=1e-12, domain=domain, extrapolate=False)
        fast = sinkhorn(a, b, C, lam, tol=1e-12, domain=domain, extrapolate=True)
        assert plain.marginal_error < 1e-12 and fast.marginal_error < 1e-12, name
        np.testing.assert_allclose(transport_plan(fast, C, lam), transport_plan(plain, C, lam), rtol=0, atol=1e-11, err_msg=name)


def test_extrapolation_cuts_iterations():
    """Peaked histograms, lam 10 and 30, tol 1e-9: never slower, and on the median problem at least twice faster.

    Measured here: 3.2 times fewer iterations on the median problem (30 to 2840 without it).  On
    the slowest (lam 30, 2840 iterations) one row's estimated rate stays above 0.99: that row is
    never extrapolated, and it sets the pace.
    """
    counts = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for scale in (1.0, 3.0, 5.0):
            a, b = peaked_histograms(rng, 32, 6, scale), peaked_histograms(rng, 32, 4, scale)
            C = torch.tensor(rng.random((6, 4)))
            for lam in (10.0, 30.0):
                counts.append([sinkhorn(a, b, C, lam, tol=1e-9, extrapolate=flag).n_iter for flag in (False, True)])
    plain, fast = np.array(counts).T
    assert (fast <= plain).all(), counts
    assert np.median(plain / fast) >= 2, counts


def test_aitken_finds_the_limit_of_geometric_rows():
    """x_k = x* + rho^k d per row: exact for rho in [0, 0.99); a row with rho > 1 is left at x2."""
    rng = np.random.default_rng(0)
    x_star, d = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    rho = np.array([0.3, 0.9, 0.98, 1.5])[:, None]
    history = np.stack([x_star + rho**k * d for k in (1, 2, 3)])
    out = aitken(torch.tensor(history)).numpy()
    np.testing.assert_allclose(out[:3], x_star[:3], atol=1e-12)
    np.testing.assert_array_equal(out[3], history[2, 3])


def test_extrapolation_keeps_the_last_three_iterates_and_stops_once_the_error_grows():
    v = torch.empty(1, 2)
    extrapolation = _Extrapolation(True, 10, v, to_log=lambda x: x)
    for phase, value in ((8, 1.0), (9, 1.5), (0, 1.75)):  # the last three phases of a period, in order
        extrapolation.slots[phase].fill_(value)
    assert all(extrapolation.slots[phase] is v for phase in range(1, 8))  # the others are the loop's own v
    torch.testing.assert_close(extrapolation.at_check(1e-2), torch.full((1, 2), 2.0))  # 1, 1.5, 1.75 -> 2
    assert extrapolation.at_check(1e-1) is None  # grew: off for good
    assert extrapolation.at_check(1e-3) is None and not extrapolation.enabled
    assert all(slot is v for slot in extrapolation.slots)
    assert not _Extrapolation(True, 2, v, to_log=lambda x: x).enabled  # needs three iterates per period


def test_kernel_must_match_the_cost_matrix_and_lam(rng):
    a, b = torch.tensor(random_histograms(rng, 3, 6)), torch.tensor(random_histograms(rng, 3, 4))
    C = torch.tensor(rng.random((6, 4)))
    kernel = GibbsKernel.of(C, 10.0)
    scalings = sinkhorn(a, b, C, 10.0, kernel=kernel)
    assert scalings.domain == "scaling"
    assert all(torch.is_tensor(x) for x in (scalings.log_u, scalings.log_v, scalings.cost))  # the CPU loop's arrays, as tensors
    for C_other, lam in ((C, 20.0), (C.float(), 10.0), (C[:5], 10.0)):
        with pytest.raises(ValueError, match="kernel was built for another"):
            sinkhorn(a[:, : C_other.shape[0]], b, C_other, lam, kernel=kernel)
    with pytest.raises(ValueError, match="C contains NaN"):
        GibbsKernel.of(torch.full((2, 2), float("nan")), 1.0)


def test_otloss_rebuilds_its_kernel_when_C_changes(rng):
    """The kernel kept by OTLoss follows in-place changes, a new buffer and the inputs' dtype."""
    h_s, h_t = torch.tensor(random_histograms(rng, 4, 6)), torch.tensor(random_histograms(rng, 4, 4))
    loss = OTLoss(torch.tensor(rng.random((6, 4))), 10.0, reduction="none")
    first = loss(h_s, h_t)
    loss.C.mul_(2.0)
    torch.testing.assert_close(loss(h_s, h_t), ot_loss(h_s, h_t, loss.C, 10.0), rtol=1e-12, atol=0)
    assert not torch.allclose(loss(h_s, h_t), first)
    loss.C = torch.tensor(rng.random((6, 4)))
    torch.testing.assert_close(loss(h_s, h_t), ot_loss(h_s, h_t, loss.C, 10.0), rtol=1e-12, atol=0)
    torch.testing.assert_close(loss(h_s.float(), h_t.float()), ot_loss(h_s.float(), h_t.float(), loss.C.float(), 10.0))
    assert loss.kernel(torch.float32).dtype == torch.float32


@pytest.mark.parametrize("loop", ["numba", "torch"])
def test_a_scaling_run_that_overflows_is_redone_in_the_log_domain_without_warnings(rng, recwarn, loop):
    """domain="scaling" forced where exp(-lam C - 1) spans more than float32 holds: the loop overflows, says so by
    returning nothing, and the log domain gives the answer; an overflow warning would only mislead."""
    a, b = peaked_histograms(rng, 4, 6, 1.0).float(), peaked_histograms(rng, 4, 5, 1.0).float()
    C = torch.tensor(rng.random((6, 5)), dtype=torch.float32)
    C[0] = 0.95 + 0.05 * C[0]  # a row of K = exp(-150 (C - min C) - 1) below float32's range: K v is 0 there
    C[1, 0] = 0.0
    assert not GibbsKernel.of(C, 150.0).safe  # the case "auto" would send to the log domain itself
    forced = sinkhorn(a, b, C, 150.0, domain="scaling", kernel=GibbsKernel.of(C, 150.0, loop=loop))
    log = sinkhorn(a, b, C, 150.0, domain="log")
    assert forced.domain == "log" and forced.marginal_error < 1e-6
    torch.testing.assert_close(transport_plan(forced, C, 150.0), transport_plan(log, C, 150.0), rtol=0, atol=1e-6)
    assert [str(w.message) for w in recwarn] == []


def test_an_annealed_run_that_does_not_converge_warns_with_the_whole_budget():
    """At lam = 1e4 the stages share max_iter; the warning names the budget the caller gave, as the result's n_iter does."""
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.dirichlet(np.ones(6), 3))
    b = torch.tensor(rng.dirichlet(np.ones(4), 3))
    C = torch.tensor(rng.random((6, 4)))
    with pytest.warns(RuntimeWarning, match=r"did not converge in 300 iterations"):
        result = sinkhorn(a, b, C, 1e4, tol=1e-12, max_iter=300, domain="log")
    assert result.n_iter == 300
