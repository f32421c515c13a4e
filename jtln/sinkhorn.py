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

Tensors in, tensors out, in one code path.  The one place NumPy enters is the
scaling-domain loop on the CPU (:func:`_scaling_loop`): it runs a few
hundred operations on [B, L] arrays per training step (B = 32, L <= 100),
where the cost is per call, not per element, and a NumPy call on views of the
tensors' memory costs about a third of a torch call.  The loop's code is
written once against a namespace of operations (:data:`NUMPY_OPS`,
:data:`TORCH_OPS`); which one it runs on is a property of the
:class:`GibbsKernel` (``loop``), so a test forces the torch loop, the one a
GPU runs, on any machine.
"""

import contextlib
import math
import warnings
from dataclasses import dataclass, replace
from functools import cached_property, partial
from types import SimpleNamespace

import numpy as np
import torch

from jtln._checks import check_finite, check_iterations


def default_tol(dtype):
    """Marginal-error tolerance reachable in ``dtype``."""
    return {torch.float64: 1e-9, torch.float32: 1e-6}.get(dtype, 1e-3)


@dataclass
class Scalings:
    r"""Result of a batched matrix scaling.

    ``log_u`` [B, L_s] and ``log_v`` [B, L_t] are the logarithms of the
    scalings of :math:`e^{-\lambda (C - \min C) - 1}`; ``n_iter`` the
    iterations run; ``marginal_error`` the last measured error; ``domain``
    "scaling" or "log"; ``cost`` line 6 of Algorithm 1,
    :math:`\langle \gamma_0, C\rangle_F` per row [B], where the solver had it
    at hand (the scaling domain), else None (:func:`transport_cost` forms it).
    """

    log_u: torch.Tensor
    log_v: torch.Tensor
    n_iter: int
    marginal_error: float
    domain: str
    cost: torch.Tensor = None


#: the operations the scaling-domain loop needs, on NumPy arrays (the CPU loop) ...
NUMPY_OPS = SimpleNamespace(
    dot=np.dot,  # 2-D product; with ``out=`` the cheapest NumPy has at these sizes (np.matmul costs a third more)
    divide=np.divide,
    exp=np.exp,
    log=np.log,
    abs=np.abs,
    floor=np.maximum,  # floor(x, low): elementwise max(x, low)
    rowsum=partial(np.add.reduce, axis=-1),  # over the last axis; unlike ndarray.sum, the ufunc's reduce has no Python wrapper
    rowmax=partial(np.maximum.reduce, axis=-1),
    max=partial(np.maximum.reduce, axis=None),
    empty=lambda shape, like: np.empty(shape, like.dtype),
    fill=np.ndarray.fill,  # in place; np.full runs through a Python wrapper
    quiet=partial(np.errstate, all="ignore"),  # no floating-point warnings (torch gives none)
)
#: ... and on tensors (the loop on every other device, or wherever a kernel asks for it)
TORCH_OPS = SimpleNamespace(
    dot=torch.matmul,
    divide=torch.divide,
    exp=torch.exp,
    log=torch.log,
    abs=torch.abs,
    floor=torch.clamp_min,
    rowsum=partial(torch.sum, dim=-1),
    rowmax=partial(torch.amax, dim=-1),
    max=torch.amax,
    empty=lambda shape, like: torch.empty(shape, dtype=like.dtype, device=like.device),
    fill=torch.Tensor.fill_,
    quiet=contextlib.nullcontext,
)
#: what :class:`GibbsKernel` ``loop`` names
LOOPS = {"numpy": NUMPY_OPS, "torch": TORCH_OPS}


@dataclass(frozen=True)
class GibbsKernel:
    r"""What the scaling-domain loop needs of one cost matrix ``C`` [L_s, L_t] and ``lam``.

    :math:`K = e^{-\lambda (C - \min C) - 1}`, its transpose (contiguous) and
    :math:`K \odot C` for line 6, as tensors.  ``safe``: whether the scaling
    domain stays in range.  The scalings span about
    ``exp(lam * (max C - min C))``; a quarter of the dtype's exponent range
    leaves room for the products ``u_i K_ij v_j``.  ``tiny``: the dtype's
    smallest normal number, the floor of the scalings before their logarithm.
    ``loop``: "numpy" (the default for float32 and float64 on the CPU) runs
    the loop on NumPy views of the tensors' memory, "torch" on the tensors
    (any device).  :func:`sinkhorn` builds one per call; :class:`jtln.ot.OTLoss`
    keeps the one of its constant ``C``, so a training step skips the checks
    and exponentials of ``C``.
    """

    lam: float
    shape: tuple
    dtype: torch.dtype
    device: torch.device
    K: torch.Tensor
    K_T: torch.Tensor
    KC: torch.Tensor
    safe: bool
    tiny: float
    loop: str

    @cached_property
    def operands(self):
        """``K``, ``K_T`` and ``KC`` as the loop works on them: NumPy views of their memory for the "numpy" loop."""
        matrices = (self.K, self.K_T, self.KC)
        return matrices if self.loop == "torch" else tuple(m.numpy() for m in matrices)

    @classmethod
    def of(cls, C, lam, loop=None):
        """Validate ``C`` (finite, 2-D) and build its kernel; ``loop`` as in the class docstring (None: the default)."""
        check_finite(C, "C")
        if C.dim() != 2:
            raise ValueError(f"C must have shape [L_s, L_t], got {tuple(C.shape)}")
        on_host = C.device.type == "cpu" and C.dtype in (torch.float32, torch.float64)
        loop = ("numpy" if on_host else "torch") if loop is None else loop
        if loop not in LOOPS or (loop == "numpy" and not on_host):
            raise ValueError(f"loop must be 'torch', or 'numpy' for float32/float64 C on the CPU, got {loop!r} for "
                             f"{C.dtype} C on {C.device}")
        C = C.detach()
        lowest = C.min()
        K = torch.exp(-lam * (C - lowest) - 1.0)
        K_T, KC = K.T.contiguous(), K * C
        finfo = torch.finfo(C.dtype)
        safe = lam * (C.max() - lowest).item() < math.log(finfo.max) / 4
        return cls(lam, tuple(C.shape), C.dtype, C.device, K, K_T, KC, safe, finfo.tiny, loop)

    def matches(self, C, lam):
        return self.lam == lam and self.shape == tuple(C.shape) and self.dtype == C.dtype and self.device == C.device


_TINY = 1e-30  # a denominator floor, above float32's smallest normal number
#: the largest change of an entry of ``log v`` in a row's last step that :func:`aitken` still extrapolates
EXTRAPOLATE_BELOW = 1.0


def aitken(history, ops=TORCH_OPS):
    r"""Vector Aitken extrapolation of three consecutive iterates ``history`` [3, B, L], row by row.

    Near its fixed point Sinkhorn's map is linear in ``log v`` with real
    eigenvalues in [0, 1) (squared singular values of the normalised plan),
    so the differences :math:`d_k = x_k - x_{k-1}` shrink by the largest one,
    :math:`\rho`, per iteration.  With :math:`\rho` estimated as
    :math:`\langle d_1, d_2\rangle / \lVert d_1\rVert^2` the limit is about
    :math:`x_2 + \frac{\rho}{1-\rho} d_2`.  Rows whose estimate is not in
    [0, 0.99), or whose last step moved an entry of ``log v`` by 1 or more
    (:data:`EXTRAPOLATE_BELOW`: still far from the fixed point, where the
    linear model fails and a jump of up to 99 steps can overflow ``v``), are
    left as they are.  (A constant added to ``log v`` is the
    gauge of the scalings, an eigenvalue 1 of the map; the differences of a
    converging sequence have no part along it, so they are not centred.)
    ``ops``: the namespace of the arrays' kind (:data:`TORCH_OPS`, :data:`NUMPY_OPS`).
    """
    d = history[1:] - history[:-1]  # d_1, d_2
    den, num = ops.rowsum(d[0] * d)  # <d_1, d_1>, <d_1, d_2>
    factor = num / ops.floor(den - num, _TINY)  # rho / (1 - rho)
    # rho in [0, 0.99) (rho >= 1 meets the floor), and near: the kernels the loop has already run, plus one comparison
    keep = (ops.abs(factor - 49.5) < 49.5) * (ops.rowmax(ops.abs(d[1])) < EXTRAPOLATE_BELOW)
    factor = factor * keep
    return history[2] + factor[:, None] * d[1]


def sinkhorn(a, b, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto", extrapolate=True, kernel=None):
    """Scale ``exp(-lam C - 1)`` to marginals ``a`` [B, L_s] and ``b`` [B, L_t]; returns :class:`Scalings` (tensors).

    ``C`` is [L_s, L_t] (shared by the batch) or, in the log domain only,
    [B, L_s, L_t].  ``domain`` is "auto" (scaling domain unless the exponent
    range makes it unsafe, see :class:`GibbsKernel`), "scaling" or "log".
    A scaling-domain run that still over- or underflows is redone in the log
    domain.  Warns with the final marginal error if ``max_iter`` is reached;
    NaN in ``a`` or ``b`` stops it at the first check with a NaN
    ``marginal_error`` (:func:`jtln.ot.ot_loss` then finds and names the bad input).
    ``extrapolate`` applies :func:`aitken` to ``log v`` at each check that has
    not converged (``check_every >= 3``), until a check finds the error grown.
    ``kernel`` is the :class:`GibbsKernel` of ``(C, lam)`` if the caller keeps
    one; it is built here otherwise.  ``C`` is checked to be finite here, once.
    """
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
    a, b = a.detach(), b.detach()
    if len(a) == 0:  # an empty batch: nothing to scale
        return Scalings(a, b, 0, 0.0, domain, a.sum(1))
    if domain == "scaling":
        result = _scaling_loop(a, b, kernel, tol, max_iter, check_every, extrapolate)
        if result is not None:
            return result
    return _sinkhorn_log(a, b, C.detach(), lam, tol, max_iter, check_every, extrapolate)


class _Extrapolation:
    """Keeps ``v`` of the last three iterations of each check period and extrapolates ``log v`` at the check.

    ``to_log`` maps the kept iterates to ``log v``, floored: the scaling
    domain keeps ``v``, the log domain ``log v`` itself.

    ``slots[phase]`` is the buffer the loop writes ``v`` into at iteration
    phase ``n_iter % check_every``: one of the three rows of ``history``
    [3, B, L_t] for the last three phases of a period (check_every - 2,
    check_every - 1 and 0), the loop's own ``v`` otherwise, so that keeping an
    iterate costs no operation.  Stops for good once a check finds a larger
    error than the one before: the extrapolation is a help near the fixed
    point, never a requirement.
    """

    def __init__(self, enabled, check_every, v, to_log, ops=TORCH_OPS):
        self.enabled = enabled and check_every >= 3
        self.ops, self.to_log = ops, to_log
        self.last_error = math.inf
        self.slots = [v] * check_every
        self.v = v
        if self.enabled:
            self.history = ops.empty((3, *v.shape), v)
            self.slots[check_every - 2], self.slots[check_every - 1], self.slots[0] = self.history

    def at_check(self, error):
        """The extrapolated ``log v`` [B, L_t], or None (from the first grown error on, always None)."""
        if error > self.last_error:
            self.enabled = False
            self.slots = [self.v] * len(self.slots)
        self.last_error = error
        if not self.enabled:
            return None
        return aitken(self.to_log(self.history), self.ops)


def _warn_not_converged(max_iter, error, tol):
    warnings.warn(
        f"Sinkhorn did not converge in {max_iter} iterations: marginal error {error:.3e} > tol {tol:.1e}",
        RuntimeWarning,
        stacklevel=4,
    )


def _scaling_loop(a, b, kernel, tol, max_iter, check_every, extrapolate):
    """Algorithm 1 on the whole batch in the scaling domain, as ``kernel.loop`` says: tensors in, tensors out.

    The kernel of the OT core's speed on the CPU: there the loop runs on NumPy
    views of ``a``, ``b`` and the kernel's matrices (no copy), and its results
    come back as tensors sharing the arrays' memory.  Returns
    :class:`Scalings`, or None if the loop over- or underflowed.
    """
    ops = LOOPS[kernel.loop]
    if a.dtype != kernel.dtype or b.dtype != kernel.dtype:
        a, b = a.to(kernel.dtype), b.to(kernel.dtype)
    if ops is NUMPY_OPS:
        a, b = a.numpy(), b.numpy()
    with ops.quiet():  # an over- or underflow is the loop's to report (None: redone in the log domain), not NumPy's
        result = _scaling_iterations(ops, a, b, *kernel.operands, kernel.tiny, tol, max_iter, check_every, extrapolate)
    if result is None:
        return None
    log_u, log_v, cost, n_iter, error = result
    if ops is NUMPY_OPS:
        log_u, log_v, cost = torch.from_numpy(log_u), torch.from_numpy(log_v), torch.from_numpy(cost)
    return Scalings(log_u, log_v, n_iter, error, "scaling", cost)


def _scaling_iterations(ops, a, b, K, K_T, KC, tiny, tol, max_iter, check_every, extrapolate):
    """The loop of :func:`_scaling_loop` with preallocated buffers, written once for both ``ops`` namespaces.

    ``np.dot`` / ``np.divide`` and ``torch.matmul`` / ``torch.divide`` share
    their signatures (``out=`` included), so one loop serves both.  Returns
    ``(log_u, log_v, cost, n_iter, error)``, or None if it over/underflowed.
    """
    B, L_s = a.shape
    L_t = b.shape[1]
    dot, divide = ops.dot, ops.divide
    u, Ktu, Kv = ops.empty((B, L_s), K), ops.empty((B, L_t), K), ops.empty((B, L_s), K)
    ops.fill(u, 1.0 / L_s)
    extrapolation = _Extrapolation(extrapolate, check_every, ops.empty((B, L_t), K), lambda v: ops.log(ops.floor(v, tiny)), ops)
    error = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        dot(u, K, out=Ktu)  # (K^T u_b)^T for every row b
        phase = n_iter % check_every
        v = extrapolation.slots[phase]
        divide(b, Ktu, out=v)  # line 3
        dot(v, K_T, out=Kv)
        if phase == 0:
            # row marginal of diag(u) K diag(v) before the u update; columns are exact
            error = float(ops.max(ops.rowsum(ops.abs(u * Kv - a))))
            if not math.isfinite(error):
                return None
            if error < tol:
                divide(a, Kv, out=u)
                break
            log_v = extrapolation.at_check(error)
            if log_v is not None:
                ops.exp(log_v, out=v)
                dot(v, K_T, out=Kv)
        divide(a, Kv, out=u)  # line 4
    else:
        _warn_not_converged(max_iter, error, tol)
    # the scalings are bounded (GibbsKernel.safe), so a sum is infinite only if an entry is; an
    # underflow of K v or K^T u shows as an infinite (mass / 0) or NaN (0 / 0) entry of u or v.
    # (The same reductions as the error's: at these sizes a kernel's first call in a step costs more than the arithmetic.)
    if not (math.isfinite(float(ops.max(ops.rowsum(u)))) and math.isfinite(float(ops.max(ops.rowsum(v))))):
        return None
    cost = ops.rowsum(dot(u, KC) * v)  # line 6: u^T (K o C) v, without forming the plan
    return ops.log(ops.floor(u, tiny)), ops.log(ops.floor(v, tiny)), cost, n_iter, error


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
    extrapolation = _Extrapolation(extrapolate, check_every, torch.empty_like(log_b), partial(torch.clamp_min, min=math.log(tiny)))
    error = math.inf
    n_iter = 0
    g = None
    for n_iter in range(1, max(max_iter, 1) + 1):
        phase = n_iter % check_every
        g = torch.sub(log_b, torch.logsumexp(f.unsqueeze(2) - M, dim=1), out=extrapolation.slots[phase])  # line 3
        log_Kv = torch.logsumexp(g.unsqueeze(1) - M, dim=2)
        if phase == 0:
            error = ((f + log_Kv).exp() - a).abs().sum(dim=1).max().item()
            if math.isnan(error):  # NaN in a or b (the log domain has no other source): it never recovers
                break
            if error < tol:
                f = log_a - log_Kv
                break
            extrapolated = extrapolation.at_check(error)
            if extrapolated is not None:
                g.copy_(extrapolated)
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
