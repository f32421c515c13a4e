"""reference.algorithm1 (Algorithm 1, Eq. 11) against POT and finite differences."""

import warnings

import numpy as np
import ot
import pytest
import torch

from reference.algorithm1 import ot_loss, ot_loss_grad, ot_loss_grad_C, regularised_optimum
from tests.conftest import random_histograms


def problem(rng, L_s=7, L_t=5):
    h_s, h_t = random_histograms(rng, 1, L_s)[0], random_histograms(rng, 1, L_t)[0]
    return h_s, h_t, rng.random((L_s, L_t))


def test_loss_and_plan_match_pot_sinkhorn(rng):
    h_s, h_t, C = problem(rng)
    for lam in (1.0, 20.0, 100.0):
        r = ot_loss(h_s, h_t, C, lam, tol=1e-13)
        plan = ot.sinkhorn(h_s, h_t, C, reg=1 / lam, stopThr=1e-14, numItermax=1_000_000)
        np.testing.assert_allclose(r.loss, np.sum(plan * C), rtol=1e-9)
        np.testing.assert_allclose(r.plan, plan, atol=1e-11)
        np.testing.assert_allclose(r.plan.sum(axis=1), h_s, atol=1e-12)
        np.testing.assert_allclose(r.plan.sum(axis=0), h_t, atol=1e-9)


def test_identical_uniform_histograms_with_zero_diagonal_cost_cost_little():
    n = 4
    C = 1.0 - np.eye(n)
    r = ot_loss(np.full(n, 1 / n), np.full(n, 1 / n), C, lam=50.0)
    assert r.loss < 1e-6  # mass stays on the diagonal up to e^-50 leakage


def test_eq11_equals_pot_envelope_gradient(rng):
    h_s, h_t, C = problem(rng)
    lam = 10.0
    r = ot_loss(h_s, h_t, C, lam, tol=1e-14)
    alpha, beta = ot_loss_grad(r.u, r.v, lam)
    a = torch.tensor(h_s, requires_grad=True)
    b = torch.tensor(h_t, requires_grad=True)
    res = ot.solve(torch.tensor(C), a, b, reg=1 / lam, reg_type="entropy", grad="envelope", tol=1e-14, max_iter=100_000)
    res.value.backward()
    np.testing.assert_allclose(alpha, a.grad.numpy(), atol=1e-9)
    np.testing.assert_allclose(beta, b.grad.numpy(), atol=1e-9)
    assert abs(alpha.sum()) < 1e-12 and abs(beta.sum()) < 1e-12  # tangent to the simplex


def simplex_direction(rng, L):
    d = rng.standard_normal(L)
    return d - d.mean()


def directional_fd(f, x, d, eps=1e-6):
    return (f(x + eps * d) - f(x - eps * d)) / (2 * eps)


@pytest.mark.parametrize("lam", [1.0, 10.0, 50.0])
def test_eq11_is_the_gradient_of_the_regularised_optimum(rng, lam):
    h_s, h_t, C = problem(rng)
    r = ot_loss(h_s, h_t, C, lam, tol=1e-14)
    alpha, beta = ot_loss_grad(r.u, r.v, lam)
    for _ in range(3):
        d_s, d_t = simplex_direction(rng, len(h_s)), simplex_direction(rng, len(h_t))
        fd_s = directional_fd(lambda x: regularised_optimum(x, h_t, C, lam), h_s, d_s)
        fd_t = directional_fd(lambda x: regularised_optimum(h_s, x, C, lam), h_t, d_t)
        # central differences: O(eps^2 lam^2) truncation, O(1e-14 / eps) round-off
        np.testing.assert_allclose(alpha @ d_s, fd_s, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(beta @ d_t, fd_t, rtol=1e-5, atol=1e-8)


def transport_cost_gradient_gap(lam):
    """||alpha - grad_tangent <gamma_0, C>|| / ||grad_tangent <gamma_0, C>|| w.r.t. h_s, by central differences."""
    h_s, h_t, C = problem(np.random.default_rng(1))
    r = ot_loss(h_s, h_t, C, lam, tol=1e-14, max_iter=1_000_000)
    alpha, _ = ot_loss_grad(r.u, r.v, lam)
    L = len(h_s)
    grad = np.empty(L)
    for i in range(L):  # directions e_i - 1/L, a basis of the simplex's tangent space (up to centring)
        d = np.full(L, -1.0 / L)
        d[i] += 1.0
        grad[i] = directional_fd(lambda x: ot_loss(x, h_t, C, lam, tol=1e-14, max_iter=1_000_000).loss, h_s, d)
    return np.linalg.norm(alpha - grad) / np.linalg.norm(grad)


def test_eq11_is_not_the_gradient_of_the_transport_cost_alone_but_approaches_it():
    """Eq. 11 differentiates <gamma,C> + 1/lam sum gamma log gamma; the returned loss is <gamma,C>.

    Measured on this problem: the relative gap is about 4.8 at lam=1, 0.46 at 10,
    0.13 at 100 and 0.04 at 300: a training signal that is far from the gradient of
    the reported loss unless lam is large.
    """
    gaps = [transport_cost_gradient_gap(lam) for lam in (1.0, 10.0, 100.0, 300.0)]
    assert gaps[0] > 1.0, gaps
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.1, gaps


def test_bad_input_raises_value_error_naming_the_argument(rng):
    h_s, h_t, C = problem(rng)
    cases = [
        ((h_s * 2, h_t, C, 1.0), "h_s must sum to 1"),
        ((h_s, np.r_[h_t[:-1], np.nan], C, 1.0), "h_t contains NaN"),
        ((np.r_[-0.1, h_s[1:] + 0.1 / (len(h_s) - 1)], h_t, C, 1.0), "h_s has negative"),
        ((h_s, h_t, C.T, 1.0), "C must have shape"),
        ((h_s, h_t, C, 0.0), "lam must be"),
        ((h_s, h_t, C, -1.0), "lam must be"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            ot_loss(*args)


def test_non_convergence_warns_with_final_error(rng):
    h_s, h_t, C = problem(rng)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 3 iterations .*marginal error"):
        ot_loss(h_s, h_t, C, 50.0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ot_loss(h_s, h_t, C, 50.0)  # converges: no warning


def test_the_gradient_in_C_equals_pot_envelope_gradient_for_M(rng):
    h_s, h_t, C = problem(rng)
    for lam in (1.0, 10.0, 50.0):
        r = ot_loss(h_s, h_t, C, lam, tol=1e-14)
        M = torch.tensor(C, requires_grad=True)
        res = ot.solve(M, torch.tensor(h_s), torch.tensor(h_t), reg=1 / lam, reg_type="entropy", grad="envelope", tol=1e-14,
                       max_iter=100_000)
        res.value.backward()
        np.testing.assert_allclose(ot_loss_grad_C(r.u, r.v, C, lam), M.grad.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("lam", [1.0, 10.0, 50.0])
def test_the_gradient_in_C_is_the_gradient_of_the_regularised_optimum(rng, lam):
    h_s, h_t, C = problem(rng)
    r = ot_loss(h_s, h_t, C, lam, tol=1e-14)
    grad = ot_loss_grad_C(r.u, r.v, C, lam)
    for _ in range(3):  # any direction: C is unconstrained
        D = rng.standard_normal(C.shape)
        fd = directional_fd(lambda X: regularised_optimum(h_s, h_t, X, lam, tol=1e-14), C, D)
        np.testing.assert_allclose(np.sum(grad * D), fd, rtol=1e-5, atol=1e-8)  # central differences, as for Eq. 11
