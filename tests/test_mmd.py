"""Eq. 12/14: reference.mmd against explicit loops and statistics; jtln.mmd against reference.mmd."""

import numpy as np
import pytest
import torch

from jtln.mmd import mk_mmd2
from reference.mmd import gaussian_kernel, mk_mmd2_linear, mk_mmd2_unbiased
from tests.conftest import RTOL

SIGMAS, BETAS = [0.5, 1.0, 2.0], [0.2, 0.3, 0.5]


def test_linear_estimator_equals_loop_over_quad_tuples(rng):
    xs, xt = rng.standard_normal((9, 3)), rng.standard_normal((12, 3)) + 0.3
    n = 8  # largest even number <= min(9, 12)
    g = []
    for i in range(1, n // 2 + 1):  # the paper's 1-based indices
        s1, s2, t1, t2 = xs[2 * i - 2], xs[2 * i - 1], xt[2 * i - 2], xt[2 * i - 1]
        k = lambda x, y: sum(b * np.exp(-np.sum((x - y) ** 2) / (2 * s**2)) for s, b in zip(SIGMAS, BETAS))  # noqa: E731
        g.append(k(s1, s2) + k(t1, t2) - k(s1, t2) - k(s2, t1))
    np.testing.assert_allclose(mk_mmd2_linear(xs, xt, SIGMAS, BETAS), 2 / n * sum(g), rtol=1e-14)


def test_gaussian_kernel_values():
    np.testing.assert_allclose(gaussian_kernel([0.0, 0.0], [3.0, 4.0], 5.0), np.exp(-0.5), rtol=1e-15)
    np.testing.assert_allclose(gaussian_kernel([1.0], [1.0], 0.1), 1.0, rtol=0)


def many_estimates(estimator, shift, n_repeats=300, n=40, seed=0):
    """Independent estimates by jtln.mmd.mk_mmd2 (fast; equal to the reference, see below)."""
    rng = np.random.default_rng(seed)
    return np.array([
        mk_mmd2(
            torch.tensor(rng.standard_normal((n, 2))), torch.tensor(rng.standard_normal((n, 2)) + shift),
            SIGMAS, BETAS, estimator=estimator,
        ).item()
        for _ in range(n_repeats)
    ])


def test_estimators_are_unbiased_zero_for_one_distribution_and_positive_for_shifted():
    for estimator in ("linear", "unbiased"):
        same = many_estimates(estimator, shift=0.0)
        shifted = many_estimates(estimator, shift=1.0)
        se = same.std(ddof=1) / np.sqrt(len(same))
        assert abs(same.mean()) < 4 * se, (estimator, same.mean(), se)  # |z| < 4
        assert shifted.mean() > 0.1 and shifted.mean() > 10 * shifted.std(ddof=1) / np.sqrt(len(shifted))


def test_linear_and_unbiased_estimators_agree_in_expectation():
    linear = many_estimates("linear", shift=0.7, n_repeats=400, seed=1)
    unbiased = many_estimates("unbiased", shift=0.7, n_repeats=400, seed=2)
    se = np.sqrt(linear.var(ddof=1) / len(linear) + unbiased.var(ddof=1) / len(unbiased))
    assert abs(linear.mean() - unbiased.mean()) < 4 * se, (linear.mean(), unbiased.mean(), se)


@pytest.mark.parametrize("estimator", ["linear", "unbiased"])
def test_jtln_matches_reference(rng, dtype, estimator):
    xs, xt = rng.standard_normal((15, 4)), rng.standard_normal((11, 4)) + 0.2
    reference = {"linear": mk_mmd2_linear, "unbiased": mk_mmd2_unbiased}[estimator]
    expected = reference(xs, xt, SIGMAS, BETAS)
    got = mk_mmd2(torch.tensor(xs, dtype=dtype), torch.tensor(xt, dtype=dtype), SIGMAS, BETAS, estimator=estimator)
    # the estimate is a difference of O(1) kernel means: compare on that scale
    np.testing.assert_allclose(got.item(), expected, rtol=0, atol=RTOL[dtype] * 10)


def test_bad_input_raises_value_error(rng):
    xs, xt = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    cases = [
        ((xs[:1], xt, SIGMAS, BETAS), "xs needs at least 2 samples"),
        ((xs, xt[:, :1], SIGMAS, BETAS), "same feature dimension"),
        ((xs, xt, SIGMAS, [0.5, 0.5, 0.5]), "sum to 1"),
        ((xs, xt, [0.0, 1.0, 2.0], BETAS), "sigmas must be"),
        ((np.full((5, 2), np.nan), xt, SIGMAS, BETAS), "xs contains NaN"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            mk_mmd2_linear(*args)
        torch_args = [torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
        with pytest.raises(ValueError, match=message):
            mk_mmd2(*torch_args)
    with pytest.raises(ValueError, match="estimator"):
        mk_mmd2(torch.tensor(xs), torch.tensor(xt), SIGMAS, BETAS, estimator="quadratic")
