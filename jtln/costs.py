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

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from jtln._checks import check_finite, check_lam
from jtln.device import full_precision
from jtln.mmd import check_kernel, linear_statistics, multi_kernel, optimal_kernel_weights, squared_distances
from jtln.sinkhorn import sinkhorn, transport_cost

NORMALIZATIONS = ("minmax", "max", "none")
#: the MK-MMD estimators: Eq. 14 (linear time, the paper's choice) and Eq. 12 (unbiased, quadratic time)
ESTIMATORS = ("linear", "unbiased")
#: how the kernels of Eq. 13 are weighed: uniform, or per class pair for the most powerful test ([16])
KERNEL_WEIGHTS = ("uniform", "optimal")
#: the median heuristic (bandwidths, the OT cost's lam) reads at most this many evenly spaced samples: deterministic and bounded
MEDIAN_SAMPLES = 1000
#: the OT cost's default lam is this over the median squared distance: an entropic blur of a tenth of a typical distance
OT_BLUR_DIVISOR = 10.0


def normalize_cost(C: torch.Tensor, normalize: Literal["minmax", "max", "none"] = "minmax") -> torch.Tensor:
    """``"minmax"``: (C - min) / (max - min); ``"max"``: C / max|C|; ``"none"``: C unchanged."""
    if normalize == "none":
        return C
    if normalize == "max":
        return C / C.abs().max().clamp_min(torch.finfo(C.dtype).tiny)
    if normalize == "minmax":
        return (C - C.min()) / (C.max() - C.min()).clamp_min(torch.finfo(C.dtype).tiny)
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def median_bandwidths(features, n_kernels=5, base=2.0, max_samples=MEDIAN_SAMPLES):
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


def _as_tensor(x):
    """A numeric NumPy array as a tensor (as the OT loss takes one); anything else as it is, for the checks to name."""
    return torch.from_numpy(x) if isinstance(x, np.ndarray) and x.dtype.kind in "biuf" else x


def _labels(labels, n, name, device):
    """``labels`` as integer class indices [n] on ``device``; strings and floats refused by name, with the fix."""
    if not torch.is_tensor(labels):
        given = np.asarray(labels)
        if given.dtype.kind in "USO":  # class names (or objects), not indices
            example = f" such as {given.flat[0].item()!r}" if given.size else ""
            raise ValueError(f"{name} must hold integer class indices 0..L-1, got names{example}; map names to "
                             f"indices first, e.g. classes, {name} = numpy.unique({name}, return_inverse=True)")
    labels = torch.as_tensor(labels, device=device)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class labels, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}], one label per row of the features, got {tuple(labels.shape)}")
    return labels


def _group_by_class(features, labels, n_classes, name):
    """Padded per-class samples [L, n_max, D] in their given order, and counts [L]."""
    if len(features) == 0:
        raise ValueError(f"feat_{name} has no samples (shape {tuple(features.shape)}); every class needs some for a cost matrix")
    labels = _labels(labels, len(features), f"y_{name}", features.device)
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


def _check_features(feat_s, feat_t):
    """Both sides' features (tensors or NumPy arrays), finite, [N, D], detached (a cost matrix is a constant of the OT
    loss: it keeps no graph of the network)."""
    checked = []
    for x, name in ((feat_s, "feat_s"), (feat_t, "feat_t")):
        x = _as_tensor(x)
        if not torch.is_tensor(x):
            raise ValueError(f"{name} must be a torch.Tensor or a NumPy array of features [N, D], got {type(x).__name__}")
        check_finite(x, name)
        if x.dim() != 2:
            raise ValueError(f"{name} must have shape [N, D], got {tuple(x.shape)}")
        checked.append(x.detach())
    feat_s, feat_t = checked
    if feat_s.shape[1] != feat_t.shape[1]:
        raise ValueError(f"feat_s and feat_t must have the same feature dimension, got {feat_s.shape[1]} and {feat_t.shape[1]}")
    if feat_s.dtype != feat_t.dtype:
        raise ValueError(f"feat_s and feat_t must share a dtype, got {feat_s.dtype} and {feat_t.dtype}")
    return feat_s, feat_t


@full_precision()
def mmd_cost_matrix(feat_s: torch.Tensor, y_s: torch.Tensor, feat_t: torch.Tensor, y_t: torch.Tensor, *, L_s: int | None = None,
                    L_t: int | None = None, sigmas: Sequence[float] | torch.Tensor | None = None,
                    betas: Sequence[float] | torch.Tensor | None = None, estimator: Literal["linear", "unbiased"] = "linear",
                    normalize: Literal["minmax", "max", "none"] = "minmax",
                    kernel_weights: Literal["uniform", "optimal"] = "uniform") -> torch.Tensor:
    r"""Cost matrix :math:`C_{ij} = d_k^2(\mu^s_i, \mu^t_j)` by MK-MMD (Sec. 3.4.1), [L_s, L_t].

    ``estimator="linear"`` applies Eq. 14 to each class pair, with the
    quad-tuples taken from each class's samples in the order they appear in
    ``feat_s``/``feat_t`` (the first ``n`` of each, ``n`` the largest even
    number ``<= min`` of the two class sizes), exactly as
    :func:`jtln.mmd.mk_mmd2`.  ``"unbiased"`` uses Eq. 12 on all samples.
    ``sigmas``/``betas`` default to :func:`median_bandwidths` of the pooled
    features.  Every class needs at least 2 samples.  Features may be
    tensors or NumPy arrays (the result is a tensor); labels are integer
    class indices 0..L-1.

    ``kernel_weights="optimal"`` replaces ``betas`` for each class pair by the
    weights that maximise the power of that pair's linear-time test
    (Gretton et al. 2012 [16], :func:`jtln.mmd.optimal_kernel_weights`).  As
    in [16] the weights are chosen on the first half of the pair's
    quad-tuples and Eq. 14 is estimated on the second: weights chosen on the
    same quads would favour whichever kernel's noise came out positive, and
    bias the entries of similar classes upwards.  It needs
    ``estimator="linear"`` (the power criterion is that of the linear-time
    statistic) and at least 4 samples per class.
    """
    if kernel_weights not in KERNEL_WEIGHTS:
        raise ValueError(f"kernel_weights must be one of {KERNEL_WEIGHTS}, got {kernel_weights!r}")
    if kernel_weights == "optimal" and estimator != "linear":
        raise ValueError(f"kernel_weights='optimal' needs estimator='linear' (Eq. 14), got estimator={estimator!r}")
    feat_s, feat_t = _check_features(feat_s, feat_t)
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

    if kernel_weights == "optimal":
        return normalize_cost(_optimal_weights_mmd2(X_s, n_s, X_t, n_t, sigmas), normalize)
    if estimator == "linear":
        max_quads = int(min(n_s.max(), n_t.max())) // 2  # most quad-tuples any pair can use
        S1, S2 = X_s[:, 0 : 2 * max_quads : 2], X_s[:, 1 : 2 * max_quads : 2]  # [L_s, max_quads, D]
        T1, T2 = X_t[:, 0 : 2 * max_quads : 2], X_t[:, 1 : 2 * max_quads : 2]
        k_ss = k((S1 - S2).square().sum(-1))  # [L_s, max_quads]
        k_tt = k((T1 - T2).square().sum(-1))  # [L_t, max_quads]
        k_st = k(squared_distances(S1.transpose(0, 1), T2.transpose(0, 1)))  # [max_quads, L_s, L_t]
        k_ts = k(squared_distances(S2.transpose(0, 1), T1.transpose(0, 1)))
        g = k_ss.T[:, :, None] + k_tt.T[:, None, :] - k_st - k_ts  # g_k(z_p) for every pair
        n_quads = torch.minimum(n_s[:, None], n_t[None, :]) // 2  # [L_s, L_t]
        used = torch.arange(max_quads, device=g.device)[:, None, None] < n_quads
        C = (g * used).sum(0) / n_quads
    elif estimator == "unbiased":
        C = _unbiased_mmd2_all_pairs(X_s, n_s, X_t, n_t, k)
    else:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return normalize_cost(C, normalize)


def _optimal_weights_mmd2(X_s, n_s, X_t, n_t, sigmas):
    """Eq. 14 for every class pair, each with the kernel weights of its own most powerful test (chosen on half its quads)."""
    for name, n in (("y_s", n_s), ("y_t", n_t)):
        if bool((n < 4).any()):
            raise ValueError(f"optimal kernel weights need at least 4 samples in every class of {name}, got counts {n.tolist()}")
    C = torch.empty((len(n_s), len(n_t)), dtype=X_s.dtype, device=X_s.device)
    for i in range(len(n_s)):
        for j in range(len(n_t)):
            h = linear_statistics(X_s[i, : n_s[i]], X_t[j, : n_t[j]], sigmas)  # [quads, U]
            half = len(h) // 2
            C[i, j] = h[half:].mean(0) @ optimal_kernel_weights(h[:half]).to(h.dtype)
    return C


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


@full_precision()
def ot_cost_matrix(feat_s: torch.Tensor, y_s: torch.Tensor, feat_t: torch.Tensor, y_t: torch.Tensor, *, L_s: int | None = None,
                   L_t: int | None = None, lam: float | None = None, normalize: Literal["minmax", "max", "none"] = "minmax",
                   tol: float = 1e-6, max_iter: int = 10_000, pairs_per_chunk: int = 256) -> torch.Tensor:
    r"""Cost matrix :math:`C_{ij} = \langle\gamma_0, C^{ij}\rangle_F` by entropic OT (Sec. 3.4.2, Eq. 16), [L_s, L_t].

    For each class pair, uniform masses on the two classes' samples (Eq. 15),
    ground cost :math:`C^{ij}_{ab} = \lVert x^s_a - x^t_b\rVert_2^2` and the
    plan of Eq. 16 by the matrix scaling of Algorithm 1 (log domain).  The
    pairs are solved in chunks of whole source classes against every target
    class, at most ``pairs_per_chunk`` pairs (at least one source class) a
    chunk: memory is bounded by the chunk's ground costs, a chunk's worth of
    one pair's [n_s, n_t] distance matrix, however many classes there are.
    ``lam`` is in units of 1/cost, as in
    :func:`reference.class_ot.class_ot_distance`; by default
    ``lam = OT_BLUR_DIVISOR / median`` of the squared distances between
    source and target samples (at most :data:`MEDIAN_SAMPLES` evenly spaced
    ones of each side, as :func:`median_bandwidths`), so that the entropic
    blur is a tenth of a typical distance whatever the feature scale.
    Features may be tensors or NumPy arrays (the result is a tensor); labels
    are integer class indices 0..L-1.
    """
    feat_s, feat_t = _check_features(feat_s, feat_t)
    X_s, n_s = _group_by_class(feat_s, y_s, L_s, "s")
    X_t, n_t = _group_by_class(feat_t, y_t, L_t, "t")
    Ls, Lt = len(n_s), len(n_t)
    if lam is None:
        lam = OT_BLUR_DIVISOR / _median_squared_distance(feat_s, feat_t)
    lam = check_lam(lam)
    dtype, device = X_s.dtype, X_s.device
    valid_s = torch.arange(X_s.shape[1], device=device)[None, :] < n_s[:, None]  # [L_s, n_s_max]
    valid_t = torch.arange(X_t.shape[1], device=device)[None, :] < n_t[:, None]
    a_all = valid_s.to(dtype) / n_s[:, None].to(dtype)  # uniform masses; padded samples carry none
    b_all = valid_t.to(dtype) / n_t[:, None].to(dtype)
    C = torch.empty((Ls, Lt), dtype=dtype, device=device)
    per_chunk = max(1, pairs_per_chunk // max(Lt, 1))  # source classes per chunk
    targets = X_t.reshape(-1, X_t.shape[2])  # [L_t * n_t_max, D], a view
    for i0 in range(0, Ls, per_chunk):
        i1 = min(Ls, i0 + per_chunk)
        c = i1 - i0
        # one cdist of the chunk's source samples against every target sample: no broadcast copies
        ground = squared_distances(X_s[i0:i1].reshape(-1, X_s.shape[2]), targets)
        ground = ground.reshape(c, X_s.shape[1], Lt, X_t.shape[1]).permute(0, 2, 1, 3)  # [c, L_t, n_s_max, n_t_max]
        valid = valid_s[i0:i1, None, :, None] & valid_t[None, :, None, :]
        M = torch.where(valid, ground, torch.zeros((), dtype=dtype, device=device)).reshape(c * Lt, *ground.shape[2:])
        a = a_all[i0:i1, None, :].expand(c, Lt, -1).reshape(c * Lt, -1)
        b = b_all[None, :, :].expand(c, Lt, -1).reshape(c * Lt, -1)
        scalings = sinkhorn(a, b, M, lam, tol=tol, max_iter=max_iter, domain="log")
        C[i0:i1] = transport_cost(scalings, M, lam).reshape(c, Lt)
    return normalize_cost(C, normalize)


def _median_squared_distance(feat_s, feat_t, max_samples=MEDIAN_SAMPLES):
    """The median squared distance between (at most ``max_samples`` evenly spaced) source and target samples, floored at eps."""
    xs = feat_s[:: max(1, len(feat_s) // max_samples)][:max_samples]
    xt = feat_t[:: max(1, len(feat_t) // max_samples)][:max_samples]
    return squared_distances(xs, xt).median().clamp_min(torch.finfo(feat_s.dtype).eps).item()


#: the cost matrix of each kind (Sec. 3.4.1 and 3.4.2)
COST_KINDS = {"mmd": mmd_cost_matrix, "ot": ot_cost_matrix}


@full_precision()
def class_cost_matrix(kind: Literal["mmd", "ot"], P_s: torch.Tensor, y_s: torch.Tensor, P_t: torch.Tensor, y_t: torch.Tensor, L_s: int,
                      L_t: int, *, estimator: Literal["linear", "unbiased"] = "linear",
                      kernel_weights: Literal["uniform", "optimal"] = "uniform", normalize: Literal["minmax", "max", "none"] = "minmax",
                      samples_per_class: int = 500, dtype: torch.dtype = torch.float64,
                      median_samples: int = MEDIAN_SAMPLES) -> torch.Tensor:
    """The Sec. 3.4 cost matrix of ``kind`` ("mmd" or "ot") from penultimate features of source and target *training* images.

    At most ``samples_per_class`` images per class enter (the first ones in
    the order given); computed in ``dtype``, returned in float32.  The median
    heuristic (the MK-MMD bandwidths of :func:`median_bandwidths`, the OT
    cost's default ``lam`` of :func:`ot_cost_matrix`) reads at most
    ``median_samples`` evenly spaced samples.  ``estimator`` and
    ``kernel_weights`` are :func:`mmd_cost_matrix`'s, ``normalize`` that of
    :func:`normalize_cost`.
    """
    if kind not in COST_KINDS:
        raise ValueError(f"kind must be one of {sorted(COST_KINDS)}, got {kind!r}")
    P_s, y_s = _first_per_class(P_s.to(dtype), y_s, samples_per_class)
    P_t, y_t = _first_per_class(P_t.to(dtype), y_t, samples_per_class)
    if kind == "mmd":
        sigmas, betas = median_bandwidths(torch.cat([P_s, P_t]), max_samples=median_samples)
        options = {"estimator": estimator, "kernel_weights": kernel_weights, "sigmas": sigmas, "betas": betas}
    else:
        options = {"lam": OT_BLUR_DIVISOR / _median_squared_distance(P_s, P_t, max_samples=median_samples)}
    return COST_KINDS[kind](P_s, y_s, P_t, y_t, L_s=L_s, L_t=L_t, normalize=normalize, **options).float()


def _first_per_class(P, y, limit):
    keep = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    for c in y.unique():
        keep[(y == c).nonzero().flatten()[:limit]] = True
    return P[keep], y[keep]
