r"""Squared MK-MMD between two samples (Eq. 12 and Eq. 14), vectorised.

Multi-kernel (Eq. 13): :math:`k = \sum_u \beta_u k_u` with Gaussian
:math:`k_u(x, y) = \exp(-\lVert x-y\rVert^2 / (2\sigma_u^2))`.  Same
conventions as :mod:`reference.mmd`, which this is tested against.
"""

import torch

from jtln._checks import check_finite


def kernels(d2, sigmas):
    r"""Each Gaussian kernel of Eq. 13 on squared distances ``d2``: :math:`e^{-d^2/(2\sigma_u^2)}`, ``[U, *d2.shape]``."""
    sigmas = torch.as_tensor(sigmas, dtype=d2.dtype, device=d2.device)
    scale = (-0.5 / sigmas**2).reshape((-1,) + (1,) * d2.dim())
    return torch.exp(d2.unsqueeze(0) * scale)


def multi_kernel(d2, sigmas, betas):
    r"""Eq. 13 applied to squared distances ``d2`` (any shape): :math:`\sum_u \beta_u e^{-d^2/(2\sigma_u^2)}`."""
    betas = torch.as_tensor(betas, dtype=d2.dtype, device=d2.device)
    return torch.tensordot(betas, kernels(d2, sigmas), dims=1)


def squared_distances(x, y):
    """All pairwise squared Euclidean distances, [..., n, m], clamped at 0 (matmul round-off)."""
    return torch.cdist(x, y).square().clamp_min(0)


def check_kernel(sigmas, betas):
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if sigmas.dim() != 1 or sigmas.shape != betas.shape or len(sigmas) == 0:
        raise ValueError(f"sigmas and betas must be 1-D of the same length, got {tuple(sigmas.shape)} and {tuple(betas.shape)}")
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas <= 0).any()):
        raise ValueError(f"sigmas must be finite and positive, got {sigmas.tolist()}")
    if bool((betas < 0).any()) or abs(betas.sum().item() - 1.0) > 1e-6:
        raise ValueError(f"betas must be non-negative and sum to 1 (Eq. 13), got sum {betas.sum().item():.6g}")


def check_samples(xs, xt):
    for name, x in (("xs", xs), ("xt", xt)):
        check_finite(x, name)
        if x.dim() != 2:
            raise ValueError(f"{name} must have shape [n, D], got {tuple(x.shape)}")
        if len(x) < 2:
            raise ValueError(f"{name} needs at least 2 samples for MK-MMD, got {len(x)}")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"xs and xt must have the same feature dimension, got {xs.shape[1]} and {xt.shape[1]}")
    if xs.dtype != xt.dtype:
        raise ValueError(f"xs and xt must share a dtype, got {xs.dtype} and {xt.dtype}")


def mk_mmd2(xs, xt, sigmas, betas, estimator="linear"):
    r"""Unbiased estimate of the squared MK-MMD between samples ``xs`` [m, D] and ``xt`` [n, D].

    ``estimator="linear"`` is Eq. 14, :math:`\frac{2}{n}\sum_{i=1}^{n/2} g_k(z_i)`
    over the quad-tuples :math:`z_i = (x^s_{2i-1}, x^s_{2i}, x^t_{2i-1}, x^t_{2i})`
    of the first ``n`` samples (``n`` the largest even number
    ``<= min(m, len(xt))``), in the order given; O(n D).
    ``estimator="unbiased"`` is the U-statistic of Eq. 12 over all pairs; O(m n D).
    float16 and bfloat16 samples are computed in float32 and the estimate
    returned in their dtype (their kernel sums would lose all precision).
    """
    check_samples(xs, xt)
    check_kernel(sigmas, betas)
    if xs.dtype in (torch.float16, torch.bfloat16):
        return mk_mmd2(xs.float(), xt.float(), sigmas, betas, estimator).to(xs.dtype)
    if estimator == "linear":
        n = min(len(xs), len(xt)) // 2 * 2
        s1, s2, t1, t2 = xs[0:n:2], xs[1:n:2], xt[0:n:2], xt[1:n:2]

        def k(x, y):
            return multi_kernel((x - y).square().sum(dim=-1), sigmas, betas)

        return (k(s1, s2) + k(t1, t2) - k(s1, t2) - k(s2, t1)).mean()
    if estimator == "unbiased":
        m, n = len(xs), len(xt)
        k_ss = multi_kernel(squared_distances(xs, xs), sigmas, betas)
        k_tt = multi_kernel(squared_distances(xt, xt), sigmas, betas)
        k_st = multi_kernel(squared_distances(xs, xt), sigmas, betas)
        within_s = (k_ss.sum() - k_ss.diagonal().sum()) / (m * (m - 1))
        within_t = (k_tt.sum() - k_tt.diagonal().sum()) / (n * (n - 1))
        return within_s + within_t - 2 * k_st.mean()
    raise ValueError(f"estimator must be 'linear' or 'unbiased', got {estimator!r}")


def linear_statistics(xs, xt, sigmas):
    r""":math:`h_u(z_i)`, Eq. 14's :math:`g_k` of each quad-tuple for each kernel alone, [n/2, U] (as :func:`mk_mmd2`'s quads)."""
    check_samples(xs, xt)
    n = min(len(xs), len(xt)) // 2 * 2
    s1, s2, t1, t2 = xs[0:n:2], xs[1:n:2], xt[0:n:2], xt[1:n:2]

    def k(x, y):
        return kernels((x - y).square().sum(dim=-1), sigmas)

    return (k(s1, s2) + k(t1, t2) - k(s1, t2) - k(s2, t1)).T


def optimal_kernel_weights(h, reg=1e-6):
    r"""The :math:`\beta` of Eq. 13 that maximises the linear-time test's power, from the statistics ``h`` [n/2, U].

    Gretton et al. 2012 ([16], Sec. 3): maximise :math:`\beta^\top\eta /
    \sqrt{\beta^\top Q\beta}` over :math:`\beta \ge 0`, with :math:`\eta` and
    :math:`Q` the mean and covariance of ``h``, as the quadratic program
    :math:`\min \beta^\top(Q + \epsilon I)\beta` s.t. :math:`\beta^\top\eta = 1,
    \beta \ge 0` (scipy's SLSQP; ``epsilon = reg`` times the largest
    variance), then rescaled to sum 1.  Uniform when no :math:`\eta_u > 0`
    (no kernel gives the test power).  Returns a float64 tensor [U] on ``h``'s
    device.  Checked against :func:`reference.mmd.optimal_kernel_weights`.
    """
    import numpy as np
    from scipy.optimize import minimize

    H = h.detach().double().cpu().numpy()
    eta, U = H.mean(axis=0), H.shape[1]
    if len(H) < 2 or not (eta > 0).any():
        return torch.full((U,), 1.0 / U, dtype=torch.float64, device=h.device)
    Q = np.atleast_2d(np.cov(H, rowvar=False))
    Q += reg * max(Q.diagonal().max(), np.finfo(float).tiny) * np.eye(U)
    positive = np.where(eta > 0, eta, 0.0)
    result = minimize(lambda b: b @ Q @ b, (positive > 0) / positive.sum(), jac=lambda b: 2 * Q @ b, method="SLSQP",
                      bounds=[(0, None)] * U, constraints=[{"type": "eq", "fun": lambda b: b @ eta - 1.0, "jac": lambda b: eta}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    beta = np.clip(result.x, 0, None)
    return torch.as_tensor(beta / beta.sum(), device=h.device)
