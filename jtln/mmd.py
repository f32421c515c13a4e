r"""Squared MK-MMD between two samples (Eq. 12 and Eq. 14), vectorised.

Multi-kernel (Eq. 13): :math:`k = \sum_u \beta_u k_u` with Gaussian
:math:`k_u(x, y) = \exp(-\lVert x-y\rVert^2 / (2\sigma_u^2))`.  Same
conventions as :mod:`reference.mmd`, which this is tested against.
"""

import torch

from jtln._checks import check_finite


def multi_kernel(d2, sigmas, betas):
    r"""Eq. 13 applied to squared distances ``d2`` (any shape): :math:`\sum_u \beta_u e^{-d^2/(2\sigma_u^2)}`."""
    sigmas = torch.as_tensor(sigmas, dtype=d2.dtype, device=d2.device)
    betas = torch.as_tensor(betas, dtype=d2.dtype, device=d2.device)
    scale = (-0.5 / sigmas**2).reshape((-1,) + (1,) * d2.dim())
    return torch.tensordot(betas, torch.exp(d2.unsqueeze(0) * scale), dims=1)


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
