"""Input validation for the PyTorch path: clear errors that name the argument."""

import math
import numbers

import numpy as np
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
    """``h`` [B, L]: finite, non-negative rows that each sum to 1; returns the row sums [B].

    One pass when all is well: NaN propagates through ``min`` and an infinite
    entry through the row sums, and only then is the precise error looked for.
    """
    if not torch.is_tensor(h) or not h.dtype.is_floating_point:
        check_finite(h, name)  # raises the precise error
    if h.dim() != 2 or h.shape[1] == 0:
        raise ValueError(f"{name} must have shape [B, L] with L >= 1, got {tuple(h.shape)}")
    h = h.detach()
    sums = h.sum(1)
    if len(h) == 0:
        return sums
    lowest, worst = h.min().item(), (sums - 1).abs().max().item()
    if not (math.isfinite(lowest) and math.isfinite(worst)):
        check_finite(h, name)
    hint = " (logits? pass them to ot_loss_with_logits, or OTLoss(..., logits=True))"
    if lowest < 0:
        raise ValueError(f"{name} has negative entries (min {lowest:.3g}){hint}")
    if worst > histogram_atol(h.dtype):
        raise ValueError(f"{name} rows must sum to 1 (histograms); the worst row is off by {worst:.3g}{hint}")
    return sums


def check_lam(lam):
    """``lam`` as a float: any finite positive real number (NumPy scalars and one-element tensors too), not a bool."""
    if torch.is_tensor(lam) and lam.numel() == 1 and (lam.dtype.is_floating_point or lam.dtype in (torch.int32, torch.int64)):
        lam = lam.item()
    if not isinstance(lam, numbers.Real) or isinstance(lam, (bool, np.bool_)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a finite positive number, got {lam!r}")
    return float(lam)


def check_iterations(max_iter, check_every):
    """Sinkhorn's iteration cap and check period: positive ints, named in the error, the cap at least one period."""
    for name, value in (("max_iter", max_iter), ("check_every", check_every)):
        if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if max_iter < check_every:
        raise ValueError(f"max_iter = {max_iter} is below check_every = {check_every}: convergence would never be checked; "
                         "raise max_iter or lower check_every")
