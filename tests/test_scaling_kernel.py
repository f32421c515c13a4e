"""jtln.scaling_kernel: the compiled CPU loop runs the torch loop's iterations and reports the same outcomes.

The torch loop (:func:`jtln.sinkhorn._scaling_iterations`) is the one a GPU
runs and the one checked against the reference (tests/test_torch_branch.py);
here the kernel is held to it, outcome by outcome: converged, not converged
(the same iterations, and the same warning from :func:`jtln.sinkhorn.sinkhorn`),
over- or underflowed, NaN input.
"""

import itertools

import numpy as np
import pytest
import torch

from jtln import scaling_kernel
from jtln.sinkhorn import GibbsKernel, _scaling_iterations, aitken, default_tol, sinkhorn
from tests.test_sinkhorn import peaked_histograms

#: the loops' results agree to this, relative and absolute on values of order 1 (log u, log v, the cost): float64 sums in another order, and
#: float32 results that the kernel sums in float64
AGREE = {torch.float64: 1e-9, torch.float32: 2e-5}


def run_both(a, b, C, lam, tol, max_iter=10_000, check_every=10, extrapolate=True):
    """``(finite, converged, log_u, log_v, cost, n_iter, error)`` of the kernel and of the torch loop, as tensors."""
    kernel = GibbsKernel.of(C, lam)
    K, K_T, KC = kernel.K, kernel.K_T, kernel.KC
    compiled = scaling_kernel.iterate(a.numpy(), b.numpy(), K.numpy(), K_T.numpy(), KC.numpy(), kernel.tiny, tol, max_iter, check_every,
                                      extrapolate)
    compiled = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in compiled]
    return compiled, list(_scaling_iterations(a, b, K, K_T, KC, kernel.tiny, tol, max_iter, check_every, extrapolate))


def log_plan(result):
    return result[2][:, :, None] + result[3][:, None, :]


def grid():
    """Shapes from 1 x 1 to the paper profile's 100 x 100, near-uniform to peaked rows, lam 1 to 30, every check period."""
    shapes = [(32, 6, 4), (3, 1, 1), (8, 1, 5), (16, 10, 3), (4, 100, 100)]
    for (B, L_s, L_t), scale, lam, (check_every, extrapolate) in itertools.product(
            shapes, (0.3, 3.0, 10.0), (1.0, 10.0, 30.0), ((10, True), (10, False), (3, True), (1, False))):
        yield B, L_s, L_t, scale, lam, check_every, extrapolate


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_the_kernel_runs_the_torch_loops_iterations(dtype):
    """Converged runs: the same results; in float64 the same iteration count.

    In float32, sums in another order (and the kernel's marginal error and
    Aitken step in float64) change, near tol, which check converges: 5 of
    these 180 runs differ, from 24 (torch) against 27 (kernel) iterations to
    140 against 80.
    """
    rng = np.random.default_rng(0)
    for B, L_s, L_t, scale, lam, check_every, extrapolate in grid():
        a, b = peaked_histograms(rng, B, L_s, scale).to(dtype), peaked_histograms(rng, B, L_t, scale).to(dtype)
        C = torch.tensor(rng.random((L_s, L_t)), dtype=dtype)
        compiled, loop = run_both(a, b, C, lam, default_tol(dtype), check_every=check_every, extrapolate=extrapolate)
        case = f"B={B} L={L_s}x{L_t} scale={scale} lam={lam} check_every={check_every} extrapolate={extrapolate}"
        assert compiled[:2] == loop[:2] == [True, True], case
        if dtype == torch.float64:
            assert compiled[5] == loop[5], case
        assert all(x.dtype == y.dtype == dtype for x, y in zip(compiled[2:5], loop[2:5])), case
        # log u_i + log v_j: the log plan up to log K, free of the gauge (a constant moved between log u and log v) that
        # two runs along different iterates may end in
        for x, y in ((log_plan(compiled), log_plan(loop)), (compiled[4], loop[4])):
            torch.testing.assert_close(x, y, rtol=AGREE[dtype], atol=AGREE[dtype] * max(1.0, y.abs().max().item()), msg=case)


def test_both_loops_stop_at_max_iter_and_sinkhorn_warns_for_either(rng):
    a, b = peaked_histograms(rng, 8, 6, 3.0), peaked_histograms(rng, 8, 4, 3.0)
    C = torch.tensor(rng.random((6, 4)))
    compiled, loop = run_both(a, b, C, 30.0, 1e-14, max_iter=7, check_every=3)
    assert compiled[:2] == loop[:2] == [True, False] and compiled[5] == loop[5] == 7
    torch.testing.assert_close(compiled[2], loop[2], rtol=1e-12, atol=1e-12)
    assert compiled[6] == pytest.approx(loop[6], rel=1e-9)
    for loop_name in ("numba", "torch"):
        with pytest.warns(RuntimeWarning, match=r"did not converge in 7 iterations: marginal error [0-9.e+-]+ > tol 1\.0e-14"):
            sinkhorn(a, b, C, 30.0, tol=1e-14, max_iter=7, check_every=3, kernel=GibbsKernel.of(C, 30.0, loop=loop_name))


def test_both_loops_report_an_overflow_and_a_nan(rng):
    """A K with a row below float32's range (forced scaling domain), and NaN in a: not finite, from either loop."""
    a, b = peaked_histograms(rng, 4, 6, 1.0).float(), peaked_histograms(rng, 4, 5, 1.0).float()
    C = torch.tensor(rng.random((6, 5)), dtype=torch.float32)
    C[0] = 0.95 + 0.05 * C[0]
    C[1, 0] = 0.0
    compiled, loop = run_both(a, b, C, 150.0, 1e-6)
    assert compiled[0] is loop[0] is False
    a_nan = a.clone()
    a_nan[2, 1] = float("nan")
    compiled, loop = run_both(a_nan, b, C, 5.0, 1e-6)
    assert compiled[0] is loop[0] is False and np.isnan(compiled[6]) and np.isnan(loop[6])


def test_the_kernels_aitken_step_is_the_torch_one():
    """On the scalings, floored and in the log domain, as the torch loop's extrapolation calls :func:`jtln.sinkhorn.aitken`."""
    rng = np.random.default_rng(1)
    x_star, d = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    rho = np.array([0.3, 0.9, 0.98, 1.5])[:, None]
    history = np.exp(np.stack([x_star + rho**k * d for k in (1, 2, 3)]))
    v = np.empty((4, 5))
    scaling_kernel._aitken(history, np.finfo(np.float64).tiny, v)
    np.testing.assert_allclose(np.log(v), aitken(torch.tensor(np.log(history))).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.log(v[:3]), x_star[:3], rtol=0, atol=1e-12)
