r"""The Optimal Transport loss of Definition 1, by Algorithm 1, with Eq. 11 as its gradient.

.. math:: \ell_{ot}(h_s(x), h_t(x)) = \langle \mathrm{diag}(u) K \mathrm{diag}(v), C\rangle_F,
          \qquad K = e^{-\lambda C - 1}

computed for a whole batch at once (``K`` is shared), and differentiated by
Eq. 11 through a custom autograd Function: no unrolled iteration is kept in
memory.  Eq. 11 is the gradient of the entropy-regularised optimum
:math:`\langle\gamma_0, C\rangle + \frac1\lambda\sum\gamma_0\log\gamma_0`
(see :func:`reference.algorithm1.ot_loss_grad`), as in Frogner et al. [5].
``C`` is a constant of the loss (Sec. 3.4 computes it beforehand) and gets no
gradient.
"""

import torch
from torch import nn

from jtln._checks import check_finite, check_histograms, check_lam
from jtln.sinkhorn import potentials, sinkhorn, transport_cost


def _check_inputs(h_s, h_t, C):
    check_histograms(h_s, "h_s")
    check_histograms(h_t, "h_t")
    check_finite(C, "C")
    if h_s.shape[0] != h_t.shape[0]:
        raise ValueError(f"h_s and h_t must have the same batch size, got {h_s.shape[0]} and {h_t.shape[0]}")
    expected = (h_s.shape[1], h_t.shape[1])
    if tuple(C.shape) != expected:
        raise ValueError(f"C must have shape [L_s, L_t] = {list(expected)}, got {list(C.shape)}")
    if h_s.dtype != C.dtype or h_t.dtype != C.dtype:
        raise ValueError(f"h_s, h_t and C must share a dtype, got {h_s.dtype}, {h_t.dtype}, {C.dtype}")
    if C.requires_grad:
        raise ValueError("C requires grad, but the OT loss treats the cost matrix as a constant: pass C.detach()")


def solve(h_s, h_t, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto"):
    """Validate and run Algorithm 1 on a batch; returns :class:`jtln.sinkhorn.Scalings`.

    The histograms are renormalised to sum exactly 1 after validation:
    Algorithm 1 has no fixed point for unequal masses.
    """
    _check_inputs(h_s, h_t, C)
    lam = check_lam(lam)
    with torch.no_grad():
        a = h_s / h_s.sum(dim=1, keepdim=True)
        b = h_t / h_t.sum(dim=1, keepdim=True)
        return sinkhorn(a, b, C, lam, tol=tol, max_iter=max_iter, check_every=check_every, domain=domain)


class _OTLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_s, h_t, C, lam, options):
        scalings = solve(h_s, h_t, C, lam, **options)
        loss = transport_cost(scalings, C, lam)  # line 6
        ctx.save_for_backward(scalings.log_u, scalings.log_v)
        ctx.lam = lam
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        alpha, beta = potentials(*ctx.saved_tensors, ctx.lam)  # Eq. 11
        g = grad_loss.unsqueeze(1)
        return g * alpha, g * beta, None, None, None


def ot_loss(h_s, h_t, C, lam, *, tol=None, max_iter=10_000, check_every=10, domain="auto"):
    r"""Per-sample approximate OT loss (Definition 1, Algorithm 1), differentiable by Eq. 11.

    Parameters
    ----------
    h_s : Tensor [B, L_s]
        Source-head softmax outputs (rows are histograms).
    h_t : Tensor [B, L_t]
        Target-head softmax outputs.
    C : Tensor [L_s, L_t]
        Cost matrix, a constant (same dtype and device as ``h_s``).
    lam : float
        :math:`\lambda > 0` of Algorithm 1.
    tol : float, optional
        Marginal-error tolerance; default 1e-9 in float64, 1e-6 in float32.
    max_iter, check_every : int
        Iteration cap (a RuntimeWarning reports the final error) and how often
        convergence is checked.
    domain : {"auto", "scaling", "log"}
        "auto" iterates on ``u, v`` unless ``exp(-lam C - 1)`` would leave the
        dtype's range, then on ``log u, log v`` (slower, always finite).

    Returns
    -------
    Tensor [B]
        :math:`\ell_{ot}(h_s(x_b), h_t(x_b))` for each row.

    Examples
    --------
    >>> h_s = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    >>> h_t = torch.tensor([[1.0]], dtype=torch.float64)
    >>> C = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    >>> ot_loss(h_s, h_t, C, lam=10.0)
    tensor([0.5000], dtype=torch.float64)
    """
    options = dict(tol=tol, max_iter=max_iter, check_every=check_every, domain=domain)
    return _OTLossFunction.apply(h_s, h_t, C, lam, options)


class OTLoss(nn.Module):
    """Eq. 3 as a module: the OT loss between two heads' predictions, reduced over the batch.

    ``OTLoss(C, lam)(h_s, h_t)`` with ``reduction`` "mean" (Eq. 3), "sum" or
    "none".  ``C`` is stored as a buffer, so ``.to(device)`` moves it.
    """

    def __init__(self, C, lam, reduction="mean", **options):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.register_buffer("C", torch.as_tensor(C).detach().clone())
        self.lam = check_lam(lam)
        self.reduction = reduction
        self.options = options

    def forward(self, h_s, h_t):
        C = self.C.to(h_s.dtype)
        losses = ot_loss(h_s, h_t, C, self.lam, **self.options)
        if self.reduction == "mean":
            return losses.mean()
        if self.reduction == "sum":
            return losses.sum()
        return losses

    def extra_repr(self):
        return f"L_s={self.C.shape[0]}, L_t={self.C.shape[1]}, lam={self.lam}, reduction={self.reduction!r}"
