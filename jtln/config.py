"""The one configuration checker: types and ranges of profile keys and hyper-parameters, with errors that name the key."""

import math


def check_value(value, expected, where):
    """Raise ValueError unless ``value`` is of type ``expected`` (int is not bool; float accepts int; finite numbers)."""
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ValueError(f"{where} must be of type {expected.__name__}, got {type(value).__name__} ({value!r})")
    if expected is float and not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")


def check_range(value, where, low=None, high=None, low_open=False):
    """Raise ValueError unless ``low <= value <= high`` (``low < value`` with ``low_open``)."""
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{where} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{where} must be <= {high}, got {value!r}")
