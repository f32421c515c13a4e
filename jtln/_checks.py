"""Input validation for the PyTorch path: clear errors that name the argument."""

import math

import torch


def histogram_atol(dtype):
    """How far from 1 a histogram's sum may be: a few ulps of a softmax over many classes."""
    return {torch.float64: 1e-6, torch.float32: 1e-4}.get(dtype, 1e-2)


def check_finite(x, name):
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")


def check_histograms(h, name):
    """``h`` [B, L]: finite, non-negative rows that each sum to 1 (one pass when all is well)."""
    if not torch.is_tensor(h) or not h.dtype.is_floating_point:
        check_finite(h, name)  # raises the precise error
    if h.dim() != 2 or h.shape[1] == 0:
        raise ValueError(f"{name} must have shape [B, L] with L >= 1, got {tuple(h.shape)}")
    if not bool(((h >= 0) & torch.isfinite(h)).all()):
        check_finite(h, name)
        raise ValueError(f"{name} has negative entries (min {h.min().item():.3g})")
    worst = (h.sum(dim=1) - 1).abs().max().item() if len(h) else 0.0
    if worst > histogram_atol(h.dtype):
        raise ValueError(f"{name} rows must sum to 1 (histograms); the worst row is off by {worst:.3g}")


def check_lam(lam):
    if not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a finite positive number, got {lam!r}")
    return float(lam)
