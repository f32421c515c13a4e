r"""Cost matrices between source and target classes (Sec. 3.4).

:math:`C_{ij} = d(\mu^s_i, \mu^t_j)`, the distance between the feature
distributions of source class :math:`l^s_i` and target class :math:`l^t_j`:

* :func:`mmd_cost_matrix`: squared MK-MMD (Sec. 3.4.1, Eq. 14 or Eq. 12);
* :func:`ot_cost_matrix`: entropic OT with squared Euclidean ground cost
  (Sec. 3.4.2, Eq. 16).

Both are vectorised over all class pairs at once.  The scale of ``C`` fixes
what ``lam`` of the OT loss means (``K = exp(-lam C - 1)``), so both end with
an explicit :func:`normalize_cost` (default ``"minmax"``: ``C`` in [0, 1]).
Balanced OT is invariant to adding a constant to ``C`` (the plan and Eq. 11
do not change), so min-max scaling is a pure change of the unit of ``lam``.
"""

import torch

from jtln._checks import check_finite, check_lam
from jtln.mmd import check_kernel, multi_kernel, squared_distances
from jtln.sinkhorn import sinkhorn, transport_cost

NORMALIZATIONS = ("minmax", "max", "none")


def normalize_cost(C, normalize="minmax"):
    """``"minmax"``: (C - min) / (max - min); ``"max"``: C / max|C|; ``"none"``: C unchanged."""
    if normalize == "none":
        return C
    if normalize == "max":
        return C / C.abs().max().clamp_min(torch.finfo(C.dtype).tiny)
    if normalize == "minmax":
        return (C - C.min()) / (C.max() - C.min()).clamp_min(torch.finfo(C.dtype).tiny)
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def median_bandwidths(features, n_kernels=5, base=2.0, max_samples=1000):
    r"""Multi-kernel bandwidths :math:`\sigma_u = \sigma_0\, b^{k_u}` (centred integer :math:`k_u`) and uniform :math:`\beta_u`.

    :math:`\sigma_0^2` is the median pairwise squared distance of the pooled
    features (the median heuristic of Gretton et al. [16]), computed on at most
    ``max_samples`` evenly spaced rows so that it is deterministic.  The family
    spans the median scale by ``base**±2`` for the default 5 kernels, as the
    multi-kernel of Eq. 13 is meant to.

    Bandwidth floor: :math:`\sigma_0^2 \ge` the dtype's machine epsilon.  When
    most features coincide (the median distance is 0), every kernel is then
    still finite, and identical samples give an MMD of exactly 0 instead of NaN.
    """
    x = features[:: max(1, len(features) // max_samples)][:max_samples]
    d2 = squared_distances(x, x)
    off_diagonal = d2[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
    sigma0 = off_diagonal.median().clamp_min(torch.finfo(x.dtype).eps).sqrt()
    ks = torch.arange(n_kernels, dtype=x.dtype, device=x.device) - (n_kernels - 1) / 2
    sigmas = sigma0 * base**ks
    betas = torch.full((n_kernels,), 1.0 / n_kernels, dtype=x.dtype, device=x.device)
    return sigmas, betas


def _group_by_class(features, labels, n_classes, name):
    """Padded per-class samples [L, n_max, D] in their given order, and counts [L]."""
    check_finite(features, f"features_{name}")
    if features.dim() != 2:
        raise ValueError(f"features_{name} must have shape [N, D], got {tuple(features.shape)}")
    labels = torch.as_tensor(labels, device=features.device)
    if labels.shape != (len(features),):
        raise ValueError(f"y_{name} must have shape [{len(features)}], got {tuple(labels.shape)}")
    if n_classes is None:
        n_classes = int(labels.max().item()) + 1 if len(labels) else 0
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"y_{name} must lie in [0, {n_classes}), got [{labels.min().item()}, {labels.max().item()}]")
    counts = torch.bincount(labels, minlength=n_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"class(es) {empty} of y_{name} have no samples; every class needs some for a cost matrix")
    order = torch.argsort(labels, stable=True)
    rank = torch.arange(len(labels), device=labels.device) - torch.cumsum(counts, 0)[labels[order]] + counts[labels[order]]
    grouped = features.new_zeros((n_classes, int(counts.max()), features.shape[1]))
    grouped[labels[order], rank] = features[order]
    return grouped, counts


def _check_pair(feat_s, feat_t):
    if feat_s.shape[1] != feat_t.shape[1]:
        raise ValueError(f"feat_s and feat_t must have the same feature dimension, got {feat_s.shape[1]} and {feat_t.shape[1]}")


def mmd_cost_matrix(feat_s, y_s, feat_t, y_t, *, L_s=None, L_t=None, sigmas=None, betas=None,
                    estimator="linear", normalize="minmax"):
    r"""Cost matrix :math:`C_{ij} = d_k^2(\mu^s_i, \mu^t_j)` by MK-MMD (Sec. 3.4.1), [L_s, L_t].

    ``estimator="linear"`` applies Eq. 14 to each class pair, with the
    quad-tuples taken from each class's samples in the order they appear in
    ``feat_s``/``feat_t`` (the first ``n`` of each, ``n`` the largest even
    number ``<= min`` of the two class sizes), exactly as
    :func:`jtln.mmd.mk_mmd2`.  ``"unbiased"`` uses Eq. 12 on all samples.
    ``sigmas``/``betas`` default to :func:`median_bandwidths` of the pooled
    features.  Every class needs at least 2 samples.
    """
    _check_pair(feat_s, feat_t)
    X_s, n_s = _group_by_class(feat_s, y_s, L_s, "s")
    X_t, n_t = _group_by_class(feat_t, y_t, L_t, "t")
    for name, n in (("y_s", n_s), ("y_t", n_t)):
        if bool((n < 2).any()):
            raise ValueError(f"every class of {name} needs at least 2 samples for MK-MMD, got counts {n.tolist()}")
    if sigmas is None:
        sigmas, betas = median_bandwidths(torch.cat([feat_s, feat_t]))
    check_kernel(sigmas, betas)

    def k(d2):
        return multi_kernel(d2, sigmas, betas)

    if estimator == "linear":
        P = int(min(n_s.max(), n_t.max())) // 2  # most quad-tuples any pair can use
        S1, S2 = X_s[:, 0 : 2 * P : 2], X_s[:, 1 : 2 * P : 2]  # [L_s, P, D]
        T1, T2 = X_t[:, 0 : 2 * P : 2], X_t[:, 1 : 2 * P : 2]
        k_ss = k((S1 - S2).square().sum(-1))  # [L_s, P]
        k_tt = k((T1 - T2).square().sum(-1))  # [L_t, P]
        k_st = k(squared_distances(S1.transpose(0, 1), T2.transpose(0, 1)))  # [P, L_s, L_t]
        k_ts = k(squared_distances(S2.transpose(0, 1), T1.transpose(0, 1)))
        g = k_ss.T[:, :, None] + k_tt.T[:, None, :] - k_st - k_ts  # g_k(z_p) for every pair
        n_quads = torch.minimum(n_s[:, None], n_t[None, :]) // 2  # [L_s, L_t]
        used = torch.arange(P, device=g.device)[:, None, None] < n_quads
        C = (g * used).sum(0) / n_quads
    elif estimator == "unbiased":
        C = _unbiased_mmd2_all_pairs(X_s, n_s, X_t, n_t, k)
    else:
        raise ValueError(f"estimator must be 'linear' or 'unbiased', got {estimator!r}")
    return normalize_cost(C, normalize)


def _unbiased_mmd2_all_pairs(X_s, n_s, X_t, n_t, k):
    """Eq. 12 for every class pair; within-class sums once per class, cross sums once per pair."""

    def within(X, n):
        mask = torch.arange(X.shape[1], device=X.device)[None, :] < n[:, None]  # [L, n_max]
        total = []
        for Xc, mc, nc in zip(X, mask, n):  # one class at a time bounds memory to n_max^2
            Kc = k(squared_distances(Xc[mc], Xc[mc]))
            total.append((Kc.sum() - Kc.diagonal().sum()) / (nc * (nc - 1)))
        return torch.stack(total)

    mask_s = (torch.arange(X_s.shape[1], device=X_s.device)[None, :] < n_s[:, None]).to(X_s.dtype)
    mask_t = (torch.arange(X_t.shape[1], device=X_t.device)[None, :] < n_t[:, None]).to(X_t.dtype)
    cross = torch.stack([
        torch.einsum("a,jab,jb->j", m_i, k(squared_distances(X_i[None], X_t)), mask_t)
        for X_i, m_i in zip(X_s, mask_s)
    ]) / (n_s[:, None] * n_t[None, :])
    return within(X_s, n_s)[:, None] + within(X_t, n_t)[None, :] - 2 * cross


def ot_cost_matrix(feat_s, y_s, feat_t, y_t, *, L_s=None, L_t=None, lam=None, normalize="minmax",
                   tol=1e-6, max_iter=10_000):
    r"""Cost matrix :math:`C_{ij} = \langle\gamma_0, C^{ij}\rangle_F` by entropic OT (Sec. 3.4.2, Eq. 16), [L_s, L_t].

    For each class pair, uniform masses on the two classes' samples (Eq. 15),
    ground cost :math:`C^{ij}_{ab} = \lVert x^s_a - x^t_b\rVert_2^2` and the
    plan of Eq. 16 by the matrix scaling of Algorithm 1 (log domain), all pairs
    in one padded batch.  ``lam`` is in units of 1/cost, as in
    :func:`reference.class_ot.class_ot_distance`; by default
    ``lam = 10 / median`` of the ground costs, so that the entropic blur is a
    tenth of a typical distance whatever the feature scale.
    """
    _check_pair(feat_s, feat_t)
    X_s, n_s = _group_by_class(feat_s, y_s, L_s, "s")
    X_t, n_t = _group_by_class(feat_t, y_t, L_t, "t")
    Ls, Lt = len(n_s), len(n_t)
    ground = squared_distances(X_s[:, None], X_t[None, :])  # [L_s, L_t, n_s_max, n_t_max]
    valid_s = torch.arange(X_s.shape[1], device=X_s.device)[None, :] < n_s[:, None]
    valid_t = torch.arange(X_t.shape[1], device=X_t.device)[None, :] < n_t[:, None]
    valid = valid_s[:, None, :, None] & valid_t[None, :, None, :]
    ground = torch.where(valid, ground, torch.zeros((), dtype=ground.dtype, device=ground.device))
    if lam is None:
        lam = 10.0 / ground[valid].median().clamp_min(torch.finfo(ground.dtype).tiny).item()
    lam = check_lam(lam)
    # uniform masses; padded samples carry none
    dtype = ground.dtype
    a = (valid_s.to(dtype) / n_s[:, None].to(dtype))[:, None, :].expand(Ls, Lt, -1).reshape(Ls * Lt, -1)
    b = (valid_t.to(dtype) / n_t[:, None].to(dtype))[None, :, :].expand(Ls, Lt, -1).reshape(Ls * Lt, -1)
    M = ground.reshape(Ls * Lt, *ground.shape[2:])
    scalings = sinkhorn(a, b, M, lam, tol=tol, max_iter=max_iter, domain="log")
    C = transport_cost(scalings, M, lam).reshape(Ls, Lt)
    return normalize_cost(C, normalize)


#: the cost matrix of each kind (Sec. 3.4.1 and 3.4.2)
COST_KINDS = {"mmd": mmd_cost_matrix, "ot": ot_cost_matrix}


def class_cost_matrix(kind, P_s, y_s, P_t, y_t, L_s, L_t, hp):
    """The Sec. 3.4 cost matrix of ``kind`` from pretrained penultimate features of source and target *training* images.

    At most ``hp.cost_samples_per_class`` images per class enter (the first
    ones in the order given); computed in float64, returned in float32.
    """
    if kind not in COST_KINDS:
        raise ValueError(f"cost must be one of {sorted(COST_KINDS)}, got {kind!r}")
    P_s, y_s = _first_per_class(P_s, y_s, hp.cost_samples_per_class)
    P_t, y_t = _first_per_class(P_t, y_t, hp.cost_samples_per_class)
    options = {"estimator": hp.mmd_estimator} if kind == "mmd" else {}
    return COST_KINDS[kind](P_s.double(), y_s, P_t.double(), y_t, L_s=L_s, L_t=L_t, normalize=hp.cost_normalize, **options).float()


def _first_per_class(P, y, limit):
    keep = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    for c in y.unique():
        keep[(y == c).nonzero().flatten()[:limit]] = True
    return P[keep], y[keep]
