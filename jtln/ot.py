r"""The Optimal Transport loss of Definition 1, by Algorithm 1, with Eq. 11 as its gradient.

.. math:: \ell_{ot}(h_s(x), h_t(x)) = \langle \mathrm{diag}(u) K \mathrm{diag}(v), C\rangle_F,
          \qquad K = e^{-\lambda C - 1}

computed for a whole batch at once (``K`` is shared), and differentiated by
Eq. 11 through a custom autograd Function: no unrolled iteration is kept in
memory.

**Which value, which gradient.**  Eq. 11 is the gradient of the
entropy-regularised optimum

.. math:: W_\lambda(a, b) = \langle\gamma_0, C\rangle + \frac1\lambda\sum_{ij}\gamma_{0,ij}\log\gamma_{0,ij}

(see :func:`reference.algorithm1.ot_loss_grad`), as in Frogner et al. [5] and
POT's ``ot.solve(..., reg=1/lam)``, whose ``value`` is this optimum and
``value_linear`` the linear part.  The paper's loss (line 6, the default,
``value="linear"``) is :math:`\langle\gamma_0, C\rangle` alone, so its
backward is Eq. 11 but not its exact derivative (the two differ by the
entropy's change, small as ``lam`` grows): training follows the paper, and
``torch.autograd.gradcheck`` fails on it, as it would on POT's linear value.
``value="regularized"`` returns :math:`W_\lambda` itself, with the same
backward, which is then its exact gradient (``gradcheck`` passes on logits
and on ``C``; on histograms along the simplex).  It is computed in its dual
form :math:`(\langle a, \log u\rangle + \langle b, \log v\rangle - \sum_{ij}\gamma_{0,ij})/\lambda`
(plus the shift of ``C``), which is exact to second order in the marginal
error.

``C`` is a constant in the paper (Sec. 3.4 computes it beforehand).  A ``C``
that requires grad gets the gradient of the same regularised optimum: by the
envelope theorem it is the optimal plan :math:`\gamma_0` (summed over the
batch with the loss's weights), which is what POT's
``ot.solve(..., grad="envelope")`` returns for its cost matrix
(:func:`reference.algorithm1.ot_loss_grad_C`).  Like Eq. 11 it is not the
derivative of the returned line-6 cost :math:`\langle\gamma_0, C\rangle` alone,
which would add the plan's own change with ``C``; the two agree as ``lam``
grows; it is the exact derivative of ``value="regularized"``.  The plans are
formed only when ``C`` requires grad (or for the regularized value).

float16 and bfloat16 inputs are checked in their own dtype, solved in float32
(their range cannot hold the scalings) and the loss and its gradients
returned in the input dtype.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from jtln._checks import check_finite, check_histograms, check_lam, histogram_atol
from jtln.device import full_precision
from jtln.sinkhorn import GROSS_ERROR, GibbsKernel, sinkhorn, transport_cost, transport_plan

#: dtypes too narrow for Sinkhorn's scalings: the OT loss is computed in float32 and returned in the input dtype
LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype):
    """The dtype the OT loss computes in: float32 for float16 and bfloat16 inputs, else the input's own."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def potentials(log_u, log_v, lam):
    r"""Eq. 11: the centred duals :math:`\alpha = (\log u - \overline{\log u})/\lambda`, :math:`\beta` alike, each [B, L].

    The gradients of the OT loss in ``h_s`` and ``h_t``.  Centring makes them
    tangent to the simplex; it also removes the constant that shifting ``C``
    by its minimum puts into ``log u`` (:mod:`jtln.sinkhorn`).
    """
    alpha = (log_u - log_u.mean(1, keepdim=True)) / lam
    beta = (log_v - log_v.mean(1, keepdim=True)) / lam
    return alpha, beta


def _check_pair(x_s, x_t, C, names):
    """What histograms and logits share: batch sizes, C [L_s, L_t], one floating dtype.

    ``C``'s values are checked where Sinkhorn meets them (:func:`jtln.sinkhorn.sinkhorn`,
    or once per kernel that :class:`OTLoss` keeps).
    """
    for x, name in ((x_s, names[0]), (x_t, names[1]), (C, "C")):
        if not torch.is_tensor(x) or not x.dtype.is_floating_point:
            check_finite(x, name)  # raises the precise error
    if x_s.shape[0] != x_t.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same batch size, got {x_s.shape[0]} and {x_t.shape[0]}")
    expected = (x_s.shape[1], x_t.shape[1])
    if tuple(C.shape) != expected:
        raise ValueError(f"C must have shape [L_s, L_t] = {list(expected)}, got {list(C.shape)}")
    if x_s.dtype != C.dtype or x_t.dtype != C.dtype:
        raise ValueError(f"{names[0]}, {names[1]} and C must share a dtype, got {x_s.dtype}, {x_t.dtype}, {C.dtype}")


def _histograms(h_s, h_t, C, lam):
    """Validated marginals ``a``, ``b`` and ``lam``.

    The histograms are checked in their own dtype, then renormalised to sum
    exactly 1 in the dtype the loss computes in (:func:`compute_dtype`):
    Algorithm 1 has no fixed point for unequal masses.
    """
    sums_s, sums_t = check_histograms(h_s, "h_s"), check_histograms(h_t, "h_t")
    _check_pair(h_s, h_t, C, ("h_s", "h_t"))
    work = compute_dtype(h_s.dtype)
    a, b = h_s.detach().to(work), h_t.detach().to(work)
    if work != h_s.dtype:
        sums_s, sums_t = a.sum(1), b.sum(1)
    return a / sums_s[:, None], b / sums_t[:, None], check_lam(lam)


def _softmaxes(logits_s, logits_t, C, lam):
    """``softmax(logits_s)``, ``softmax(logits_t)`` row by row in the dtype the loss computes in, and ``lam``, checking their shapes.

    Their values are checked by the loss's result (:func:`_refuse`):
    a softmax row is NaN exactly when its logits hold a NaN or ``+inf`` or are
    all ``-inf``, and Sinkhorn's marginal error is then NaN.  A single
    ``-inf`` is a masked class and gets zero mass.
    """
    for logits, name in ((logits_s, "logits_s"), (logits_t, "logits_t")):
        if not torch.is_tensor(logits) or logits.dim() != 2 or logits.shape[1] == 0:
            raise ValueError(f"{name} must be a tensor of logits [B, L] with L >= 1, got "
                             f"{getattr(logits, 'shape', type(logits).__name__)}")
    _check_pair(logits_s, logits_t, C, ("logits_s", "logits_t"))
    work = compute_dtype(logits_s.dtype)
    return torch.softmax(logits_s.detach().to(work), 1), torch.softmax(logits_t.detach().to(work), 1), check_lam(lam)


def solve(h_s, h_t, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto", extrapolate=True, kernel=None):
    """Validate and run Algorithm 1 on a batch; returns :class:`jtln.sinkhorn.Scalings`."""
    a, b, lam = _histograms(h_s, h_t, C, lam)
    return sinkhorn(a, b, C.detach().to(a.dtype), lam, tol=tol, max_iter=max_iter, check_every=check_every, domain=domain,
                    extrapolate=extrapolate, kernel=kernel)


def _softmax_backward(h, grad_h):
    r"""Chain rule through :math:`h = \mathrm{softmax}(z)`: :math:`\partial/\partial z_k = h_k (g_k - \langle h, g\rangle)`.

    A constant added to a row of ``grad_h`` drops out, since the row of ``h``
    sums to 1.  torch's own softmax backward kernel, one call instead of four.
    """
    return torch._softmax_backward_data(grad_h, h, 1, h.dtype)


def _refuse(scalings, lam, inputs, names):
    """Raise the reason a Sinkhorn result is not a loss: NaN or infinite inputs, or no convergence."""
    if math.isnan(scalings.marginal_error):
        for x, name in zip(inputs, names):
            check_finite(x, name)  # raises the precise error
        raise ValueError(f"{names[0]} or {names[1]} has a row with no class left to put mass on (logits all -inf)")
    raise FloatingPointError(
        f"the OT loss did not converge: after {scalings.n_iter} iterations at lam={lam:g} the plan's marginals are off by "
        f"{scalings.marginal_error:.3g} (over {GROSS_ERROR:g} of the mass), so its value would be wrong; raise max_iter "
        f"(lam = 1e4 on costs in [0, 1] takes ~14,000 iterations) or lower lam")


#: the reductions of the OT loss over the batch
REDUCTIONS = ("none", "mean", "sum")
#: the values the OT loss can return: line 6 of Algorithm 1 (the paper's), or the entropy-regularised optimum whose
#: exact gradient the backward pass gives (the module docstring)
VALUES = ("linear", "regularized")
#: the options of Algorithm 1 that :func:`ot_loss` and :class:`OTLoss` take besides the reduction
OPTIONS = ("tol", "max_iter", "check_every", "domain", "extrapolate", "kernel", "deferred")


def _reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _value(value):
    if value not in VALUES:
        raise ValueError(f"value must be 'linear' (line 6, the paper's loss) or 'regularized' (the entropy-regularised "
                         f"optimum, whose exact gradient the backward gives), got {value!r}")
    return value


def regularized_value(a, b, scalings, C, lam, plans):
    r""":math:`W_\lambda` of each row in its dual form, [B] (the module docstring).

    ``log_u``, ``log_v`` scale :math:`e^{-\lambda(C - \min C) - 1}`, so the
    dual value is that of the shifted ``C`` plus the shift.
    """
    dual = (a * scalings.log_u).sum(1) + (b * scalings.log_v).sum(1) - plans.sum((-2, -1))
    return dual / lam + C.min()


def warn_if_probabilities(logits_s, logits_t):
    """Warn where every row of both inputs to a ``logits`` path already sums to 1: probabilities, softmaxed again."""
    if any(len(x) == 0 or x.shape[1] < 2 for x in (logits_s, logits_t)):  # a single class sums to 1 whatever it holds
        return
    sums = torch.stack([torch.stack([x.min(), (x.sum(1) - 1).abs().max()]) for x in (logits_s, logits_t)]).tolist()
    if all(low >= 0 and off <= histogram_atol(logits_s.dtype) for low, off in sums):
        warnings.warn("logits_s and logits_t look like probabilities (every row is non-negative and sums to 1), but they are "
                      "taken as logits and softmaxed again, which flattens them; pass the heads' logits, or the "
                      "probabilities to ot_loss / OTLoss(..., logits=False)", stacklevel=4)


class _OTLossFunction(torch.autograd.Function):
    r"""Forward: Algorithm 1 and line 6, reduced over the batch.  Backward: Eq. 11 (:func:`potentials`).

    With logits the softmax's backward pass is folded into Eq. 11 (and the
    centring of Eq. 11 skipped: :math:`\log u / \lambda` differs from
    :math:`\alpha` by a constant per row, which the softmax's backward
    removes), which spares a training step four autograd nodes; reducing
    inside the node spares it the node of ``.mean()``.  If ``C`` requires
    grad, the plans are formed in the forward pass and their weighted sum is
    its gradient (the module docstring).
    """

    @staticmethod
    @full_precision()
    def forward(ctx, x_s, x_t, C, lam, logits, reduction, value, options):
        a, b, lam = (_softmaxes if logits else _histograms)(x_s, x_t, C, lam)  # in the dtype the loss computes in
        if logits and not options["deferred"]:  # where the call reads anyway
            warn_if_probabilities(x_s, x_t)
        C = C.detach().to(a.dtype)
        scalings = sinkhorn(a, b, C, lam, **options)
        needs_plans = ctx.needs_input_grad[2] or value == "regularized"
        plans = transport_plan(scalings, C, lam) if needs_plans else None
        losses = transport_cost(scalings, C, lam) if value == "linear" else regularized_value(a, b, scalings, C, lam, plans)
        if torch.is_tensor(scalings.marginal_error):  # deferred: no read; a loss that is not one is NaN (found by its reader)
            losses = torch.where(scalings.marginal_error <= GROSS_ERROR, losses, math.nan)
        elif not scalings.marginal_error <= GROSS_ERROR:  # NaN included
            _refuse(scalings, lam, (x_s, x_t), ("logits_s", "logits_t") if logits else ("h_s", "h_t"))
        ctx.weight = 1.0  # d(reduced loss) / d(each row's loss)
        if reduction == "mean":
            if not len(losses):
                raise ValueError("an empty batch has no mean OT loss: pass at least one row, or reduction='sum' or 'none'")
            ctx.weight = 1.0 / len(losses)
        ctx.save_for_backward(a, b, scalings.log_u, scalings.log_v, plans if ctx.needs_input_grad[2] else None)
        ctx.lam, ctx.logits, ctx.per_sample, ctx.dtype = lam, logits, reduction == "none", x_s.dtype
        if reduction != "none":
            losses = losses.mean() if reduction == "mean" else losses.sum()
        return losses.to(x_s.dtype)

    @staticmethod
    @once_differentiable
    @full_precision()
    def backward(ctx, grad_loss):
        a, b, log_u, log_v, plans = ctx.saved_tensors
        g = grad_loss.to(a.dtype)
        g_rows = g[:, None] if ctx.per_sample else g  # the incoming gradient, one for every row of a reduced loss
        if ctx.logits:
            scale = g_rows * (ctx.weight / ctx.lam)
            grad_s, grad_t = _softmax_backward(a, log_u * scale), _softmax_backward(b, log_v * scale)
        else:
            alpha, beta = potentials(log_u, log_v, ctx.lam)
            scale = g_rows * ctx.weight
            grad_s, grad_t = alpha * scale, beta * scale
        grad_C = None
        if plans is not None:  # sum_b g_b w gamma_b
            grad_C = (torch.tensordot(g, plans, dims=1) if ctx.per_sample else g * plans.sum(0)) * ctx.weight
            grad_C = grad_C.to(ctx.dtype)
        return grad_s.to(ctx.dtype), grad_t.to(ctx.dtype), grad_C, None, None, None, None, None


def ot_loss(h_s: torch.Tensor, h_t: torch.Tensor, C: torch.Tensor, lam: float, *,
            reduction: Literal["none", "mean", "sum"] = "none", tol: float | None = None, max_iter: int = 10_000,
            check_every: int = 10, domain: Literal["auto", "scaling", "log"] = "auto", extrapolate: bool = True,
            kernel: GibbsKernel | None = None, deferred: bool = False,
            value: Literal["linear", "regularized"] = "linear") -> torch.Tensor:
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
    value : {"linear", "regularized"}
        "linear" (the paper's): line 6, :math:`\langle\gamma_0, C\rangle_F`,
        whose backward is Eq. 11 (not its exact derivative);
        "regularized": the entropy-regularised optimum :math:`W_\lambda`, of
        which Eq. 11 is the exact gradient (the module docstring).
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
        :class:`OTLoss` does); built per call otherwise.  Its ``loop`` says
        where Sinkhorn's scaling loop runs: on NumPy views of the tensors for
        float32/float64 on the CPU (the default there), in torch elsewhere or
        with ``GibbsKernel.of(C, lam, loop="torch")``; on CUDA in one Triton
        program per row where Triton is installed (:mod:`jtln.scaling_triton`).
    deferred : bool
        With the Triton loop, read nothing from the device: a row whose
        Sinkhorn failed (a final error over
        :data:`jtln.sinkhorn.GROSS_ERROR`, or an overflow) gets a NaN loss
        instead of an exception, for a caller that reads its losses later
        anyway (a training loop: :func:`jtln.train.train` reads them once per
        epoch and raises at the first NaN); a final error between ``tol`` and
        that is not warned about.  Other loops read as they must.

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
    options = dict(tol=tol, max_iter=max_iter, check_every=check_every, domain=domain, extrapolate=extrapolate, kernel=kernel,
                   deferred=deferred)
    return _OTLossFunction.apply(h_s, h_t, C, lam, False, _reduction(reduction), _value(value), options)


def ot_loss_with_logits(logits_s: torch.Tensor, logits_t: torch.Tensor, C: torch.Tensor, lam: float, *,
                        reduction: Literal["none", "mean", "sum"] = "none", tol: float | None = None, max_iter: int = 10_000,
                        check_every: int = 10, domain: Literal["auto", "scaling", "log"] = "auto", extrapolate: bool = True,
                        kernel: GibbsKernel | None = None, deferred: bool = False,
                        value: Literal["linear", "regularized"] = "linear") -> torch.Tensor:
    r"""``ot_loss(softmax(logits_s), softmax(logits_t), C, lam)`` as one autograd node, from the heads' logits.

    What the JTLN methods call: the histogram checks reduce to finite logits
    (a softmax is a histogram), and the softmax's backward pass is folded into
    Eq. 11, which saves four autograd nodes per training step.  Same options
    as :func:`ot_loss`; ``logits_s`` [B, L_s] and ``logits_t`` [B, L_t] are logits.
    Rows that already sum to 1 in both (probabilities passed as logits) warn,
    except with ``deferred=True``, which reads nothing.
    """
    options = dict(tol=tol, max_iter=max_iter, check_every=check_every, domain=domain, extrapolate=extrapolate, kernel=kernel,
                   deferred=deferred)
    return _OTLossFunction.apply(logits_s, logits_t, C, lam, True, _reduction(reduction), _value(value), options)


class OTLoss(nn.Module):
    """Eq. 3 as a module: the OT loss between two heads' predictions, reduced over the batch.

    ``OTLoss(C, lam)(x_s, x_t)``: ``x_s`` [B, L_s] is the *source* head's
    output and ``x_t`` [B, L_t] the *target* head's, both on the same batch of
    target images (Eq. 3); histograms, or logits with ``logits=True``
    (:func:`ot_loss_with_logits`, the softmax folded into the backward pass).
    ``reduction`` "mean" (Eq. 3, the default), "sum" or "none".

    Choosing ``lam``: it is :math:`\\lambda` of Algorithm 1, POT's ``1 / reg``
    (``ot.sinkhorn(a, b, M, reg)``), in units of 1 / cost.  With ``C`` scaled
    to [0, 1] (:func:`jtln.costs.normalize_cost`, the cost matrices' default)
    ``lam = 10`` blurs the plan over a tenth of the cost range, the default of
    this project's search (2-20); larger values follow ``C`` more sharply and
    need more iterations, and past ~20 in float32 Sinkhorn works in the slower
    log domain.  The OT term's weight in Eq. 4, ``lambda_ot``, is the
    caller's: 1 weighs it like the target cross-entropy (a loss in [0, 1] on
    such a ``C``).

    A constant ``C`` is copied into a buffer; an ``nn.Parameter`` is kept as
    this module's parameter (the same object, so an optimiser holding it
    updates the cost), and gets the envelope gradient.  Either way
    ``.to(device)`` moves it.  ``C`` must hold finite non-negative floats
    (checked here).  ``value`` "linear" (the paper's loss) or "regularized"
    (the value whose exact gradient the backward gives; the module
    docstring).  Other keywords go to :func:`ot_loss`, and an unknown one is
    refused here.

    >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    >>> loss = OTLoss(C, lam=10.0, logits=True)
    >>> logits_s = torch.tensor([[2.0, 0.0]], dtype=torch.float64)  # the source head: mostly source class 0
    >>> logits_t = torch.tensor([[0.0, 2.0]], dtype=torch.float64)  # the target head: mostly target class 1
    >>> round(loss(logits_s, logits_t).item(), 4)  # most of the mass pays C[0, 1] = 1
    0.7616
    """

    def __init__(self, C: torch.Tensor, lam: float, reduction: Literal["mean", "sum", "none"] = "mean", logits: bool = False,
                 value: Literal["linear", "regularized"] = "linear", **options) -> None:
        super().__init__()
        self.reduction, self.value = _reduction(reduction), _value(value)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:  # at construction, not at the first forward pass
            raise TypeError(f"OTLoss got unknown option(s) {unknown}; the options are {list(OPTIONS)} (jtln.ot.ot_loss)")
        C_values = torch.as_tensor(C).detach()
        if not C_values.dtype.is_floating_point:  # an integer C would be cast silently at every call
            raise ValueError(f"C must be a floating-point cost matrix, got {C_values.dtype}; costs are distances "
                             "(jtln.costs.mmd_cost_matrix returns float ones), convert with C.double() or C.float()")
        if C_values.dim() != 2:
            raise ValueError(f"C must have shape [L_s, L_t], got {tuple(C_values.shape)}")
        if isinstance(C, nn.Parameter):
            self.C = C
        else:
            self.register_buffer("C", C_values.clone())
        self.lam = check_lam(lam)
        self.logits = bool(logits)
        self.options = options
        self._kernel, self._kernel_key = None, None
        self.kernel(compute_dtype(C_values.dtype))  # NaN, inf and negative costs refused here, by name; kept for the first forward pass

    def kernel(self, dtype):
        """The :class:`GibbsKernel` of ``C`` in ``dtype``, rebuilt when ``C`` is replaced, moved or changed in place."""
        key = (self.C._version, dtype)  # with the tensor itself: the module's .to() or an assignment replaces it
        if self._kernel_key is None or self._kernel_key[0] is not self.C or self._kernel_key[1:] != key:
            self._kernel, self._kernel_key = GibbsKernel.of(self.C.detach().to(dtype), self.lam), (self.C, *key)
        return self._kernel

    def forward(self, x_s: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """The loss between the source head's ``x_s`` [B, L_s] and the target head's ``x_t`` [B, L_t] on the same images."""
        names = ("logits_s", "logits_t") if self.logits else ("h_s", "h_t")
        for x, name in zip((x_s, x_t), names):  # before C is cast to their dtype
            if not torch.is_tensor(x) or not x.dtype.is_floating_point:
                check_finite(x, name)  # raises the precise error
        C = self.C.to(x_s.dtype)
        loss = ot_loss_with_logits if self.logits else ot_loss
        return loss(x_s, x_t, C, self.lam, reduction=self.reduction, kernel=self.kernel(compute_dtype(x_s.dtype)),
                    value=self.value, **self.options)

    def extra_repr(self):
        return (f"L_s={self.C.shape[0]}, L_t={self.C.shape[1]}, lam={self.lam}, reduction={self.reduction!r}, "
                f"logits={self.logits}, value={self.value!r}")
