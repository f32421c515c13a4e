r"""The Optimal Transport loss of Definition 1, by Algorithm 1, with Eq. 11 as its gradient.

.. math:: \ell_{ot}(h_s(x), h_t(x)) = \langle \mathrm{diag}(u) K \mathrm{diag}(v), C\rangle_F,
          \qquad K = e^{-\lambda C - 1}

computed for a whole batch at once (``K`` is shared), and differentiated by
Eq. 11 through a custom autograd Function: no unrolled iteration is kept in
memory.  Eq. 11 is the gradient of the entropy-regularised optimum
:math:`\langle\gamma_0, C\rangle + \frac1\lambda\sum\gamma_0\log\gamma_0`
(see :func:`reference.algorithm1.ot_loss_grad`), as in Frogner et al. [5].

``C`` is a constant in the paper (Sec. 3.4 computes it beforehand).  A ``C``
that requires grad gets the gradient of the same regularised optimum: by the
envelope theorem it is the optimal plan :math:`\gamma_0` (summed over the
batch with the loss's weights), which is what POT's
``ot.solve(..., grad="envelope")`` returns for its cost matrix
(:func:`reference.algorithm1.ot_loss_grad_C`).  Like Eq. 11 it is not the
derivative of the returned line-6 cost :math:`\langle\gamma_0, C\rangle` alone,
which would add the plan's own change with ``C``; the two agree as ``lam``
grows.  The plans are formed only when ``C`` requires grad.

float16 and bfloat16 inputs are checked in their own dtype, solved in float32
(their range cannot hold the scalings) and the loss and its gradients
returned in the input dtype.
"""

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from jtln._checks import check_finite, check_histograms, check_lam
from jtln._host import host_view, ops, to_tensor
from jtln.sinkhorn import GROSS_ERROR, GibbsKernel, _sinkhorn, potentials, sinkhorn, transport_cost, transport_plan

#: dtypes too narrow for Sinkhorn's scalings: the OT loss is computed in float32 and returned in the input dtype
LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype):
    """The dtype the OT loss computes in: float32 for float16 and bfloat16 inputs, else the input's own."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def _check_pair(x_s, x_t, C, names):
    """What histograms and logits share: batch sizes, C [L_s, L_t], one dtype.

    ``C``'s values are checked where Sinkhorn meets them (:func:`jtln.sinkhorn.sinkhorn`,
    or once per kernel that :class:`OTLoss` keeps).
    """
    if not torch.is_tensor(C):
        check_finite(C, "C")  # raises the precise error
    if x_s.shape[0] != x_t.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same batch size, got {x_s.shape[0]} and {x_t.shape[0]}")
    expected = (x_s.shape[1], x_t.shape[1])
    if tuple(C.shape) != expected:
        raise ValueError(f"C must have shape [L_s, L_t] = {list(expected)}, got {list(C.shape)}")
    if x_s.dtype != C.dtype or x_t.dtype != C.dtype:
        raise ValueError(f"{names[0]}, {names[1]} and C must share a dtype, got {x_s.dtype}, {x_t.dtype}, {C.dtype}")


def _histograms(h_s, h_t, C, lam):
    """Validated marginals ``a``, ``b`` (host views, see :func:`jtln._host.host_view`) and ``lam``.

    The histograms are checked in their own dtype, then renormalised to sum
    exactly 1 in the dtype the loss computes in (:func:`compute_dtype`):
    Algorithm 1 has no fixed point for unequal masses.
    """
    sums_s, sums_t = check_histograms(h_s, "h_s"), check_histograms(h_t, "h_t")
    _check_pair(h_s, h_t, C, ("h_s", "h_t"))
    work = compute_dtype(h_s.dtype)
    if work != h_s.dtype:
        a, b = host_view(h_s.to(work)), host_view(h_t.to(work))
        sums_s, sums_t = ops(a).rowsum(a), ops(b).rowsum(b)
    else:
        a, b = host_view(h_s), host_view(h_t)
    return a / sums_s[:, None], b / sums_t[:, None], check_lam(lam)


def solve(h_s, h_t, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto", extrapolate=True, kernel=None):
    """Validate and run Algorithm 1 on a batch; returns :class:`jtln.sinkhorn.Scalings`."""
    a, b, lam = _histograms(h_s, h_t, C, lam)
    return sinkhorn(a, b, C, lam, tol=tol, max_iter=max_iter, check_every=check_every, domain=domain, extrapolate=extrapolate,
                    kernel=kernel)


def _logits(z, name):
    if not torch.is_tensor(z) or z.dim() != 2 or z.shape[1] == 0:
        raise ValueError(f"{name} must be a tensor of logits [B, L] with L >= 1, got {getattr(z, 'shape', type(z).__name__)}")


def _softmax(z, name):
    """``softmax(z)`` row by row on the host view of the logits ``z`` [B, L], checking them on the way.

    Row maxima are NaN or infinite exactly when a row holds a NaN or ``+inf``
    or is all ``-inf``; only then is the precise error looked for.  A single
    ``-inf`` is a masked class and gets zero mass.
    """
    x = host_view(z)
    o = ops(x)
    row_max = o.rowmax(x)
    if len(x) and not math.isfinite(float(o.sum(row_max))):
        check_finite(z, name)  # raises, unless finite logits only overflowed the sum
    e = o.exp(x - row_max[:, None])
    return e / o.rowsum(e)[:, None]


def _softmax_backward(h, grad_h):
    r"""Chain rule through :math:`h = \mathrm{softmax}(z)`: :math:`\partial/\partial z_k = h_k (g_k - \langle h, g\rangle)`.

    A constant added to a row of ``grad_h`` drops out, since the row of ``h`` sums to 1.
    """
    return h * (grad_h - ops(h).rowsum(h * grad_h)[:, None])


def _gradients(scalings, a, b, lam, logits, weight):
    r"""Eq. 11 for every row, times ``weight``, on host views; chained through the softmax for logits.

    With logits the centring of Eq. 11 is skipped: :math:`\log u / \lambda`
    differs from :math:`\alpha` by a constant per row, which the softmax's
    backward removes (:func:`_softmax_backward`).
    """
    log_u, log_v = host_view(scalings.log_u), host_view(scalings.log_v)
    if logits:
        scale = weight / lam
        return _softmax_backward(host_view(a), log_u * scale), _softmax_backward(host_view(b), log_v * scale)
    alpha, beta = potentials(log_u, log_v, lam)
    return (alpha, beta) if weight == 1.0 else (alpha * weight, beta * weight)


def _plans(scalings, C, lam, weight):
    r"""Each row's plan :math:`\gamma_0` times ``weight`` [B, L_s, L_t]: the gradient of its regularised optimum in ``C``."""
    plans = transport_plan(scalings.as_tensors(), C, lam)
    return plans if weight == 1.0 else plans * weight


#: the reductions of the OT loss over the batch
REDUCTIONS = ("none", "mean", "sum")


def _reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


class _OTLossFunction(torch.autograd.Function):
    """Forward: Algorithm 1 and line 6, reduced over the batch.  Backward: Eq. 11, computed in the forward pass.

    The per-row gradients (Eq. 11, chained through the softmax for logits,
    scaled by the reduction's weight) cost a few operations on [B, L] arrays;
    the forward pass has the scalings at hand, so it forms them there (on the
    host view, see :func:`jtln._host.host_view`) and the backward pass only
    scales them by the incoming gradient.  Reducing inside the node spares a
    training step the autograd node of ``.mean()``.
    """

    @staticmethod
    def forward(ctx, x_s, x_t, C, lam, logits, reduction, options):
        work = compute_dtype(x_s.dtype)
        if logits:
            _logits(x_s, "z_s")
            _logits(x_t, "z_t")
            _check_pair(x_s, x_t, C, ("z_s", "z_t"))
            a, b, lam = _softmax(x_s.to(work), "z_s"), _softmax(x_t.to(work), "z_t"), check_lam(lam)
        else:
            a, b, lam = _histograms(x_s, x_t, C, lam)  # checked in their own dtype, renormalised in ``work``
        C = C.detach().to(work)
        scalings = _sinkhorn(a, b, C, lam, **options)
        if scalings.marginal_error > GROSS_ERROR:
            raise FloatingPointError(
                f"the OT loss did not converge: after {scalings.n_iter} iterations at lam={lam:g} the plan's marginals are off by "
                f"{scalings.marginal_error:.3g} (over {GROSS_ERROR:g} of the mass), so its value would be wrong; raise max_iter "
                f"(lam = 1e4 on costs in [0, 1] takes ~14,000 iterations) or lower lam")
        losses = host_view(transport_cost(scalings, C, lam))  # line 6
        weight = 1.0
        if reduction == "mean":
            weight = 1.0 / len(losses) if len(losses) else math.nan  # an empty mean is NaN, as in torch
        # host views, not inputs or outputs: kept on ctx rather than by save_for_backward
        ctx.gradients = _gradients(scalings, a, b, lam, logits, weight)
        ctx.plans = _plans(scalings, C, lam, weight) if ctx.needs_input_grad[2] else None
        ctx.per_sample = reduction == "none"
        ctx.dtype = x_s.dtype
        return to_tensor(losses if ctx.per_sample else ops(losses).sum(losses) * weight).to(x_s.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        alpha, beta = (to_tensor(g) for g in ctx.gradients)
        g = grad_loss.to(alpha.dtype)
        grad_C = None
        if ctx.plans is not None:  # sum_b g_b w gamma_b (w folded into the plans); a reduced loss has one g for every row
            grad_C = (torch.tensordot(g, ctx.plans, dims=1) if ctx.per_sample else g * ctx.plans.sum(0)).to(ctx.dtype)
        g = g.unsqueeze(1) if ctx.per_sample else g
        return (g * alpha).to(ctx.dtype), (g * beta).to(ctx.dtype), grad_C, None, None, None, None


def ot_loss(h_s, h_t, C, lam, *, reduction="none", tol=None, max_iter=10_000, check_every=10, domain="auto",
            extrapolate=True, kernel=None):
    r"""Approximate OT loss of each row (Definition 1, Algorithm 1), or their mean or sum, differentiable by Eq. 11.

    Parameters
    ----------
    h_s : Tensor [B, L_s]
        Source-head softmax outputs (rows are histograms).
    h_t : Tensor [B, L_t]
        Target-head softmax outputs.
    C : Tensor [L_s, L_t]
        Cost matrix (same dtype and device as ``h_s``); if it requires grad it gets
        the envelope gradient, the plans (see the module docstring).
    lam : float
        :math:`\lambda > 0` of Algorithm 1.
    reduction : {"none", "mean", "sum"}
        Per-row losses, or their mean (Eq. 3) or sum, reduced inside the
        autograd node.
    tol : float, optional
        Marginal-error tolerance; default 1e-9 in float64, 1e-6 in float32.
    max_iter, check_every : int
        Iteration cap and how often convergence is checked.  Reaching the cap
        warns with the final marginal error; a final error over
        :data:`jtln.sinkhorn.GROSS_ERROR` raises FloatingPointError instead
        (the value would be wrong).  Large ``lam`` is annealed in the log
        domain (:func:`jtln.sinkhorn.sinkhorn`).
    domain : {"auto", "scaling", "log"}
        "auto" iterates on ``u, v`` unless ``exp(-lam C - 1)`` would leave the
        dtype's range, then on ``log u, log v`` (slower, always finite).
    extrapolate : bool
        Aitken extrapolation at each check (:func:`jtln.sinkhorn.aitken`):
        fewer iterations, same fixed point and convergence test.
    kernel : jtln.sinkhorn.GibbsKernel, optional
        ``GibbsKernel.of(C, lam)`` kept by a caller that reuses ``C`` (as
        :class:`OTLoss` does); built per call otherwise.

    Returns
    -------
    Tensor [B], or a scalar if reduced
        :math:`\ell_{ot}(h_s(x_b), h_t(x_b))` for each row.

    Examples
    --------
    >>> h_s = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    >>> h_t = torch.tensor([[1.0]], dtype=torch.float64)
    >>> C = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    >>> ot_loss(h_s, h_t, C, lam=10.0)
    tensor([0.5000], dtype=torch.float64)
    """
    options = dict(tol=tol, max_iter=max_iter, check_every=check_every, domain=domain, extrapolate=extrapolate, kernel=kernel)
    return _OTLossFunction.apply(h_s, h_t, C, lam, False, _reduction(reduction), options)


def ot_loss_with_logits(z_s, z_t, C, lam, *, reduction="none", tol=None, max_iter=10_000, check_every=10, domain="auto",
                        extrapolate=True, kernel=None):
    r"""``ot_loss(softmax(z_s), softmax(z_t), C, lam)`` as one autograd node, from the heads' logits.

    What the JTLN methods call: the histogram checks reduce to finite logits
    (a softmax is a histogram), and the softmax's backward pass is folded into
    Eq. 11, which saves four autograd nodes per training step.  Same options
    as :func:`ot_loss`; ``z_s`` [B, L_s] and ``z_t`` [B, L_t] are logits.
    """
    options = dict(tol=tol, max_iter=max_iter, check_every=check_every, domain=domain, extrapolate=extrapolate, kernel=kernel)
    return _OTLossFunction.apply(z_s, z_t, C, lam, True, _reduction(reduction), options)


class OTLoss(nn.Module):
    """Eq. 3 as a module: the OT loss between two heads' predictions, reduced over the batch.

    ``OTLoss(C, lam)(h_s, h_t)`` with ``reduction`` "mean" (Eq. 3), "sum" or
    "none"; with ``logits=True`` it takes the heads' logits instead
    (:func:`ot_loss_with_logits`).  A constant ``C`` is copied into a
    buffer; an ``nn.Parameter`` is kept as this module's parameter (the same
    object, so an optimiser holding it updates the cost), and gets the
    envelope gradient.  Either way ``.to(device)`` moves it.  Other keywords
    go to :func:`ot_loss`.
    """

    def __init__(self, C, lam, reduction="mean", logits=False, **options):
        super().__init__()
        self.reduction = _reduction(reduction)
        if isinstance(C, nn.Parameter):
            self.C = C
        else:
            self.register_buffer("C", torch.as_tensor(C).detach().clone())
        self.lam = check_lam(lam)
        self.logits = bool(logits)
        self.options = options
        self._kernel, self._kernel_key = None, None

    def kernel(self, dtype):
        """The :class:`GibbsKernel` of ``C`` in ``dtype``, rebuilt when ``C`` is replaced, moved or changed in place."""
        key = (self.C.data_ptr(), self.C._version, self.C.device, dtype)
        if key != self._kernel_key:
            self._kernel, self._kernel_key = GibbsKernel.of(self.C.detach().to(dtype), self.lam), key
        return self._kernel

    def forward(self, x_s, x_t):
        C = self.C.to(x_s.dtype)
        loss = ot_loss_with_logits if self.logits else ot_loss
        return loss(x_s, x_t, C, self.lam, reduction=self.reduction, kernel=self.kernel(compute_dtype(x_s.dtype)), **self.options)

    def extra_repr(self):
        return f"L_s={self.C.shape[0]}, L_t={self.C.shape[1]}, lam={self.lam}, reduction={self.reduction!r}, logits={self.logits}"
