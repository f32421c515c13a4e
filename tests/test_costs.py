"""jtln.costs (Sec. 3.4 cost matrices) against the reference, class pair by class pair."""

import numpy as np
import pytest
import torch

from jtln.costs import median_bandwidths, mmd_cost_matrix, normalize_cost, ot_cost_matrix
from reference.class_ot import class_ot_distance
from reference.mmd import mk_mmd2_linear, mk_mmd2_unbiased
from tests.conftest import RTOL

SIGMAS, BETAS = [0.5, 1.0, 2.0], [0.2, 0.3, 0.5]
L_S, L_T = 4, 3


def features(rng, dtype):
    y_s = np.r_[np.arange(L_S).repeat(2), rng.integers(0, L_S, 30)]  # every class has >= 2 samples
    y_t = np.r_[np.arange(L_T).repeat(2), rng.integers(0, L_T, 15)]
    f_s = rng.standard_normal((len(y_s), 5)) + y_s[:, None] * 0.3
    f_t = rng.standard_normal((len(y_t), 5)) + 0.5
    as_t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    return (f_s, y_s, f_t, y_t), (as_t(f_s), torch.tensor(y_s), as_t(f_t), torch.tensor(y_t))


def per_pair(fn, f_s, y_s, f_t, y_t):
    return np.array([[fn(f_s[y_s == i], f_t[y_t == j]) for j in range(L_T)] for i in range(L_S)])


@pytest.mark.parametrize("estimator", ["linear", "unbiased"])
def test_mmd_cost_matrix_matches_reference_per_pair(rng, dtype, estimator):
    (f_s, y_s, f_t, y_t), args = features(rng, dtype)
    reference = {"linear": mk_mmd2_linear, "unbiased": mk_mmd2_unbiased}[estimator]
    expected = per_pair(lambda a, b: reference(a, b, SIGMAS, BETAS), f_s, y_s, f_t, y_t)
    C = mmd_cost_matrix(*args, sigmas=SIGMAS, betas=BETAS, estimator=estimator, normalize="none")
    assert C.shape == (L_S, L_T) and C.dtype == dtype
    np.testing.assert_allclose(C.numpy(), expected, rtol=0, atol=RTOL[dtype] * 10)


def test_ot_cost_matrix_matches_reference_per_pair(rng, dtype):
    (f_s, y_s, f_t, y_t), args = features(rng, dtype)
    lam = 0.2
    expected = per_pair(lambda a, b: class_ot_distance(a, b, lam, tol=1e-13), f_s, y_s, f_t, y_t)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    C = ot_cost_matrix(*args, lam=lam, normalize="none", tol=tol)
    np.testing.assert_allclose(C.numpy(), expected, rtol=RTOL[dtype] * 10)


def test_default_lam_and_bandwidths_give_sensible_costs(rng):
    """Source classes drift away from the target (offset 0.3 * class): costs grow with the class index."""
    _, args = features(rng, torch.float64)
    for C in (mmd_cost_matrix(*args), ot_cost_matrix(*args)):
        assert C.min() == 0 and C.max() == 1  # minmax normalisation
        row_means = C.mean(dim=1)
        assert row_means[-1] > row_means[0]


def test_median_bandwidths():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # squared distances 1, 4, 9: median 4
    sigmas, betas = median_bandwidths(x, n_kernels=3)
    np.testing.assert_allclose(sigmas.numpy(), [1.0, 2.0, 4.0], rtol=1e-12)
    np.testing.assert_allclose(betas.numpy(), [1 / 3] * 3, rtol=1e-12)


def test_normalize_cost():
    C = torch.tensor([[-1.0, 1.0], [3.0, 2.0]])
    np.testing.assert_allclose(normalize_cost(C, "minmax").numpy(), [[0, 0.5], [1, 0.75]])
    np.testing.assert_allclose(normalize_cost(C, "max").numpy(), [[-1 / 3, 1 / 3], [1, 2 / 3]])
    assert normalize_cost(C, "none") is C
    with pytest.raises(ValueError, match="normalize must be"):
        normalize_cost(C, "l2")


def test_bad_input(rng):
    _, (f_s, y_s, f_t, y_t) = features(rng, torch.float64)
    with pytest.raises(ValueError, match=r"class\(es\) \[4, 5\] of y_s have no samples"):
        mmd_cost_matrix(f_s, y_s, f_t, y_t, L_s=6)
    with pytest.raises(ValueError, match="y_t must lie in"):
        ot_cost_matrix(f_s, y_s, f_t, y_t, L_t=2)
    with pytest.raises(ValueError, match="same feature dimension"):
        ot_cost_matrix(f_s, y_s, f_t[:, :2], y_t)
    lonely = torch.cat([y_t, torch.tensor([L_T])])  # a new target class with a single sample
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd_cost_matrix(f_s, y_s, torch.cat([f_t, f_t[:1]]), lonely)
    bad = f_s.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="feat_s contains NaN or inf"):
        mmd_cost_matrix(bad, y_s, f_t, y_t)


@pytest.mark.parametrize("cost", [mmd_cost_matrix, ot_cost_matrix])
def test_numpy_in_tensor_out_and_labels_that_are_no_indices_refused_by_name(rng, cost):
    """Issue 35: the cost functions take NumPy like the loss does; string labels, float labels and no samples at all
    are refused with the argument's name and the fix."""
    _, (f_s, y_s, f_t, y_t) = features(rng, torch.float64)
    from_numpy = cost(f_s.numpy(), y_s.numpy(), f_t.numpy(), y_t.numpy())
    assert torch.is_tensor(from_numpy)
    torch.testing.assert_close(from_numpy, cost(f_s, y_s, f_t, y_t), rtol=0, atol=0)
    names = np.array([f"class {int(y)}" for y in y_s])
    with pytest.raises(ValueError, match=r"y_s must hold integer class indices 0..L-1, got names such as 'class 0'; .*"
                                         r"numpy.unique\(y_s, return_inverse=True\)"):
        cost(f_s, names, f_t, y_t)
    with pytest.raises(ValueError, match="y_t must hold integer class indices .* names such as 'a'"):
        cost(f_s, y_s, f_t, ["a"] * len(y_t))
    with pytest.raises(ValueError, match="y_t must hold integer class labels, got dtype torch.float64"):
        cost(f_s, y_s, f_t, y_t.double())
    with pytest.raises(ValueError, match=r"feat_s has no samples \(shape \(0, 5\)\)"):
        cost(f_s[:0], y_s[:0], f_t, y_t)
    with pytest.raises(ValueError, match="feat_t must be a torch.Tensor or a NumPy array of features"):
        cost(f_s, y_s, f_t.tolist(), y_t)
    with pytest.raises(ValueError, match=r"y_s must have shape \[\d+\], one label per row"):
        cost(f_s, y_s[:-1], f_t, y_t)
