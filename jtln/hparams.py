"""Every hyper-parameter, declared once with its default and the reason for it.

The paper publishes none.  These defaults were chosen a priori (not tuned on
any test split); a profile may override them in ``[hparams]`` and every run
record carries the resolved values.  Anything tuned must be tuned on the
validation split carved from target training images.
"""

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class HParams:
    # --- OT loss (Algorithm 1, Eq. 4) ---
    #: lambda of Algorithm 1.  C is min-max scaled to [0, 1] (cost_normalize), so the
    #: entropic blur 1/lam is a tenth of the cost range: sharp enough to follow C,
    #: smooth enough that Sinkhorn converges in ~100 iterations in float32.
    lam: float = 10.0
    #: lambda_ot of Eq. 4.  The OT loss lies in [0, 1] with min-max C, the same order
    #: as a cross-entropy late in training; 1 weighs it like the target term.
    lambda_ot: float = 1.0
    #: lambda_s of Eq. 4 (the source cross-entropy).  1: source and target count alike.
    lambda_s: float = 1.0
    # --- cost matrix (Sec. 3.4) ---
    cost_normalize: str = "minmax"
    #: Eq. 14 (the paper's choice) or "unbiased" (Eq. 12).
    mmd_estimator: str = "linear"
    #: at most this many samples per class enter the cost matrix (bounds Eq. 16's O(n^2) plans).
    cost_samples_per_class: int = 500
    # --- optimisation: SGD with momentum, per layer group (Sec. 4, after Yosinski et al. [3]) ---
    #: conv4-conv5 of AlexNet / the late blocks of EfficientNet: "a small learning rate".
    lr_backbone: float = 0.001
    #: fc6-fc7 / the new fully connected layer: "a larger learning rate".
    lr_fc: float = 0.01
    #: fc8 heads, from scratch.
    lr_head: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 10
    #: each step sees one target batch and (for joint/JTLN) one source batch.
    batch_size_target: int = 32
    batch_size_source: int = 64
    #: consecutive fine-tuning: epochs on the source before continuing on the target.
    source_epochs: int = 2

    def to_dict(self):
        return asdict(self)


DEFAULTS = HParams()


def check_overrides(overrides, where="hparams"):
    """Raise ValueError for an unknown name or a wrong type among ``overrides``."""
    known = {f.name: f.type for f in fields(HParams)}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown hyper-parameter {key!r} in {where}; known: {sorted(known)}")
        expected = known[key]
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            if expected is float
            else isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        )
        if not ok:
            raise ValueError(f"{where}.{key} must be {expected.__name__}, got {value!r}")


def resolve(overrides=None):
    """The defaults with ``overrides`` applied (checked; ints given for floats become floats)."""
    overrides = dict(overrides or {})
    check_overrides(overrides)
    types = {f.name: f.type for f in fields(HParams)}
    return replace(DEFAULTS, **{k: float(v) if types[k] is float else v for k, v in overrides.items()})
