"""Every hyper-parameter, declared once: its default, its search distribution, and the reason for both.

The paper publishes none.  The defaults were chosen a priori; the sweep
(:mod:`reproduce.plan`) draws ``n_trials`` configurations per (dataset,
method, scarcity level) from :data:`SEARCH_SPACE` (trial 0 is the defaults,
as in DomainBed) and keeps the best one on a validation
split carved from target training images (the lowest cross-entropy, see
:mod:`jtln.train`).  A method searches only the names
its registry entry lists (:mod:`jtln.methods`); a profile's ``[hparams]``
fixes a value and takes it out of the search.  Every record carries the
resolved values.
"""

from dataclasses import asdict, dataclass, field, fields, replace

from jtln.costs import COST_KINDS, ESTIMATORS, KERNEL_WEIGHTS, NORMALIZATIONS


@dataclass(frozen=True)
class Searched:
    """A search distribution, declared without importing optuna (only :func:`sample` does, through :meth:`optuna`).

    ``kind``: "uniform" or "log" (floats in ``[low, high]``, log-uniform for
    "log"), "int" (integers in ``[low, high]``), "choice" (one of ``choices``).
    """

    kind: str
    low: float = None
    high: float = None
    choices: tuple = None

    def optuna(self):
        """The equivalent optuna distribution."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(self.low, self.high)
        return FloatDistribution(self.low, self.high, log=self.kind == "log")



def hparam(default, *, low=None, high=None, low_open=False, choices=None, search=None):
    """A field of :class:`HParams`: its ``default``, the values it may take, and its search distribution.

    The values: ``low <= value <= high`` (``low < value`` with ``low_open``;
    None: unbounded), or one of ``choices``.  ``search``: a
    :class:`Searched` distribution, True for a uniform draw among ``choices``, or None (not
    searched: a fixed choice of this study).
    """
    if search is True:
        search = Searched("choice", choices=tuple(choices))
    return field(default=default, metadata={"low": low, "high": high, "low_open": low_open, "choices": choices, "search": search})


@dataclass(frozen=True)
class HParams:
    # Learning rates, weight decay and loss weights span orders of magnitude: they are searched log-uniformly,
    # mostly about a decade each side of the default.
    # --- OT loss (Algorithm 1, Eq. 4) ---
    #: lambda of Algorithm 1.  C is min-max scaled to [0, 1] (cost_normalize), so the
    #: entropic blur 1/lam is a tenth of the cost range: sharp enough to follow C,
    #: smooth enough that Sinkhorn converges in ~100 iterations in float32.  Searched from a blur of half
    #: to a twentieth of the range; above ~20 float32 needs the slower log domain.
    lam: float = hparam(10.0, low=0, low_open=True, search=Searched("log", 2.0, 20.0))
    #: lambda_ot of Eq. 4.  The OT loss lies in [0, 1] with min-max C, the same order
    #: as a cross-entropy late in training; 1 weighs it like the target term.  Searched from a tenth to ten times that.
    lambda_ot: float = hparam(1.0, low=0, search=Searched("log", 0.1, 10.0))
    #: lambda_s of Eq. 4 (the source cross-entropy).  1: source and target count alike.  Searched from a tenth to three times.
    lambda_s: float = hparam(1.0, low=0, search=Searched("log", 0.1, 3.0))
    # --- cost matrix (Sec. 3.4) ---
    cost_normalize: str = hparam("minmax", choices=NORMALIZATIONS)
    #: Eq. 14 (the paper's choice) or "unbiased" (Eq. 12).
    mmd_estimator: str = hparam("linear", choices=ESTIMATORS)
    #: Eq. 13's kernel weights: uniform (the paper's unstated default, the plain reading), or per class pair those of the
    #: most powerful linear-time test (Gretton et al. 2012, the paper's reference [16], which chooses them for test power).
    mmd_kernel_weights: str = hparam("uniform", choices=KERNEL_WEIGHTS, search=True)
    #: at most this many samples per class enter the cost matrix (bounds Eq. 16's O(n^2) plans).
    cost_samples_per_class: int = hparam(500, low=2)
    # --- optimisation: SGD with momentum, per layer group (Sec. 4, after Yosinski et al. [3]) ---
    #: conv4-conv5 of AlexNet / the 1x1 head convolution of EfficientNet: "a small learning rate".  The search stops at
    #: ten times the default: at 0.020-0.025 the validation cross-entropy of some draws jumped from ~1 into the
    #: thousands in the first epoch (Tops joint, Footwear target-only), a divergence a seed's search need not reveal.
    lr_backbone: float = hparam(0.001, low=0, search=Searched("log", 1e-4, 1e-2))
    #: fc6-fc7 of AlexNet: "a larger learning rate" (EfficientNet has no such group).
    lr_fc: float = hparam(0.01, low=0, search=Searched("log", 1e-4, 1e-1))
    #: the two heads (fc8).  They start from linear probes (LP-FT, see jtln.probe), so a small rate
    #: keeps them near a good solution while the features adapt; larger rates undo the probe in the first epoch,
    #: so the search stops at the default's tenfold.
    lr_head: float = hparam(0.001, low=0, search=Searched("log", 1e-4, 1e-2))
    momentum: float = hparam(0.9, low=0, high=1)
    weight_decay: float = hparam(5e-4, low=0, search=Searched("log", 1e-6, 1e-3))
    #: the most target epochs; the epoch with the lowest validation cross-entropy is kept (early stopping).  With
    #: early stopping this is the budget, not the stopping point: searched from short to long runs.
    epochs: int = hparam(20, low=1, search=Searched("int", 5, 40))
    #: each step sees one target batch and (for joint/JTLN) one source batch.
    batch_size_target: int = hparam(32, low=1)
    batch_size_source: int = hparam(64, low=1)
    #: consecutive fine-tuning: epochs on the source before continuing on the target; searched from one to five passes.
    source_epochs: int = hparam(2, low=1, search=Searched("int", 1, 5))
    # --- beyond the paper (jtln.methods, block "beyond") ---
    #: the cost kind the dynamic and learned-cost variants start from ("mmd": Sec. 3.4.1, "ot": Sec. 3.4.2).
    cost_kind: str = hparam("mmd", choices=tuple(COST_KINDS), search=True)
    #: jtln_dynamic: C is recomputed from the current network's features every this share of a target epoch (at most one,
    #: so that every run recomputes it at least once; tox -e bench: a dynamic run's step against a joint step).
    cost_every: float = hparam(0.5, low=0, high=1, low_open=True, search=Searched("log", 0.1, 1.0))
    #: jtln_dynamic: the weight of the previous C in each update, C <- m C + (1 - m) C_new (0: no smoothing; at most 0.99:
    #: with 1, C would never move and the method would be fixed-cost JTLN under another name).
    cost_momentum: float = hparam(0.0, low=0, high=0.99, search=Searched("uniform", 0.0, 0.9))
    #: jtln_learned_cost: the learning rate of the cost matrix (0: C stays the initial cost, exactly fixed-cost JTLN).
    #: Searched from a barely moving C to one that moves by a tenth of its range within an epoch.
    lr_cost: float = hparam(0.01, low=0, search=Searched("log", 1e-3, 0.1))
    #: jtln_learned_cost: rho of the pull rho * ||C - C_0||^2 toward the initial cost.  Without it the OT loss alone
    #: drives every entry that carries mass toward 0 (its gradient in C is the plan, which is >= 0): a collapse.
    #: Searched from weak to strong; a configuration whose pull step is unstable is refused
    #: (jtln.methods.JTLNLearnedCost.stable states the bound).
    cost_pull: float = hparam(1.0, low=0, search=Searched("log", 0.1, 10.0))
    #: co_tuning: lambda of You et al. (2020), the weight of the source head's cross-entropy against p(y_s | y_t);
    #: searched from a tenth to ten times the target term.
    lambda_co: float = hparam(1.0, low=0, search=Searched("log", 0.1, 10.0))

    def to_dict(self):
        return asdict(self)


DEFAULTS = HParams()


def _declared(key):
    return {f.name: f.metadata[key] for f in fields(HParams) if f.metadata[key] is not None}


#: the search distribution of each searched hyper-parameter (its reason is beside its field in :class:`HParams`)
SEARCH_SPACE = _declared("search")
#: the values a categorical hyper-parameter may take
CHOICES = _declared("choices")


def check_overrides(overrides, where="hparams"):
    """Raise ValueError for an unknown name, a wrong type or a value out of range among ``overrides``."""
    from jtln.config import check_range, check_value

    known = {f.name: f for f in fields(HParams)}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown hyper-parameter {key!r} in {where}; known: {sorted(known)}")
        check_value(value, known[key].type, f"{where}.{key}")
        declared = known[key].metadata
        check_range(value, f"{where}.{key}", declared["low"], declared["high"], declared["low_open"])
        if declared["choices"] is not None and value not in declared["choices"]:
            raise ValueError(f"{where}.{key} must be one of {declared['choices']}, got {value!r}")


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
    space = {name: SEARCH_SPACE[name].optuna() for name in sorted(names)}
    if not space:
        return {}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return dict(study.ask(space).params)
