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
* At each check that has not converged, ``log v`` is extrapolated by Aitken's
  delta-squared process (:func:`aitken`) from the last three iterates.  The
  iteration converges from any positive start, so this changes where the
  remaining iterations start, not the fixed point nor the convergence test;
  it cuts the iterations two- to four-fold on the training problems of the
  offline benchmark (``extrapolate=False`` gives the plain iteration).
"""

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from jtln._checks import check_finite, check_iterations
from jtln._host import NUMPY, TORCH, host_view, ops, to_tensor


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

    def as_tensors(self):
        """The same result with host views (:func:`jtln._host.host_view`) as tensors sharing their memory."""
        return replace(self, log_u=to_tensor(self.log_u), log_v=to_tensor(self.log_v), cost=to_tensor(self.cost))


def potentials(log_u, log_v, lam):
    r"""Eq. 11: the centred duals :math:`\alpha = (\log u - \overline{\log u})/\lambda`, :math:`\beta` alike, each [B, L].

    Centring makes them tangent to the simplex; it also removes the constant
    that shifting ``C`` by its minimum puts into ``log u``.  Works on torch
    tensors and NumPy arrays alike (the OT loss calls it on host views).
    """
    rowsum = ops(log_u).rowsum
    alpha = (log_u - rowsum(log_u)[:, None] / log_u.shape[1]) / lam
    beta = (log_v - rowsum(log_v)[:, None] / log_v.shape[1]) / lam
    return alpha, beta


@dataclass(frozen=True)
class GibbsKernel:
    r"""What the scaling-domain loop needs of one cost matrix ``C`` [L_s, L_t] and ``lam``.

    :math:`K = e^{-\lambda (C - \min C) - 1}`, its transpose (contiguous) and
    :math:`K \odot C` for line 6, as NumPy arrays on the CPU (host views) and
    torch tensors elsewhere.  ``safe``: whether the scaling domain stays in
    range.  The scalings span about ``exp(lam * (max C - min C))``; a quarter
    of the dtype's exponent range leaves room for the products ``u_i K_ij v_j``.
    :func:`sinkhorn` builds one per call; :class:`jtln.ot.OTLoss` keeps the
    one of its constant ``C``, so a training step skips the checks and
    exponentials of ``C``.  ``tiny``: the dtype's smallest normal number, the
    floor of the scalings before their logarithm.
    """

    lam: float
    shape: tuple
    dtype: torch.dtype
    device: torch.device
    K: object
    K_T: object
    KC: object
    safe: bool
    tiny: float

    @classmethod
    def of(cls, C, lam):
        """Validate ``C`` (finite, 2-D) and build its kernel."""
        check_finite(C, "C")
        if C.dim() != 2:
            raise ValueError(f"C must have shape [L_s, L_t], got {tuple(C.shape)}")
        C_ = host_view(C)
        o = ops(C_)
        lowest = o.min(C_)
        K = o.exp(-lam * (C_ - lowest) - 1.0)
        K_T = K.T.contiguous() if o is TORCH else np.ascontiguousarray(K.T)
        finfo = torch.finfo(C.dtype)
        safe = lam * float(o.max(C_) - lowest) < math.log(finfo.max) / 4
        return cls(lam, tuple(C.shape), C.dtype, C.device, K, K_T, K * C_, safe, finfo.tiny)

    def matches(self, C, lam):
        return self.lam == lam and self.shape == tuple(C.shape) and self.dtype == C.dtype and self.device == C.device


_TINY = 1e-30  # a denominator floor, above float32's smallest normal number


def aitken(x0, x1, x2):
    r"""Vector Aitken extrapolation of three consecutive iterates ``x0, x1, x2`` [B, L], row by row.

    Near its fixed point Sinkhorn's map is linear in ``log v`` with real
    eigenvalues in [0, 1) (squared singular values of the normalised plan),
    so the differences :math:`d_k = x_k - x_{k-1}` shrink by the largest one,
    :math:`\rho`, per iteration.  With :math:`\rho` estimated as
    :math:`\langle d_1, d_2\rangle / \lVert d_1\rVert^2` the limit is about
    :math:`x_2 + \frac{\rho}{1-\rho} d_2`.  Rows whose estimate is not in
    [0, 0.99) are left as they are.  (A constant added to ``log v`` is the
    gauge of the scalings, an eigenvalue 1 of the map; the differences of a
    converging sequence have no part along it, so they are not centred.)
    """
    d1, d2 = x1 - x0, x2 - x1
    o = ops(x0)
    num, den = o.rowsum(d1 * d2), o.rowsum(d1 * d1)
    factor = num / o.floor(den - num, _TINY)  # rho / (1 - rho)
    factor = factor * ((factor >= 0) & (factor < 99))  # rho in [0, 0.99); rho >= 1 meets the floor
    return x2 + factor[:, None] * d2


def sinkhorn(a, b, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto", extrapolate=True, kernel=None):
    """Scale ``exp(-lam C - 1)`` to marginals ``a`` [B, L_s] and ``b`` [B, L_t].

    ``C`` is [L_s, L_t] (shared by the batch) or, in the log domain only,
    [B, L_s, L_t].  ``domain`` is "auto" (scaling domain unless the exponent
    range makes it unsafe, see :class:`GibbsKernel`), "scaling" or "log".
    A scaling-domain run that still over- or underflows is redone in the log
    domain.  Warns with the final marginal error if ``max_iter`` is reached.
    ``extrapolate`` applies :func:`aitken` to ``log v`` at each check that has
    not converged (``check_every >= 3``), until a check finds the error grown.
    ``kernel`` is the :class:`GibbsKernel` of ``(C, lam)`` if the caller keeps
    one; it is built here otherwise.  ``C`` is checked to be finite here, once.
    """
    return _sinkhorn(a, b, C, lam, tol, max_iter, check_every, domain, extrapolate, kernel).as_tensors()


def _sinkhorn(a, b, C, lam, tol=None, max_iter=10_000, check_every=10, domain="auto", extrapolate=True, kernel=None):
    """:func:`sinkhorn`, with the scaling domain's arrays left as host views (the OT loss works on them)."""
    check_iterations(max_iter, check_every)
    if tol is None:
        tol = default_tol(C.dtype)
    if domain not in ("auto", "scaling", "log"):
        raise ValueError(f"domain must be 'auto', 'scaling' or 'log', got {domain!r}")
    if domain == "scaling" and C.dim() != 2:
        raise ValueError("the scaling domain needs one cost matrix C [L_s, L_t] shared by the batch")
    if C.dim() == 2 and domain != "log":
        if kernel is None:
            kernel = GibbsKernel.of(C, lam)  # checks C
        elif not kernel.matches(C, lam):
            raise ValueError("kernel was built for another cost matrix or lam than the C and lam given")
        if domain == "auto":
            domain = "scaling" if kernel.safe else "log"
    elif kernel is None:
        check_finite(C, "C")
    if len(a) == 0:  # an empty batch: nothing to scale
        a, b = host_view(a), host_view(b)
        return Scalings(a, b, 0, 0.0, domain, ops(a).rowsum(a))
    if domain == "scaling":
        result = _sinkhorn_scaling(a, b, kernel, tol, max_iter, check_every, extrapolate)
        if result is not None:
            return result
    return _sinkhorn_log(a, b, C, lam, tol, max_iter, check_every, extrapolate)


class _Extrapolation:
    """Keeps ``log v`` of the last three iterations of each check period and extrapolates it at the check.

    Stops for good once a check finds a larger error than the one before: the
    extrapolation is a help near the fixed point, never a requirement.
    """

    def __init__(self, enabled, check_every):
        self.enabled = enabled and check_every >= 3
        self.first_kept = check_every - 2  # the phases n_iter % check_every kept: check_every - 2, - 1 and 0
        self.history = []
        self.last_error = math.inf

    def keeps(self, phase):
        """Whether the iterate of phase ``n_iter % check_every`` is one of the three kept."""
        return self.enabled and (phase == 0 or phase >= self.first_kept)

    def keep(self, log_v):
        self.history.append(log_v)

    def at_check(self, error):
        """The extrapolated ``log v`` [B, L_t], or None."""
        history, self.history = self.history, []
        if error > self.last_error:
            self.enabled = False
        self.last_error = error
        if not self.enabled or len(history) != 3:
            return None
        return aitken(*history)


def _warn_not_converged(max_iter, error, tol):
    warnings.warn(
        f"Sinkhorn did not converge in {max_iter} iterations: marginal error {error:.3e} > tol {tol:.1e}",
        RuntimeWarning,
        stacklevel=4,
    )


def _sinkhorn_scaling(a, b, kernel, tol, max_iter, check_every, extrapolate):
    """Algorithm 1 on the whole batch with preallocated buffers; None if it over/underflowed.

    On the CPU the loop runs in NumPy on the tensors' memory: for these small
    products (B x 87 by 87 x 13) torch's per-call dispatch costs more than the
    arithmetic, and ``np.dot`` into a preallocated ``out`` is the cheapest
    product NumPy has (``np.matmul`` costs a third more per call at these
    sizes).  ``np.dot`` / ``np.divide`` and ``torch.matmul`` / ``torch.divide``
    share their signatures, so one loop serves both.
    """
    B, L_s = a.shape
    L_t = b.shape[1]
    K, K_T = kernel.K, kernel.K_T
    a, b = host_view(a), host_view(b)
    o = ops(K)
    if o is NUMPY:
        if a.dtype != K.dtype or b.dtype != K.dtype:
            a, b = a.astype(K.dtype), b.astype(K.dtype)
        u = np.empty((B, L_s), K.dtype)
        u.fill(1.0 / L_s)  # np.full runs this through a Python wrapper
        v, Ktu, Kv = np.empty((B, L_t), K.dtype), np.empty((B, L_t), K.dtype), np.empty((B, L_s), K.dtype)
    else:
        u = torch.full((B, L_s), 1.0 / L_s, dtype=K.dtype, device=K.device)
        v, Ktu, Kv = (torch.empty(shape, dtype=K.dtype, device=K.device) for shape in ((B, L_t), (B, L_t), (B, L_s)))
    tiny = kernel.tiny
    extrapolation = _Extrapolation(extrapolate, check_every)
    error = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        o.dot(u, K, out=Ktu)  # (K^T u_b)^T for every row b
        o.divide(b, Ktu, out=v)  # line 3
        phase = n_iter % check_every
        if extrapolation.keeps(phase):
            extrapolation.keep(o.log(o.floor(v, tiny)))
        o.dot(v, K_T, out=Kv)
        if phase == 0:
            # row marginal of diag(u) K diag(v) before the u update; columns are exact
            error = float(o.max(o.rowsum(o.abs(u * Kv - a))))
            if not math.isfinite(error):
                return None
            if error < tol:
                o.divide(a, Kv, out=u)
                break
            log_v = extrapolation.at_check(error)
            if log_v is not None:
                o.exp(log_v, out=v)
                o.dot(v, K_T, out=Kv)
        o.divide(a, Kv, out=u)  # line 4
    else:
        _warn_not_converged(max_iter, error, tol)
    # the scalings are bounded (GibbsKernel.safe), so a sum is infinite only if an entry is; an
    # underflow of K v or K^T u shows as an infinite (mass / 0) or NaN (0 / 0) entry of u or v
    if not (math.isfinite(float(o.sum(u))) and math.isfinite(float(o.sum(v)))):
        return None
    cost = o.rowsum(o.dot(u, kernel.KC) * v)  # line 6: u^T (K o C) v, without forming the plan
    log_u, log_v = o.log(o.floor(u, tiny)), o.log(o.floor(v, tiny))
    return Scalings(log_u, log_v, n_iter, error, "scaling", cost)


#: a final marginal error above which the OT loss raises instead of warning: over 0.1% of the mass misplaced, the value
#: is no longer the regularised OT of its arguments (a solver, :func:`sinkhorn`, still returns its result with a warning)
GROSS_ERROR = 1e-3
#: lam times the cost range above which the log domain anneals (epsilon-scaling): a blur under 1% of the range
ANNEAL_ABOVE = 100.0
#: the factor between the lam of successive annealing stages
ANNEAL_FACTOR = 4.0
#: the marginal error an intermediate annealing stage stops at
STAGE_TOL = 1e-3


def _sinkhorn_log(a, b, C, lam, tol, max_iter, check_every, extrapolate):
    """The same iterations on ``f = log u``, ``g = log v`` with log-sum-exp, annealed in ``lam`` when the blur is small.

    With a blur ``1/lam`` under 1% of the cost range, Sinkhorn started from
    uniform scalings needs far more iterations than ``max_iter`` (at
    ``lam = 1e4`` on C in [0, 1] it stopped 0.13 off the marginals).  Then
    ``lam`` is raised from ``ANNEAL_ABOVE / range`` by ``ANNEAL_FACTOR`` a
    stage to its target (epsilon-scaling, Schmitzer 2019), each stage started
    from the last one's potentials ``f / lam`` scaled to the new ``lam``; the
    intermediate stages stop at a loose tolerance (``STAGE_TOL``) within a
    bounded share of ``max_iter``, and the last one, at the target ``lam``,
    has the rest: the result is always that stage's.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    spread = float((C.amax(dim=(-2, -1)) - C.amin(dim=(-2, -1))).max())
    stages = [lam]
    while stages[0] * spread > ANNEAL_ABOVE and stages[0] / ANNEAL_FACTOR * spread >= ANNEAL_ABOVE / ANNEAL_FACTOR:
        stages.insert(0, stages[0] / ANNEAL_FACTOR)
    f, used = None, 0
    for k, stage in enumerate(stages[:-1]):  # rough potentials only: a loose tolerance and a bounded share of the budget
        if f is not None:
            f = f * (stage / stages[k - 1])
        rough = _sinkhorn_log_stage(a, b, C, stage, max(tol, STAGE_TOL), max_iter // (2 * len(stages)), check_every, extrapolate,
                                    f, warn=False)
        f, used = rough.log_u, used + rough.n_iter
    if f is not None:
        f = f * (lam / stages[-2])
    result = _sinkhorn_log_stage(a, b, C, lam, tol, max_iter - used, check_every, extrapolate, f)
    return replace(result, n_iter=used + result.n_iter)


def _sinkhorn_log_stage(a, b, C, lam, tol, max_iter, check_every, extrapolate, f=None, warn=True):
    """Log-domain iterations at one ``lam``, from ``f`` (or uniform scalings)."""
    tiny = torch.finfo(C.dtype).tiny
    log_a = a.clamp_min(tiny).log()
    log_b = b.clamp_min(tiny).log()
    C_min = C.amin(dim=(-2, -1), keepdim=True)
    M = lam * (C - C_min) + 1.0  # K = exp(-M)
    f = torch.full_like(log_a, -math.log(a.shape[1])) if f is None else f
    extrapolation = _Extrapolation(extrapolate, check_every)
    error = math.inf
    n_iter = 0
    g = None
    for n_iter in range(1, max(max_iter, 1) + 1):
        g = log_b - torch.logsumexp(f.unsqueeze(2) - M, dim=1)  # line 3
        phase = n_iter % check_every
        if extrapolation.keeps(phase):
            extrapolation.keep(g.clamp_min(math.log(tiny)))
        log_Kv = torch.logsumexp(g.unsqueeze(1) - M, dim=2)
        if phase == 0:
            error = ((f + log_Kv).exp() - a).abs().sum(dim=1).max().item()
            if error < tol:
                f = log_a - log_Kv
                break
            extrapolated = extrapolation.at_check(error)
            if extrapolated is not None:
                g = extrapolated
                log_Kv = torch.logsumexp(g.unsqueeze(1) - M, dim=2)
        f = log_a - log_Kv  # line 4
    else:
        if warn:
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
