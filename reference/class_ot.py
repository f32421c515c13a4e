r"""Eq. 16: the entropic OT distance between two classes' feature samples."""

import numpy as np

from reference._checks import as_finite_array, check_lam
from reference.algorithm1 import ot_loss


def class_ot_distance(xs, xt, lam, tol=1e-9, max_iter=100_000):
    r"""Distance :math:`d(\mu_s, \mu_t) = \langle\gamma_0, C\rangle_F` of Eq. 16.

    Uniform masses :math:`p^s_i = 1/n_s`, :math:`p^t_j = 1/n_t` (Eq. 15),
    :math:`C_{ij} = \lVert x^s_i - x^t_j\rVert_2^2`, and :math:`\gamma_0` the
    entropic plan found by "the same matrix scaling procedure as in
    Algorithm 1", which is literally what this calls.

    ``lam`` multiplies ``C`` as given (no rescaling): with raw squared
    distances of size ``D`` a sensible ``lam`` is of order ``1/median(C)``.
    """
    xs = as_finite_array(xs, "xs", 2)
    xt = as_finite_array(xt, "xt", 2)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"xs and xt must have the same feature dimension, got {xs.shape[1]} and {xt.shape[1]}")
    if len(xs) == 0 or len(xt) == 0:
        raise ValueError("xs and xt need at least one sample each")
    lam = check_lam(lam)
    C = np.array([[np.sum((a - b) ** 2) for b in xt] for a in xs])
    p_s = np.full(len(xs), 1.0 / len(xs))
    p_t = np.full(len(xt), 1.0 / len(xt))
    return ot_loss(p_s, p_t, C, lam, tol=tol, max_iter=max_iter).loss
