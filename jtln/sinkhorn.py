r"""Batched matrix scaling (Algorithm 1) in the scaling and the log domain.

Both solvers find, for every row ``b`` of a batch, scalings ``u_b``, ``v_b``
such that :math:`\mathrm{diag}(u_b) K \mathrm{diag}(v_b)` has marginals
``a_b`` and ``b_b``, where :math:`K = e^{-\lambda C - 1}`.

Two choices differ from the literal reference (:mod:`reference.algorithm1`):

* ``C`` is shifted by its minimum before exponentiating.  The plan is
  unchanged (the shift is absorbed by ``u``), but ``K`` no longer underflows
  when all costs are large.
* Convergence is the marginal error :math:`\max_b \lVert u_b \odot K v_b -
  a_b\rVert_1 < tol`, checked every ``check_every`` iterations (it reuses
  ``K v``, which the ``u`` update needs anyway), rather than the change of
  ``u`` at every step; this is scale-free and costs nothing between checks.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch


def default_tol(dtype):
    """Marginal-error tolerance reachable in ``dtype``."""
    return {torch.float64: 1e-9, torch.float32: 1e-6}.get(dtype, 1e-3)


@dataclass
class Scalings:
    r"""Result of a batched matrix scaling.

    ``log_u`` [B, L_s] and ``log_v`` [B, L_t] are the logarithms of the
    scalings of :math:`e^{-\lambda (C - \min C) - 1}`; ``n_iter`` the
    iterations run; ``marginal_error`` the last measured error; ``domain``
    "scaling" or "log".
    """

    log_u: torch.Tensor
    log_v: torch.Tensor
    n_iter: int
    marginal_error: float
    domain: str
    #: line 6 of Algorithm 1, <gamma_0, C>_F per row [B], where the solver had it at hand
    cost: torch.Tensor = None


def potentials(log_u, log_v, lam):
    r"""Eq. 11: the centred duals :math:`\alpha = (\log u - \overline{\log u})/\lambda`, :math:`\beta` alike, each [B, L].

    Centring makes them tangent to the simplex; it also removes the constant
    that shifting ``C`` by its minimum puts into ``log u``.
    """
    alpha = (log_u - log_u.mean(dim=1, keepdim=True)) / lam
    beta = (log_v - log_v.mean(dim=1, keepdim=True)) / lam
    return alpha, beta


def scaling_is_safe(C, lam):
    """Whether ``exp(-lam (C - min C) - 1)`` and the scalings stay in range.

    The scalings span about ``exp(lam * (max C - min C))``; a quarter of the
    dtype's exponent range leaves room for the products ``u_i K_ij v_j``.
    """
    spread = lam * (C.max() - C.min()).item()
    return spread < math.log(torch.finfo(C.dtype).max) / 4


def sinkhorn(a, b, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto"):
    """Scale ``exp(-lam C - 1)`` to marginals ``a`` [B, L_s] and ``b`` [B, L_t].

    ``C`` is [L_s, L_t] (shared by the batch) or, in the log domain only,
    [B, L_s, L_t].  ``domain`` is "auto" (scaling domain unless the exponent
    range makes it unsafe, see :func:`scaling_is_safe`), "scaling" or "log".
    A scaling-domain run that still over- or underflows is redone in the log
    domain.  Warns with the final marginal error if ``max_iter`` is reached.
    """
    if tol is None:
        tol = default_tol(C.dtype)
    if domain not in ("auto", "scaling", "log"):
        raise ValueError(f"domain must be 'auto', 'scaling' or 'log', got {domain!r}")
    if domain == "auto":
        domain = "scaling" if C.dim() == 2 and scaling_is_safe(C, lam) else "log"
    if domain == "scaling":
        if C.dim() != 2:
            raise ValueError("the scaling domain needs one cost matrix C [L_s, L_t] shared by the batch")
        result = _sinkhorn_scaling(a, b, C, lam, tol, max_iter, check_every)
        if result is not None:
            return result
    return _sinkhorn_log(a, b, C, lam, tol, max_iter, check_every)


def _warn_not_converged(max_iter, error, tol):
    warnings.warn(
        f"Sinkhorn did not converge in {max_iter} iterations: marginal error {error:.3e} > tol {tol:.1e}",
        RuntimeWarning,
        stacklevel=4,
    )


def _sinkhorn_scaling(a, b, C, lam, tol, max_iter, check_every):
    """Algorithm 1 on the whole batch with preallocated buffers; None if it over/underflowed.

    On the CPU the loop runs in NumPy on the same memory: for these small
    products (B x 87 by 87 x 13) torch's per-call dispatch costs more than the
    arithmetic, and NumPy halves the time of an iteration.  ``np.matmul`` /
    ``np.divide`` and ``torch.matmul`` / ``torch.divide`` share their
    signatures, so one loop serves both.
    """
    B, L_s = a.shape
    L_t = b.shape[1]
    if C.device.type == "cpu":
        xp = np
        a, b, C_ = (t.detach().contiguous().numpy() for t in (a, b, C))
        dtype = {"float32": np.float32, "float64": np.float64}.get(str(C_.dtype), np.float64)
        a, b, C_ = a.astype(dtype, copy=False), b.astype(dtype, copy=False), C_.astype(dtype, copy=False)
        K = np.exp(-lam * (C_ - C_.min()) - 1.0).astype(dtype, copy=False)
        K_T = np.ascontiguousarray(K.T)
        u = np.full((B, L_s), 1.0 / L_s, dtype=dtype)
        v, Ktu, Kv = np.empty((B, L_t), dtype), np.empty((B, L_t), dtype), np.empty((B, L_s), dtype)
    else:
        xp, C_ = torch, C
        K = torch.exp(-lam * (C - C.min()) - 1.0)
        K_T = K.T.contiguous()
        u = torch.full((B, L_s), 1.0 / L_s, dtype=C.dtype, device=C.device)
        v, Ktu, Kv = (torch.empty(shape, dtype=C.dtype, device=C.device) for shape in ((B, L_t), (B, L_t), (B, L_s)))
    error = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        xp.matmul(u, K, out=Ktu)  # (K^T u_b)^T for every row b
        xp.divide(b, Ktu, out=v)  # line 3
        xp.matmul(v, K_T, out=Kv)
        if n_iter % check_every == 0:
            # row marginal of diag(u) K diag(v) before the u update; columns are exact
            error = float(xp.abs(u * Kv - a).sum(1).max())
            if not math.isfinite(error):
                return None
            if error < tol:
                xp.divide(a, Kv, out=u)
                break
        xp.divide(a, Kv, out=u)  # line 4
    else:
        _warn_not_converged(max_iter, error, tol)
    if not (bool(xp.isfinite(u).all()) and bool(xp.isfinite(v).all()) and bool((Kv > 0).all())):
        return None
    cost = ((u @ (K * C_)) * v).sum(1)  # line 6: u^T (K o C) v, without forming the plan
    if xp is np:
        u, v, cost = (torch.from_numpy(x) for x in (u, v, cost))
    tiny = torch.finfo(C.dtype).tiny
    return Scalings(u.clamp_min(tiny).log(), v.clamp_min(tiny).log(), n_iter, error, "scaling", cost)


def _sinkhorn_log(a, b, C, lam, tol, max_iter, check_every):
    """The same iterations on ``f = log u``, ``g = log v`` with log-sum-exp."""
    tiny = torch.finfo(C.dtype).tiny
    log_a = a.clamp_min(tiny).log()
    log_b = b.clamp_min(tiny).log()
    C_min = C.amin(dim=(-2, -1), keepdim=True)
    M = lam * (C - C_min) + 1.0  # K = exp(-M)
    f = torch.full_like(log_a, -math.log(a.shape[1]))
    error = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        g = log_b - torch.logsumexp(f.unsqueeze(2) - M, dim=1)  # line 3
        log_Kv = torch.logsumexp(g.unsqueeze(1) - M, dim=2)
        if n_iter % check_every == 0:
            error = ((f + log_Kv).exp() - a).abs().sum(dim=1).max().item()
            if error < tol:
                f = log_a - log_Kv
                break
        f = log_a - log_Kv  # line 4
    else:
        _warn_not_converged(max_iter, error, tol)
    return Scalings(f, g, n_iter, error, "log")


def transport_plan(scalings, C, lam):
    r""":math:`\gamma_0 = \mathrm{diag}(u) K \mathrm{diag}(v)` for each row, [B, L_s, L_t]."""
    M = lam * (C - C.amin(dim=(-2, -1), keepdim=True)) + 1.0
    return torch.exp(scalings.log_u.unsqueeze(2) + scalings.log_v.unsqueeze(1) - M)


def transport_cost(scalings, C, lam):
    r"""Line 6 of Algorithm 1, :math:`\langle \gamma_0, C\rangle_F` for each row, [B].

    In the scaling domain this is :math:`u^\top (K \odot C) v` without
    forming the [B, L_s, L_t] plan.
    """
    if scalings.cost is not None:
        return scalings.cost
    return (transport_plan(scalings, C, lam) * C).sum(dim=(-2, -1))
