"""Every hyper-parameter, declared once: its default, its search distribution, and the reason for both.

The paper publishes none.  The defaults were chosen a priori; the sweep
(:mod:`reproduce.sweep`) draws ``n_trials`` configurations per (dataset,
method, scarcity level) from :data:`SEARCH_SPACE` (trial 0 is the defaults,
as in DomainBed) and keeps the best one on a validation
split carved from target training images (the lowest cross-entropy, see
:mod:`jtln.train`).  A method searches only the names
its registry entry lists (:mod:`jtln.methods`); a profile's ``[hparams]``
fixes a value and takes it out of the search.  Every record carries the
resolved values.
"""

from dataclasses import asdict, dataclass, fields, replace

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution


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
    #: Eq. 13's kernel weights: uniform (the paper's unstated default), or per class pair those of the most powerful
    #: linear-time test (Gretton et al. 2012, the paper's reference [16]); searched.
    mmd_kernel_weights: str = "uniform"
    #: at most this many samples per class enter the cost matrix (bounds Eq. 16's O(n^2) plans).
    cost_samples_per_class: int = 500
    # --- optimisation: SGD with momentum, per layer group (Sec. 4, after Yosinski et al. [3]) ---
    #: conv4-conv5 of AlexNet / the 1x1 head convolution of EfficientNet: "a small learning rate".
    lr_backbone: float = 0.001
    #: fc6-fc7 of AlexNet: "a larger learning rate" (EfficientNet has no such group).
    lr_fc: float = 0.01
    #: the two heads (fc8).  They start from linear probes (LP-FT, see jtln.probe), so a small rate
    #: keeps them near a good solution while the features adapt; larger rates undo the probe in the first epoch.
    lr_head: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: the most target epochs; the epoch with the lowest validation cross-entropy is kept (early stopping).
    epochs: int = 20
    #: each step sees one target batch and (for joint/JTLN) one source batch.
    batch_size_target: int = 32
    batch_size_source: int = 64
    #: consecutive fine-tuning: epochs on the source before continuing on the target.
    source_epochs: int = 2
    # --- beyond the paper (jtln.methods, block "beyond") ---
    #: the cost kind the dynamic and learned-cost variants start from ("mmd": Sec. 3.4.1, "ot": Sec. 3.4.2).
    cost_kind: str = "mmd"
    #: jtln_dynamic: C is recomputed from the current network's features every this many target epochs.
    #: 10 keeps the recomputation's share of a run small (tox -e bench: a dynamic run's step against a joint step).
    cost_every: int = 10
    #: jtln_dynamic: the weight of the previous C in each update, C <- m C + (1 - m) C_new (0: no smoothing).
    cost_momentum: float = 0.0
    #: jtln_learned_cost: the learning rate of the cost matrix (0: C stays the initial cost, exactly fixed-cost JTLN).
    lr_cost: float = 0.01
    #: jtln_learned_cost: rho of the pull rho * ||C - C_0||^2 toward the initial cost.  Without it the OT loss alone
    #: drives every entry that carries mass toward 0 (its gradient in C is the plan, which is >= 0): a collapse.
    cost_pull: float = 1.0
    #: co_tuning: lambda of You et al. (2020), the weight of the source head's cross-entropy against p(y_s | y_t).
    lambda_co: float = 1.0

    def to_dict(self):
        return asdict(self)


DEFAULTS = HParams()

#: The search distribution of each searched hyper-parameter, with its reason.
SEARCH_SPACE = {
    # learning rates and weight decay span orders of magnitude: log-uniform, about a decade each side of the default
    # lr_backbone stops at ten times the default: at 0.020-0.025 the validation cross-entropy of some draws jumped
    # from ~1 into the thousands in the first epoch (Tops joint, Footwear target-only), a divergence that two search
    # draws need not reveal
    "lr_backbone": FloatDistribution(1e-4, 1e-2, log=True),
    "lr_fc": FloatDistribution(1e-4, 1e-1, log=True),
    # the heads start trained (LP-FT): at most the default's tenfold; above it the first epoch undoes the probe
    "lr_head": FloatDistribution(1e-4, 1e-2, log=True),
    "weight_decay": FloatDistribution(1e-6, 1e-3, log=True),
    # with early stopping this is the budget, not the stopping point: short to long runs
    "epochs": IntDistribution(5, 40),
    # Eq. 4's weights: from a tenth to a few times the target term
    "lambda_s": FloatDistribution(0.1, 3.0, log=True),
    "lambda_ot": FloatDistribution(0.1, 10.0, log=True),
    # entropic blur from half to a twentieth of the [0, 1] cost range; above ~20 float32 needs the slower log domain
    "lam": FloatDistribution(2.0, 20.0, log=True),
    # consecutive: from one to five passes over the source before the target
    "source_epochs": IntDistribution(1, 5),
    # Eq. 13's weights: the paper's reference [16] chooses them for test power; uniform is the plain reading
    "mmd_kernel_weights": CategoricalDistribution(("uniform", "optimal")),
    # beyond the paper: which cost to start from, how often to recompute it (in epochs) and how much to smooth it
    "cost_kind": CategoricalDistribution(("mmd", "ot")),
    "cost_every": IntDistribution(1, 20),
    "cost_momentum": FloatDistribution(0.0, 0.9),
    # the learned cost: from a barely moving C to one that moves by a tenth of its range within an epoch; the pull from weak
    # to strong.  lr_cost * cost_pull <= 1 keeps the pull's gradient step stable (jtln.methods.JTLNLearnedCost)
    "lr_cost": FloatDistribution(1e-3, 0.1, log=True),
    "cost_pull": FloatDistribution(0.1, 10.0, log=True),
    # Co-Tuning's lambda: from a tenth to ten times the target term
    "lambda_co": FloatDistribution(0.1, 10.0, log=True),
}


#: allowed ranges: (low, high, low excluded)
RANGES = {
    "lam": (0, None, True), "lambda_ot": (0, None, False), "lambda_s": (0, None, False),
    "cost_samples_per_class": (2, None, False), "lr_backbone": (0, None, False), "lr_fc": (0, None, False),
    "lr_head": (0, None, False), "momentum": (0, 1, False), "weight_decay": (0, None, False), "epochs": (1, None, False),
    "batch_size_target": (1, None, False), "batch_size_source": (1, None, False), "source_epochs": (1, None, False),
    "cost_every": (1, None, False), "cost_momentum": (0, 1, False), "lr_cost": (0, None, False), "cost_pull": (0, None, False),
    "lambda_co": (0, None, False),
}
CHOICES = {"cost_normalize": ("minmax", "max", "none"), "mmd_estimator": ("linear", "unbiased"),
           "mmd_kernel_weights": ("uniform", "optimal"), "cost_kind": ("mmd", "ot")}


def check_overrides(overrides, where="hparams"):
    """Raise ValueError for an unknown name, a wrong type or a value out of range among ``overrides``."""
    from jtln.config import check_range, check_value

    known = {f.name: f.type for f in fields(HParams)}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown hyper-parameter {key!r} in {where}; known: {sorted(known)}")
        check_value(value, known[key], f"{where}.{key}")
        if key in RANGES:
            low, high, low_open = RANGES[key]
            check_range(value, f"{where}.{key}", low, high, low_open)
        if key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"{where}.{key} must be one of {CHOICES[key]}, got {value!r}")


def resolve(overrides=None):
    """The defaults with ``overrides`` applied (checked; ints given for floats become floats)."""
    overrides = dict(overrides or {})
    check_overrides(overrides)
    types = {f.name: f.type for f in fields(HParams)}
    return replace(DEFAULTS, **{k: float(v) if types[k] is float else v for k, v in overrides.items()})


def sample(names, seed):
    """One configuration of the hyper-parameters ``names``, drawn from :data:`SEARCH_SPACE` by optuna's seeded random sampler.

    The draw depends on ``seed`` and ``names`` alone, so a trial's configuration
    never changes when other trials or methods are added.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {name: SEARCH_SPACE[name] for name in sorted(names)}
    if not space:
        return {}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return dict(study.ask(space).params)
