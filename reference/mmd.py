r"""MK-MMD between two samples: Eq. 12 (unbiased U-statistic) and Eq. 14 (linear).

The multi-kernel of Eq. 13 is :math:`k = \sum_u \beta_u k_u` with Gaussian
kernels :math:`k_u(x, y) = \exp(-\lVert x-y\rVert^2 / (2\sigma_u^2))`.
"""

import numpy as np

from reference._checks import as_finite_array


def gaussian_kernel(x, y, sigma):
    r""":math:`\exp(-\lVert x - y\rVert^2 / (2\sigma^2))` over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return np.exp(-np.sum((x - y) ** 2, axis=-1) / (2.0 * sigma**2))


def multi_kernel(x, y, sigmas, betas):
    r"""Eq. 13: :math:`k(x, y) = \sum_u \beta_u k_u(x, y)`."""
    return sum(beta * gaussian_kernel(x, y, sigma) for sigma, beta in zip(sigmas, betas))


def check_samples(xs, xt, sigmas, betas):
    """Validate two samples and the multi-kernel's parameters (Eq. 13)."""
    xs = as_finite_array(xs, "xs", 2)
    xt = as_finite_array(xt, "xt", 2)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"xs and xt must have the same feature dimension, got {xs.shape[1]} and {xt.shape[1]}")
    for name, x in (("xs", xs), ("xt", xt)):
        if len(x) < 2:
            raise ValueError(f"{name} needs at least 2 samples for MK-MMD, got {len(x)}")
    sigmas = as_finite_array(sigmas, "sigmas", 1)
    betas = as_finite_array(betas, "betas", 1)
    if sigmas.shape != betas.shape:
        raise ValueError(f"sigmas and betas must have the same length, got {sigmas.size} and {betas.size}")
    if np.any(sigmas <= 0):
        raise ValueError("sigmas must be positive")
    if np.any(betas < 0) or abs(betas.sum() - 1.0) > 1e-6:
        raise ValueError(f"betas must be non-negative and sum to 1 (Eq. 13), got sum {betas.sum():.6g}")
    return xs, xt, sigmas, betas


def mk_mmd2_linear(xs, xt, sigmas, betas):
    r"""Linear-time unbiased estimate of the squared MK-MMD (Eq. 14).

    .. math:: d_k^2(\mu_s, \mu_t) = \frac{2}{n}\sum_{i=1}^{n/2} g_k(z_i),\quad
              z_i = (x^s_{2i-1}, x^s_{2i}, x^t_{2i-1}, x^t_{2i})

    with :math:`g_k(z_i) = k(x^s_{2i-1}, x^s_{2i}) + k(x^t_{2i-1}, x^t_{2i})
    - k(x^s_{2i-1}, x^t_{2i}) - k(x^s_{2i}, x^t_{2i-1})`.  Quad-tuples are
    taken in the order the samples are given (0-based ``xs[2i], xs[2i+1]``),
    from the first ``n`` samples of each, ``n`` the largest even number
    ``<= min(len(xs), len(xt))``.
    """
    xs, xt, sigmas, betas = check_samples(xs, xt, sigmas, betas)
    n = min(len(xs), len(xt)) // 2 * 2
    total = 0.0
    for i in range(n // 2):
        s1, s2, t1, t2 = xs[2 * i], xs[2 * i + 1], xt[2 * i], xt[2 * i + 1]
        g = (
            multi_kernel(s1, s2, sigmas, betas)
            + multi_kernel(t1, t2, sigmas, betas)
            - multi_kernel(s1, t2, sigmas, betas)
            - multi_kernel(s2, t1, sigmas, betas)
        )
        total += g
    return 2.0 / n * total


def mk_mmd2_unbiased(xs, xt, sigmas, betas):
    r"""Unbiased U-statistic estimate of the squared MK-MMD of Eq. 12.

    .. math:: \frac{1}{m(m-1)}\sum_{i\ne j} k(x^s_i, x^s_j)
            + \frac{1}{n(n-1)}\sum_{i\ne j} k(x^t_i, x^t_j)
            - \frac{2}{mn}\sum_{i,j} k(x^s_i, x^t_j)
    """
    xs, xt, sigmas, betas = check_samples(xs, xt, sigmas, betas)
    m, n = len(xs), len(xt)
    k_ss = k_tt = k_st = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                k_ss += multi_kernel(xs[i], xs[j], sigmas, betas)
    for i in range(n):
        for j in range(n):
            if i != j:
                k_tt += multi_kernel(xt[i], xt[j], sigmas, betas)
    for i in range(m):
        for j in range(n):
            k_st += multi_kernel(xs[i], xt[j], sigmas, betas)
    return k_ss / (m * (m - 1)) + k_tt / (n * (n - 1)) - 2.0 * k_st / (m * n)


def linear_statistics(xs, xt, sigmas):
    r""":math:`h_u(z_i) = g_{k_u}(z_i)` of Eq. 14 for each quad-tuple ``i`` and each kernel ``u`` separately, (n/2, U).

    Eq. 14 with weights :math:`\beta` is :math:`\frac{2}{n}\sum_i \beta^\top h(z_i)`.
    """
    betas = np.full(len(sigmas), 1.0 / len(sigmas))
    xs, xt, sigmas, _ = check_samples(xs, xt, sigmas, betas)
    n = min(len(xs), len(xt)) // 2 * 2
    h = np.empty((n // 2, len(sigmas)))
    for i in range(n // 2):
        s1, s2, t1, t2 = xs[2 * i], xs[2 * i + 1], xt[2 * i], xt[2 * i + 1]
        for u, sigma in enumerate(sigmas):
            h[i, u] = (gaussian_kernel(s1, s2, sigma) + gaussian_kernel(t1, t2, sigma)
                       - gaussian_kernel(s1, t2, sigma) - gaussian_kernel(s2, t1, sigma))
    return h


def optimal_kernel_weights(xs, xt, sigmas, reg=1e-6):
    r"""The :math:`\beta` of Eq. 13 that maximises the power of the linear-time test (Gretton et al. 2012, [16], Sec. 3).

    With :math:`\eta = E[h]` and :math:`Q = \mathrm{cov}(h)` estimated from the
    quad-tuples (:func:`linear_statistics`), the ratio
    :math:`\beta^\top\eta / \sqrt{\beta^\top Q\beta}` is maximised over
    :math:`\beta \ge 0` by solving the quadratic program

    .. math:: \min_\beta\ \beta^\top (Q + \epsilon I)\beta \quad\text{s.t. } \beta^\top\eta = 1,\ \beta \ge 0

    (``epsilon = reg`` times the largest variance, the regulariser of [16]) and
    rescaling :math:`\beta` to sum 1.  When no kernel has a positive
    :math:`\eta_u` no test has power, and the weights stay uniform.
    """
    from scipy.optimize import minimize

    h = linear_statistics(xs, xt, sigmas)
    eta, U = h.mean(axis=0), h.shape[1]
    if not np.any(eta > 0):
        return np.full(U, 1.0 / U)
    Q = np.atleast_2d(np.cov(h, rowvar=False))
    Q = Q + reg * max(np.max(np.diag(Q)), np.finfo(float).tiny) * np.eye(U)
    start = np.where(eta > 0, 1.0, 0.0) / np.sum(np.where(eta > 0, eta, 0.0))
    result = minimize(lambda b: b @ Q @ b, start, jac=lambda b: 2 * Q @ b, method="SLSQP", bounds=[(0, None)] * U,
                      constraints=[{"type": "eq", "fun": lambda b: b @ eta - 1.0, "jac": lambda b: eta}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    beta = np.clip(result.x, 0, None)
    return beta / beta.sum()
