r"""Batched matrix scaling (Algorithm 1) in the scaling and the log domain.

Both solvers find, for every row ``b`` of a batch, scalings ``u_b``, ``v_b``
such that :math:`\mathrm{diag}(u_b) K \mathrm{diag}(v_b)` has marginals
``a_b`` and ``b_b``, where :math:`K = e^{-\lambda C - 1}`.

Three choices differ from the literal reference (:mod:`reference.algorithm1`):

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

Tensors in, tensors out.  The scaling-domain loop runs in one of three
places (:data:`LOOPS`), a property of the :class:`GibbsKernel` (``loop``):

* on the CPU, one compiled kernel, :func:`jtln.scaling_kernel.iterate`
  (numba), on NumPy views of the tensors' memory, because at a training
  step's sizes (B = 32, L <= 100) an interpreted loop costs per call, not
  per element;
* on a GPU, one Triton program per batch row,
  :func:`jtln.scaling_triton.iterate`: one launch per call, the convergence
  test on the device, and with ``deferred=True`` no read by the host at all;
* the torch loop (:func:`_scaling_iterations`), on any device: about seven
  launches per iteration and a read at every check; what a GPU runs without
  Triton, or with a cost matrix over :data:`jtln.scaling_triton.MAX_CLASSES`
  classes.

The three do the same iterations; tests force each on any machine (Triton's
under its interpreter) and hold them to the reference and to each other.
"""

import math
import warnings
from dataclasses import dataclass, replace
from functools import cached_property, partial

import torch

from jtln import scaling_kernel, scaling_triton
from jtln._checks import check_finite, check_iterations
from jtln.device import full_precision
from jtln.scaling_kernel import EXTRAPOLATE_BELOW, TINY


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


#: what :class:`GibbsKernel` ``loop`` names: the compiled CPU kernel, the Triton GPU kernel, or torch (any device)
LOOPS = ("numba", "triton", "torch")

#: What the OT core reads from the device (host synchronisations, which keep a GPU idle while they wait), by backend:
#: building a :class:`GibbsKernel` reads C's minimum and maximum once (its finiteness and range together; a kernel that
#: :class:`jtln.ot.OTLoss` keeps is built once per cost matrix, not per step); the Triton loop reads nothing with
#: ``deferred=True`` (its iterations, error and overflow stay on the device) and once otherwise (all three together); the
#: torch loop reads its marginal error at each convergence check and its scalings' finiteness once at the end:
#: ``ceil(n_iter / check_every) + 1`` reads for a call of ``n_iter`` iterations (:func:`torch_loop_reads`); the numba
#: loop works on the host's memory and reads nothing from a device.
READS = {"kernel": 1, "triton": 1, "triton_deferred": 0, "numba": 0}


def torch_loop_reads(n_iter, check_every):
    """The host reads of one call of the torch loop that ran ``n_iter`` iterations (:data:`READS`)."""
    return math.ceil(n_iter / check_every) + 1


@dataclass(frozen=True)
class GibbsKernel:
    r"""What the scaling-domain loop needs of one cost matrix ``C`` [L_s, L_t] and ``lam``.

    :math:`K = e^{-\lambda (C - \min C) - 1}`, its transpose (contiguous) and
    :math:`K \odot C` for line 6, as tensors.  ``safe``: whether the scaling
    domain stays in range.  The scalings span about
    ``exp(lam * (max C - min C))``; a quarter of the dtype's exponent range
    leaves room for the products ``u_i K_ij v_j``.  ``tiny``: the dtype's
    smallest normal number, the floor of the scalings before their logarithm.
    ``loop``: "numba" (the default for float32 and float64 on the CPU) runs
    the compiled kernel :func:`jtln.scaling_kernel.iterate` on NumPy views of
    the tensors' memory; "triton" (the default for float32 C on CUDA where
    Triton is installed and C has at most
    :data:`jtln.scaling_triton.MAX_CLASSES` rows and columns) one Triton
    program per row; "torch" the torch loop (any device).
    :func:`sinkhorn` builds one per call; :class:`jtln.ot.OTLoss` keeps the
    one of its constant ``C``, so a training step skips the checks and
    exponentials of ``C``.
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
        """``K``, ``K_T`` and ``KC`` as the loop works on them: NumPy views of their memory for the "numba" loop."""
        matrices = (self.K, self.K_T, self.KC)
        return tuple(m.numpy() for m in matrices) if self.loop == "numba" else matrices

    @classmethod
    @full_precision()
    def of(cls, C, lam, loop=None):
        """Validate ``C`` (finite, 2-D) and build its kernel; ``loop`` as in the class docstring (None: the default)."""
        if not torch.is_tensor(C) or not C.dtype.is_floating_point:
            check_finite(C, "C")  # raises the precise error
        if C.dim() != 2:
            raise ValueError(f"C must have shape [L_s, L_t], got {tuple(C.shape)}")
        on_host = C.device.type == "cpu" and C.dtype in (torch.float32, torch.float64)
        on_triton = scaling_triton.fits(tuple(C.shape), C.dtype) and scaling_triton.available(C.device)
        if loop is None:  # float64 on a GPU (a run's test-time plan): the torch loop, not a float64 program to compile
            loop = "numba" if on_host else "triton" if on_triton and C.device.type == "cuda" and C.dtype == torch.float32 else "torch"
        if loop not in LOOPS or (loop == "numba" and not on_host) or (loop == "triton" and not on_triton):
            raise ValueError(f"loop must be 'torch', 'numba' for float32/float64 C on the CPU, or 'triton' for float32/float64 C "
                             f"of at most {scaling_triton.MAX_CLASSES} classes on CUDA (on the CPU under TRITON_INTERPRET=1) "
                             f"with Triton installed; got {loop!r} for {C.dtype} C of shape {tuple(C.shape)} on {C.device}")
        C = C.detach()
        lowest, highest = torch.stack([C.min(), C.max()]).tolist()  # one read: NaN and inf show in the extremes
        if not (math.isfinite(lowest) and math.isfinite(highest)):
            check_finite(C, "C")  # raises the precise error
        if lowest < 0:  # Definition 1's costs are non-negative (a shift would change nothing but the reported loss)
            raise ValueError(f"C must hold non-negative costs, got a minimum of {lowest:.3g}; cost matrices are distances "
                             "(jtln.costs.normalize_cost scales one to [0, 1])")
        K = torch.exp(-lam * (C - lowest) - 1.0)
        K_T, KC = K.T.contiguous(), K * C
        finfo = torch.finfo(C.dtype)
        safe = lam * (highest - lowest) < math.log(finfo.max) / 4
        return cls(lam, tuple(C.shape), C.dtype, C.device, K, K_T, KC, safe, finfo.tiny, loop)

    def matches(self, C, lam):
        return self.lam == lam and self.shape == tuple(C.shape) and self.dtype == C.dtype and self.device == C.device


def aitken(history):
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
    """
    d = history[1:] - history[:-1]  # d_1, d_2
    den, num = (d[0] * d).sum(-1)  # <d_1, d_1>, <d_1, d_2>
    factor = num / (den - num).clamp_min(TINY)  # rho / (1 - rho)
    # rho in [0, 0.99) (rho >= 1 meets the floor), and near: the kernels the loop has already run, plus one comparison
    keep = ((factor - 49.5).abs() < 49.5) * (d[1].abs().amax(-1) < EXTRAPOLATE_BELOW)
    factor = factor * keep
    return history[2] + factor[:, None] * d[1]


@full_precision()
def sinkhorn(a, b, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto", extrapolate=True, kernel=None,
             deferred=False):
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
    ``deferred`` (the Triton loop only): read nothing; ``n_iter`` and
    ``marginal_error`` are then 0-d tensors on the device, the error NaN where
    a row over- or underflowed (no redo in the log domain, no warning: the
    caller reads them when it reads anyway, as :mod:`jtln.ot` does).
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
        result = _scaling_loop(a, b, kernel, tol, max_iter, check_every, extrapolate, deferred)
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

    def __init__(self, enabled, check_every, v, to_log):
        self.enabled = enabled and check_every >= 3
        self.to_log = to_log
        self.last_error = math.inf
        self.slots = [v] * check_every
        self.v = v
        if self.enabled:
            self.history = torch.empty((3, *v.shape), dtype=v.dtype, device=v.device)
            self.slots[check_every - 2], self.slots[check_every - 1], self.slots[0] = self.history

    def at_check(self, error):
        """The extrapolated ``log v`` [B, L_t], or None (from the first grown error on, always None)."""
        if error > self.last_error:
            self.enabled = False
            self.slots = [self.v] * len(self.slots)
        self.last_error = error
        if not self.enabled:
            return None
        return aitken(self.to_log(self.history))


def _warn_not_converged(max_iter, error, tol, stacklevel=4):
    warnings.warn(
        f"Sinkhorn did not converge in {max_iter} iterations: marginal error {error:.3e} > tol {tol:.1e}",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


def _triton_loop(a, b, kernel, tol, max_iter, check_every, extrapolate, deferred):
    """The Triton loop (:func:`jtln.scaling_triton.iterate`): :class:`Scalings`, or None if a row over- or underflowed.

    The batch's iterations and error are the worst row's, as the other loops
    report them; deferred, as 0-d device tensors (NaN error for an overflow).
    """
    log_u, log_v, cost, n_iter, error, status = scaling_triton.iterate(a, b, kernel.K, kernel.KC, kernel.tiny, tol, max_iter,
                                                                       check_every, extrapolate)
    error = torch.where(status == scaling_triton.OVERFLOW, math.nan, error).amax()
    n_iter = n_iter.amax()
    if deferred:
        return Scalings(log_u, log_v, n_iter, error, "scaling", cost)
    n_iter, error = torch.stack([n_iter.double(), error]).tolist()  # one read for both
    if math.isnan(error):
        return None
    if not error < tol:
        _warn_not_converged(max_iter, error, tol, stacklevel=4)
    return Scalings(log_u, log_v, int(n_iter), error, "scaling", cost)


def _scaling_loop(a, b, kernel, tol, max_iter, check_every, extrapolate, deferred=False):
    """Algorithm 1 on the whole batch in the scaling domain, in the loop ``kernel.loop`` names: tensors in, tensors out.

    The "numba" loop runs :func:`jtln.scaling_kernel.iterate` on NumPy views
    of ``a``, ``b`` and the kernel's matrices (no copy), and its results come
    back as tensors sharing the arrays' memory.  Returns :class:`Scalings`,
    or None if the loop over- or underflowed.
    """
    if a.dtype != kernel.dtype or b.dtype != kernel.dtype:
        a, b = a.to(kernel.dtype), b.to(kernel.dtype)
    if kernel.loop == "triton":
        return _triton_loop(a, b, kernel, tol, max_iter, check_every, extrapolate, deferred)
    K, K_T, KC = kernel.operands
    if kernel.loop == "numba":
        finite, converged, log_u, log_v, cost, n_iter, error = scaling_kernel.iterate(
            a.numpy(), b.numpy(), K, K_T, KC, kernel.tiny, tol, max_iter, check_every, extrapolate)
        log_u, log_v, cost = torch.from_numpy(log_u), torch.from_numpy(log_v), torch.from_numpy(cost)
    else:
        finite, converged, log_u, log_v, cost, n_iter, error = _scaling_iterations(
            a, b, K, K_T, KC, kernel.tiny, tol, max_iter, check_every, extrapolate)
    if not finite:
        return None
    if not converged:
        _warn_not_converged(max_iter, error, tol, stacklevel=3)  # at the line of sinkhorn, as the log domain's warning
    return Scalings(log_u, log_v, n_iter, error, "scaling", cost)


def _scaling_iterations(a, b, K, K_T, KC, tiny, tol, max_iter, check_every, extrapolate):
    """The torch loop of :func:`_scaling_loop`, with preallocated buffers; the iterations of :func:`jtln.scaling_kernel.iterate`.

    Returns ``(finite, converged, log_u, log_v, cost, n_iter, error)`` as the
    kernel does: ``finite`` False if the loop over- or underflowed.
    """
    B, L_s = a.shape
    L_t = b.shape[1]
    u = torch.full((B, L_s), 1.0 / L_s, dtype=K.dtype, device=K.device)
    Ktu, Kv = torch.empty((B, L_t), dtype=K.dtype, device=K.device), torch.empty_like(u)
    extrapolation = _Extrapolation(extrapolate, check_every, torch.empty_like(Ktu), lambda v: v.clamp_min(tiny).log())
    error = math.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        torch.matmul(u, K, out=Ktu)  # (K^T u_b)^T for every row b
        phase = n_iter % check_every
        v = extrapolation.slots[phase]
        torch.divide(b, Ktu, out=v)  # line 3
        torch.matmul(v, K_T, out=Kv)
        if phase == 0:
            # row marginal of diag(u) K diag(v) before the u update; columns are exact
            error = (u * Kv - a).abs().sum(-1).max().item()
            if not math.isfinite(error):
                return False, False, u, v, None, n_iter, error
            if error < tol:
                converged = True
                torch.divide(a, Kv, out=u)
                break
            log_v = extrapolation.at_check(error)
            if log_v is not None:
                torch.exp(log_v, out=v)
                torch.matmul(v, K_T, out=Kv)
        torch.divide(a, Kv, out=u)  # line 4
    # the scalings are bounded (GibbsKernel.safe), so an infinite or NaN entry is an over- or underflow
    # (an underflow of K v or K^T u shows as mass / 0 or 0 / 0 in u or v); one read for both
    if not bool(u.isfinite().all() & v.isfinite().all()):
        return False, converged, u, v, None, n_iter, error
    cost = (torch.matmul(u, KC) * v).sum(-1)  # line 6: u^T (K o C) v, without forming the plan
    return True, converged, u.clamp_min(tiny).log(), v.clamp_min(tiny).log(), cost, n_iter, error


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
                                    f)
        f, used = rough.log_u, used + rough.n_iter
    if f is not None:
        f = f * (lam / stages[-2])
    result = _sinkhorn_log_stage(a, b, C, lam, tol, max_iter - used, check_every, extrapolate, f)
    result = replace(result, n_iter=used + result.n_iter)
    if not result.marginal_error < tol and not math.isnan(result.marginal_error):
        _warn_not_converged(max_iter, result.marginal_error, tol, stacklevel=3)  # the whole budget, every stage's iterations
    return result


def _sinkhorn_log_stage(a, b, C, lam, tol, max_iter, check_every, extrapolate, f=None):
    """Log-domain iterations at one ``lam``, from ``f`` (or uniform scalings); the caller warns (:func:`_sinkhorn_log`)."""
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
    return Scalings(f, g, n_iter, error, "log")


@full_precision()
def transport_plan(scalings, C, lam):
    r""":math:`\gamma_0 = \mathrm{diag}(u) K \mathrm{diag}(v)` for each row, [B, L_s, L_t]."""
    M = lam * (C - C.amin(dim=(-2, -1), keepdim=True)) + 1.0
    return torch.exp(scalings.log_u.unsqueeze(2) + scalings.log_v.unsqueeze(1) - M)


@full_precision()
def transport_cost(scalings, C, lam):
    r"""Line 6 of Algorithm 1, :math:`\langle \gamma_0, C\rangle_F` for each row, [B].

    In the scaling domain this is :math:`u^\top (K \odot C) v` without
    forming the [B, L_s, L_t] plan.
    """
    if scalings.cost is not None:
        return scalings.cost
    return (transport_plan(scalings, C, lam) * C).sum(dim=(-2, -1))
