r"""Algorithm 1 (the approximate OT loss) and Eq. 11 (its gradient), literally.

The entropic problem of Eq. 9 is solved by the matrix scaling of Algorithm 1:
its solution is :math:`\gamma_0 = \mathrm{diag}(u)\,K\,\mathrm{diag}(v)` with
:math:`K = e^{-\lambda C - 1}`.  That form is the minimiser of

.. math:: \langle \gamma, C\rangle_F + \tfrac{1}{\lambda}\sum_{ij}\gamma_{ij}\log\gamma_{ij}
          \quad\text{s.t. } \gamma 1 = h_s,\ \gamma^\top 1 = h_t,

i.e. of Eq. 9 with the entropy :math:`-\sum\gamma\log\gamma`; Eq. 9 as printed
(``- 1/lam * H`` with ``H = sum gamma log gamma``) has the sign flipped.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from reference._checks import as_finite_array, as_histogram, check_lam


@dataclass
class OTLossResult:
    """What Algorithm 1 computes: the loss (line 6), the scalings and the plan."""

    loss: float
    u: np.ndarray
    v: np.ndarray
    plan: np.ndarray
    n_iter: int


def ot_loss(h_s, h_t, C, lam, tol=1e-9, max_iter=100_000):
    r"""Approximate OT loss of Definition 1 by Algorithm 1.

    Parameters
    ----------
    h_s : array (L_s,)
        Source-head prediction, a histogram (sums to 1).
    h_t : array (L_t,)
        Target-head prediction, a histogram.
    C : array (L_s, L_t)
        Cost matrix, ``C[i, j] = c(l^s_i, l^t_j)``.
    lam : float
        :math:`\lambda > 0`; the entropic weight is :math:`1/\lambda`.
    tol : float
        Stop when ``max |u_new - u| < tol`` (line 2, "u has converged").
    max_iter : int
        Warn (with the final marginal error) if not converged after this many.

    Returns
    -------
    OTLossResult
        ``loss = <diag(u) K diag(v), C>_F`` (line 6), ``u``, ``v``, ``plan``
        and the number of iterations ``n_iter``.

    Examples
    --------
    >>> r = ot_loss([0.5, 0.5], [1.0], [[0.0], [1.0]], lam=10.0)
    >>> round(r.loss, 6)
    0.5
    """
    h_s = as_histogram(h_s, "h_s")
    h_t = as_histogram(h_t, "h_t")
    C = as_finite_array(C, "C", 2)
    if C.shape != (h_s.size, h_t.size):
        raise ValueError(f"C must have shape (len(h_s), len(h_t)) = {(h_s.size, h_t.size)}, got {C.shape}")
    lam = check_lam(lam)

    L_s, L_t = C.shape
    # line 1
    u = np.ones(L_s) / L_s
    v = np.ones(L_t) / L_t
    K = np.exp(-lam * C - 1.0)
    n_iter = 0
    converged = False
    while n_iter < max_iter:  # line 2
        n_iter += 1
        v = h_t / (K.T @ u)  # line 3
        u_new = h_s / (K @ v)  # line 4
        change = np.max(np.abs(u_new - u))
        u = u_new
        if change < tol:
            converged = True
            break
    plan = u[:, None] * K * v[None, :]
    if not converged:
        error = np.abs(plan.sum(1) - h_s).sum() + np.abs(plan.sum(0) - h_t).sum()
        warnings.warn(
            f"Algorithm 1 did not converge in {max_iter} iterations "
            f"(last change of u {change:.3e}, marginal error {error:.3e})",
            RuntimeWarning,
            stacklevel=2,
        )
    loss = float(np.sum(plan * C))  # line 6
    return OTLossResult(loss=loss, u=u, v=v, plan=plan, n_iter=n_iter)


def ot_loss_grad(u, v, lam):
    r"""Gradient of the OT loss with respect to ``h_s`` and ``h_t`` (Eq. 11).

    .. math:: \alpha = \frac{\log u}{\lambda} - \frac{\log u^\top 1}{\lambda L_s} 1,\qquad
              \beta  = \frac{\log v}{\lambda} - \frac{\log v^\top 1}{\lambda L_t} 1

    These are the optimal dual variables of the *entropy-regularised* problem
    (``u = e^{lam alpha}``, ``v = e^{lam beta}``), centred so that they are
    tangent to the simplex.  They are therefore the exact gradient (envelope
    theorem) of the regularised optimum
    ``W_lam = <gamma_0, C> + 1/lam sum gamma_0 log gamma_0``, not of the
    returned loss ``<gamma_0, C>`` alone; the two approach each other as
    ``lam`` grows (``tests/test_algorithm1.py`` measures the gap).

    Returns
    -------
    (alpha, beta) : arrays (L_s,), (L_t,)
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    lam = check_lam(lam)
    log_u = np.log(u)
    log_v = np.log(v)
    alpha = log_u / lam - np.sum(log_u) / (lam * u.size)
    beta = log_v / lam - np.sum(log_v) / (lam * v.size)
    return alpha, beta


def ot_loss_grad_C(u, v, C, lam):
    r"""Gradient of the regularised optimum with respect to the cost matrix ``C``: the plan.

    .. math:: \frac{\partial W_\lambda}{\partial C} = \gamma_0 = \mathrm{diag}(u)\,K\,\mathrm{diag}(v),
              \qquad K = e^{-\lambda C - 1}

    By the envelope theorem (as for Eq. 11): :math:`W_\lambda(C) = \min_\gamma
    \langle\gamma, C\rangle + \frac1\lambda\sum\gamma\log\gamma` over the same
    marginals, and ``C`` enters the objective linearly, so its derivative at
    the optimum is :math:`\gamma_0`.  POT's ``ot.solve(M, a, b, reg,
    grad="envelope")`` returns the same for ``M``.

    Returns
    -------
    array (L_s, L_t)
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    C = as_finite_array(C, "C", 2)
    K = np.exp(-check_lam(lam) * C - 1.0)
    return u[:, None] * K * v[None, :]


def regularised_optimum(h_s, h_t, C, lam, tol=1e-14, max_iter=100_000):
    r""":math:`W_\lambda = \langle\gamma_0, C\rangle + \frac1\lambda\sum\gamma_0\log\gamma_0`, the objective Eq. 11 and
    :func:`ot_loss_grad_C` differentiate (what finite differences check them against)."""
    r = ot_loss(h_s, h_t, C, lam, tol=tol, max_iter=max_iter)
    plan = r.plan[r.plan > 0]
    return r.loss + float(np.sum(plan * np.log(plan))) / check_lam(lam)
