"""Eq. 13's kernel weights chosen for the most powerful linear-time test (Gretton et al. 2012, the paper's [16])."""

import numpy as np
import pytest
import torch

from jtln.costs import mmd_cost_matrix
from jtln.mmd import linear_statistics, mk_mmd2, optimal_kernel_weights
from reference.mmd import linear_statistics as reference_statistics
from reference.mmd import optimal_kernel_weights as reference_weights


def comb_against_uniform(rng, n=2000):
    """1-D samples that differ only at a fine scale: integers plus 0.02 noise against a uniform spread over the same range.

    A kernel of width 0.05 sees the comb (its test's z-score is ~5 at n = 2000);
    one of width 5 sees two equal coarse densities (z ~ N(0, 1)).
    """
    xs = rng.integers(-10, 10, size=(n, 1)) + 0.02 * rng.standard_normal((n, 1))
    xt = rng.uniform(-10.5, 9.5, size=(n, 1))
    return xs, xt


def test_optimal_weights_go_to_the_kernel_that_separates():
    sigmas, first = [0.05, 5.0], []
    for seed in range(5):
        xs, xt = comb_against_uniform(np.random.default_rng(seed))
        beta = reference_weights(xs, xt, sigmas)
        assert abs(beta.sum() - 1) < 1e-12 and beta.min() >= 0
        first.append(beta[0])
        # jtln agrees with the reference on the statistics and the weights
        h = linear_statistics(torch.tensor(xs), torch.tensor(xt), sigmas)
        np.testing.assert_allclose(h.numpy(), reference_statistics(xs, xt, sigmas), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(optimal_kernel_weights(h).numpy(), beta, atol=1e-6)  # SLSQP to ftol 1e-15 both ways
    # the coarse kernel's own z-score is N(0, 1) noise: now and then (seed 2: z = 2.7) it earns a little weight
    assert min(first) > 0.8 and np.median(first) > 0.99, first


def test_the_weights_combine_into_eq14():
    """Eq. 14 with the optimal weights is the weights times the per-kernel means of h."""
    xs, xt = comb_against_uniform(np.random.default_rng(0), n=400)
    sigmas = [0.05, 0.5, 5.0]
    h = linear_statistics(torch.tensor(xs), torch.tensor(xt), sigmas)
    beta = optimal_kernel_weights(h)
    torch.testing.assert_close(mk_mmd2(torch.tensor(xs), torch.tensor(xt), sigmas, beta), h.mean(0) @ beta, rtol=1e-12, atol=0)


def test_no_kernel_with_power_keeps_uniform_weights():
    h = -torch.rand(50, 4, dtype=torch.float64)  # every eta_u < 0
    torch.testing.assert_close(optimal_kernel_weights(h), torch.full((4,), 0.25, dtype=torch.float64))


def test_the_cost_matrix_with_optimal_weights_uses_each_pair_own_weights():
    rng = np.random.default_rng(1)
    xs, xt = comb_against_uniform(rng, n=400)
    same = rng.uniform(-10.5, 9.5, size=(400, 1))
    feat_s = torch.tensor(np.concatenate([xs, same]))
    y_s = torch.tensor([0] * 400 + [1] * 400)
    feat_t, y_t = torch.tensor(xt), torch.zeros(400, dtype=torch.long)
    sigmas, uniform = torch.tensor([0.05, 5.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    C = mmd_cost_matrix(feat_s, y_s, feat_t, y_t, sigmas=sigmas, betas=uniform, kernel_weights="optimal", normalize="none")
    for i, x in enumerate((xs, same)):
        h = reference_statistics(x, xt, [0.05, 5.0])  # weights from the first half of the quads, Eq. 14 on the second
        beta = reference_weights(x[:200], xt[:200], [0.05, 5.0])
        np.testing.assert_allclose(C[i, 0].item(), h[100:].mean(0) @ beta, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="kernel_weights='optimal' needs estimator='linear'"):
        mmd_cost_matrix(feat_s, y_s, feat_t, y_t, kernel_weights="optimal", estimator="unbiased")
    with pytest.raises(ValueError, match="kernel_weights must be one of"):
        mmd_cost_matrix(feat_s, y_s, feat_t, y_t, kernel_weights="best")
