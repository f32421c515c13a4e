"""Input validation shared by the reference functions (NumPy only)."""

import numpy as np

#: Histograms must sum to 1 within this absolute tolerance (float64 inputs).
HISTOGRAM_ATOL = 1e-6


def as_finite_array(x, name, ndim):
    """Return ``x`` as a float64 array of ``ndim`` dimensions, or raise ValueError."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def as_histogram(h, name):
    """Validate a point of the simplex; return it renormalised to sum exactly 1.

    The renormalisation matters: Algorithm 1 has no fixed point when the two
    histograms carry different masses, so a 1e-7 mismatch from a float32
    softmax would make ``u`` drift forever instead of converging.
    """
    h = as_finite_array(h, name, 1)
    if h.size == 0:
        raise ValueError(f"{name} is empty")
    if np.any(h < 0):
        raise ValueError(f"{name} has negative entries (min {h.min():.3g})")
    total = h.sum()
    if abs(total - 1.0) > HISTOGRAM_ATOL:
        raise ValueError(f"{name} must sum to 1 (a histogram), sums to {total:.10g}")
    return h / total


def check_lam(lam):
    if not np.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a finite positive number, got {lam}")
    return float(lam)
