"""The Triton program of :mod:`jtln.scaling_triton`, in a module of its own: it imports Triton, which an install may lack."""

import triton
import triton.language as tl


def sinkhorn_rows(a_ptr, b_ptr, K_ptr, KC_ptr, log_u_ptr, log_v_ptr, cost_ptr, n_iter_ptr, error_ptr, status_ptr,
                  L_s, L_t, tiny, tol, max_iter, check_every, extrapolate, EXTRAPOLATE_BELOW: tl.constexpr,
                  FLOOR: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_T: tl.constexpr):
    row = tl.program_id(0)
    s = tl.arange(0, BLOCK_S)
    t = tl.arange(0, BLOCK_T)
    in_s = s < L_s
    in_t = t < L_t
    K = tl.load(K_ptr + s[:, None] * L_t + t[None, :], mask=in_s[:, None] & in_t[None, :], other=0.0)
    a = tl.load(a_ptr + row * L_s + s, mask=in_s, other=0.0)
    b = tl.load(b_ptr + row * L_t + t, mask=in_t, other=0.0)
    zero_s = a * 0.0
    zero_t = b * 0.0
    u = tl.where(in_s, zero_s + 1.0 / L_s, zero_s)
    v = zero_t
    Kv = zero_s
    # the last three iterates of log v (Aitken's history), oldest first
    x0 = zero_t
    x1 = zero_t
    x2 = zero_t
    error = tl.sum(zero_s.to(tl.float64), axis=0) + float("inf")  # a 0-d float64: the last check's error
    last_error = error
    status = tl.sum(in_s.to(tl.int32), axis=0) * 0 + 0  # RUNNING
    extrapolating = tl.sum(in_s.to(tl.int32), axis=0) * 0 + extrapolate
    n = 0
    while (n < max_iter) & (status == 0):
        n += 1
        Ktu = tl.sum(K * u[:, None], axis=0)
        v = tl.where(in_t, b / Ktu, zero_t)  # line 3
        x0 = x1
        x1 = x2
        x2 = tl.log(tl.maximum(v, tiny))
        Kv = tl.sum(K * v[None, :], axis=1)
        checking = (n % check_every) == 0
        # the row marginal of diag(u) K diag(v) before the u update (the columns are exact); NaN stays NaN
        row_error = tl.sum(tl.where(in_s, tl.abs(u * Kv - a), zero_s).to(tl.float64), axis=0)
        error = tl.where(checking, row_error, error)
        bad = checking & ((row_error != row_error) | (row_error == float("inf")))
        done = checking & (row_error < tol)
        status = tl.where(bad, 2, tl.where(done, 1, status))
        grown = checking & (row_error > last_error)
        extrapolating = tl.where(grown, 0, extrapolating)
        last_error = tl.where(checking, row_error, last_error)
        # Aitken's step on log v (jtln.sinkhorn.aitken), taken at a check that has not converged
        d1 = (x1 - x0).to(tl.float64)
        d2 = (x2 - x1).to(tl.float64)
        den = tl.sum(tl.where(in_t, d1 * d1, 0.0), axis=0)
        num = tl.sum(tl.where(in_t, d1 * d2, 0.0), axis=0)
        moved = tl.max(tl.where(in_t, tl.abs(d2), 0.0), axis=0)
        factor = num / tl.maximum(den - num, FLOOR)  # rho / (1 - rho)
        near = (tl.abs(factor - 49.5) < 49.5) & (moved < EXTRAPOLATE_BELOW)
        step = checking & (status == 0) & (extrapolating != 0) & (check_every >= 3)
        factor = tl.where(near, factor, 0.0)
        jumped = tl.where(in_t, tl.exp(x2 + (factor * d2).to(x2.dtype)), zero_t)
        v = tl.where(step, jumped, v)
        Kv = tl.where(step, tl.sum(K * v[None, :], axis=1), Kv)
        u = tl.where((status != 2) & in_s, a / Kv, u)  # line 4 (also after the converged check, as the other loops)
    finite = tl.sum(tl.where(in_s, (u != u) | (tl.abs(u) == float("inf")), 0).to(tl.int32), axis=0) + tl.sum(
        tl.where(in_t, (v != v) | (tl.abs(v) == float("inf")), 0).to(tl.int32), axis=0)
    status = tl.where(finite > 0, 2, status)
    KC = tl.load(KC_ptr + s[:, None] * L_t + t[None, :], mask=in_s[:, None] & in_t[None, :], other=0.0)
    cost = tl.sum(tl.where(in_t, tl.sum(KC * u[:, None], axis=0) * v, zero_t), axis=0)  # line 6: u^T (K o C) v
    tl.store(log_u_ptr + row * L_s + s, tl.log(tl.maximum(u, tiny)), mask=in_s)
    tl.store(log_v_ptr + row * L_t + t, tl.log(tl.maximum(v, tiny)), mask=in_t)
    tl.store(cost_ptr + row, cost)
    tl.store(n_iter_ptr + row, n)
    tl.store(error_ptr + row, error)
    tl.store(status_ptr + row, status)


#: compiled by Triton's JIT for a GPU; with ``TRITON_INTERPRET=1`` in the environment when Triton is first imported, run by
#: Triton's interpreter on CPU tensors instead (how the tests run it on a machine without a GPU)
kernel = triton.jit(sinkhorn_rows)
next_power_of_2 = triton.next_power_of_2
