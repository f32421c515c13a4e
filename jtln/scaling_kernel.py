r"""Algorithm 1's scaling-domain loop compiled for the CPU (numba): the OT core's one kernel outside torch.

On the CPU, the OT loss of a training step is a few hundred operations on
[B, L] arrays (B = 32, L <= 100).  At these sizes an interpreted loop, torch's
or NumPy's, costs per call, not per element; worse, after the step's
convolutions have gone through the caches, each kind of call is paid cold.
Compiled, the whole loop is one call, and the OT term's share of a JTLN
training step falls by about 40% (``tox -e bench``, BENCHMARKS.md).

:func:`iterate` runs the same iterations as the torch loop
(:func:`jtln.sinkhorn._scaling_iterations`, the one a GPU runs): lines 3-4 of
Algorithm 1 on every row, the marginal error every ``check_every``
iterations, and at each check that has not converged Aitken's extrapolation
of ``log v`` from the last three iterates (:func:`jtln.sinkhorn.aitken`),
until a check finds the error grown.  The products are BLAS's (numba's
``np.dot``), in the arrays' dtype as torch's are; the marginal error and
Aitken's step sum in float64.  So results agree with the torch loop's to
rounding, not bit for bit (``tests/test_scaling_kernel.py``).  The first
call per dtype compiles (a few seconds), then numba's cache keeps the
machine code beside this file.
"""

import math

import numba
import numpy as np

#: a denominator floor, above float32's smallest normal number (here and in :func:`jtln.sinkhorn.aitken`)
TINY = 1e-30
#: the largest change of an entry of ``log v`` in a row's last step that Aitken's step still extrapolates (both loops)
EXTRAPOLATE_BELOW = 1.0
#: IEEE arithmetic (x / 0 is inf, 0 / 0 NaN: the loop's over- and underflows, which it reports) instead of numba's
#: default ZeroDivisionError; the machine code is cached beside this file
compiled = numba.njit(cache=True, error_model="numpy")


@compiled
def _max(x, y):
    """``max(x, y)``, NaN if either is, as ``np.maximum``, ``torch.amax`` and ``torch.clamp_min``."""
    return x if (x != x or x >= y) else y


@compiled
def _divide(x, y, out):
    """``out = x / y`` entry by entry."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] / y[i, j]


@compiled
def _marginal_error(u, Kv, a):
    r""":math:`\max_b \lVert u_b \odot K v_b - a_b\rVert_1`; NaN if any row's is."""
    error = 0.0
    for i in range(u.shape[0]):
        row = 0.0
        for k in range(u.shape[1]):
            row += abs(u[i, k] * Kv[i, k] - a[i, k])
        error = _max(error, row)
    return error


@compiled
def _aitken(history, tiny, v):
    """``v = exp(aitken(log history))`` row by row, as :func:`jtln.sinkhorn.aitken` on the floored logarithms."""
    L = v.shape[1]
    x = np.empty((3, L))
    for i in range(v.shape[0]):
        for r in range(3):
            for j in range(L):
                x[r, j] = math.log(_max(history[r, i, j], tiny))
        den, num, moved = 0.0, 0.0, 0.0
        for j in range(L):
            d1, d2 = x[1, j] - x[0, j], x[2, j] - x[1, j]
            den += d1 * d1
            num += d1 * d2
            moved = _max(moved, abs(d2))
        factor = num / _max(den - num, TINY)  # rho / (1 - rho)
        keep = abs(factor - 49.5) < 49.5 and moved < EXTRAPOLATE_BELOW  # rho in [0, 0.99), and near the fixed point
        factor = factor * keep
        for j in range(L):
            v[i, j] = math.exp(x[2, j] + factor * (x[2, j] - x[1, j]))


@compiled
def iterate(a, b, K, K_T, KC, tiny, tol, max_iter, check_every, extrapolate):
    """Algorithm 1 in the scaling domain on arrays ``a`` [B, L_s], ``b`` [B, L_t], ``K``, its transpose and ``K o C``.

    Returns ``(finite, converged, log_u, log_v, cost, n_iter, error)``:
    ``finite`` False if the loop over- or underflowed (the other values are
    then meaningless), ``converged`` whether a check met ``tol`` before
    ``max_iter``, ``cost`` line 6 per row, :math:`u^\\top (K \\odot C) v`.
    """
    B, L_s = a.shape
    L_t = b.shape[1]
    u, v, history = np.full_like(a, 1.0 / L_s), np.empty_like(b), np.empty((3, B, L_t), b.dtype)
    extrapolating = extrapolate and check_every >= 3
    last_error = error = np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        _divide(b, np.dot(u, K), v)  # line 3: v = b / K^T u, for every row
        phase = n_iter % check_every
        slot = (phase + 2) % check_every  # phases check_every - 2, check_every - 1 and 0 keep v in history[0, 1, 2]
        if extrapolating and slot < 3:
            history[slot] = v
        Kv = np.dot(v, K_T)
        if phase == 0:
            # row marginal of diag(u) K diag(v) before the u update; columns are exact
            error = _marginal_error(u, Kv, a)
            if not math.isfinite(error):
                return False, False, u, v, np.empty(0, a.dtype), n_iter, error
            if error < tol:
                converged = True
                _divide(a, Kv, u)
                break
            if error > last_error:
                extrapolating = False
            last_error = error
            if extrapolating:
                _aitken(history, tiny, v)
                Kv = np.dot(v, K_T)
        _divide(a, Kv, u)  # line 4: u = a / K v
    # the scalings are bounded (GibbsKernel.safe), so an infinite or NaN entry is an over- or underflow
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        return False, converged, u, v, np.empty(0, a.dtype), n_iter, error
    cost = (np.dot(u, KC) * v).sum(axis=1)  # line 6: u^T (K o C) v, without forming the plan
    log_u, log_v = np.empty_like(u), np.empty_like(v)
    for i in range(B):
        for k in range(L_s):
            log_u[i, k] = math.log(_max(u[i, k], tiny))
        for j in range(L_t):
            log_v[i, j] = math.log(_max(v[i, j], tiny))
    return True, converged, log_u, log_v, cost, n_iter, error
