r"""The five methods of Table 2, three beyond the paper, and the linear probe as a reference row, registered by name.

Each method has DomainBed's small interface: ``phases(n_t, n_s)`` says what
a training run consists of, ``loss(batch_t, batch_s)`` returns the objective
of one step and its parts (detached 0-d tensors, which :mod:`jtln.train`
reads once per epoch: a step itself never waits for the device),
``predict(z)`` the target logits.  Hooks with
defaults that do nothing: ``start(data)`` before the first step (the run's
:class:`jtln.train.RunData`), ``after_epoch(epoch)`` after each target epoch,
``param_groups()`` what the optimiser trains, ``summary()`` what the record
keeps of the method itself.

Table 2's blocks (:data:`BLOCKS`): the paper's five methods; "beyond the
paper" (the dynamic and the learned cost of the paper's Sec. 5, and
Co-Tuning, the closest later peer); references outside the paper.

JTLN's objective is Eq. 4 with its first term read as the target
cross-entropy of Eq. 2 (the paper prints the source term twice):

.. math:: \frac{1}{n_t}\sum \ell_{ce}(h_t(x^t), y^t)
        + \frac{\lambda_s}{n_s}\sum \ell_{ce}(h_s(x^s), y^s)
        + \frac{\lambda_{ot}}{n_t}\sum \ell_{ot}(h_s(x^t), h_t(x^t))

each sum estimated on a target batch and a source batch.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jtln.costs import class_cost_matrix
from jtln.hparams import DEFAULTS
from jtln.models import evaluating
from jtln.ot import OTLoss, ot_loss_with_logits
from jtln.sinkhorn import READS

METHODS = {}
#: Table 2's blocks, in row order: the paper's methods, the methods beyond the paper, references outside the paper
BLOCKS = ("paper", "beyond", "reference")
#: what every fine-tuning method searches (lr_fc only where the backbone has fc6-fc7, see jtln.models)
FINE_TUNING = ("lr_backbone", "lr_fc", "lr_head", "weight_decay", "epochs")
#: what every JTLN variant searches besides fine-tuning: Eq. 4's weights and Algorithm 1's lambda
JTLN_TERMS = ("lambda_s", "lambda_ot", "lam")


def register(name: str, *, display: str, order: int, searches: tuple = (), cost: str | None = None, block: str = "paper"):
    """Register a method class under ``name`` with what tables and the sweep need to know of it.

    ``display``: its name in the tables (the paper's, for the paper's methods);
    ``order``: its row within its block; ``searches``: the hyper-parameters of
    :data:`jtln.hparams.SEARCH_SPACE` it is tuned on; ``cost``: the kind of
    cost matrix it needs ("mmd", "ot", "searched" for ``hp.cost_kind``, or
    None); ``block``: its block of Table 2 (:data:`BLOCKS`).
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")

    def decorator(cls):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name, cls.display, cls.order, cls.searches, cls.cost = name, display, order, tuple(searches), cost
        cls.block, cls.paper = block, block == "paper"
        cls.trains = bool(cls.phases(DEFAULTS, 2, 2))  # a method with no phase is an evaluation: no search, no epochs
        METHODS[name] = cls
        return cls

    return decorator


def method_order(names):
    """``names`` in the tables' row order: block by block (:data:`BLOCKS`), by ``order`` within a block."""
    return sorted(names, key=lambda m: (BLOCKS.index(METHODS[m].block), METHODS[m].order))


def display_name(name):
    return METHODS[name].display


def cost_options(hp):
    """The options of :func:`jtln.costs.class_cost_matrix` that ``hp`` sets."""
    return {"estimator": hp.mmd_estimator, "kernel_weights": hp.mmd_kernel_weights, "normalize": hp.cost_normalize,
            "samples_per_class": hp.cost_samples_per_class}


@dataclass(frozen=True)
class Phase:
    """``steps`` optimisation steps drawing target batches and/or source batches."""

    steps: int
    target: bool
    source: bool


class Method:
    name = display = "method"
    order, searches, cost, block, paper = 0, (), None, "paper", True
    #: the field of :meth:`summary` (and so of a record) holding the cost matrix the method ends with, if it moves C, and
    #: what the tables call that matrix
    final_cost = final_cost_label = None
    #: whether the method trains: whether it has phases (set by :func:`register`); one that does not needs no search and no
    #: epoch count
    trains = True
    #: host reads of one training step besides the OT loss's Sinkhorn loop (:data:`jtln.sinkhorn.READS`); tested per method
    step_reads = 0

    def __init__(self, network, hp, C=None):
        self.network, self.hp = network, hp

    @classmethod
    def cost_spec(cls, hp):
        """The cost matrix this method starts from, as ``(kind, kernel_weights)`` (None for OT), or None if it needs none."""
        if cls.cost is None:
            return None
        kind = hp.cost_kind if cls.cost == "searched" else cls.cost
        return (kind, hp.mmd_kernel_weights if kind == "mmd" else None)

    @classmethod
    def phases(cls, hp, n_t, n_s):
        """The run's phases under ``hp`` with ``n_t`` target and ``n_s`` source training images (known before any work)."""
        raise NotImplementedError

    def loss(self, batch_t, batch_s):
        raise NotImplementedError

    def predict(self, z):
        return self.network(z)[1]

    def start(self, data):
        """Called once before the first step with the run's :class:`jtln.train.RunData`."""

    @classmethod
    def refuses(cls, rates):
        """Why the method cannot give a meaningful result with the layer groups' learning rates ``rates`` (``{name: lr}``,
        the heads' left out), or None; checked by a profile where its ``[hparams]`` fix them all, and at a run's start."""
        return None

    def after_step(self, step):
        """Called after each optimiser step (``step``: 1-based within the phase)."""

    def after_epoch(self, epoch):
        """Called after each target epoch (1-based), before it is validated."""

    def param_groups(self):
        """The optimiser's parameter groups: the network's layer groups with their learning rates."""
        return self.network.param_groups(self.hp)

    def summary(self):
        """What a record keeps of the method itself (a learned cost, a relationship), as JSON-ready values."""
        return {}

    @classmethod
    def table_note(cls, records):
        """What Table 2's caption says of this method's runs (``records``: its records), or None."""
        return None

    @staticmethod
    def _epochs(n, batch_size, epochs):
        return epochs * math.ceil(n / batch_size)


@register("target_only", display="Finetuning on target", order=0, searches=FINE_TUNING)
class TargetOnly(Method):
    """Fine-tune on target training images only (Eq. 2)."""

    @classmethod
    def phases(cls, hp, n_t, n_s):
        return [Phase(cls._epochs(n_t, hp.batch_size_target, hp.epochs), target=True, source=False)]

    def loss(self, batch_t, batch_s):
        ce_t = F.cross_entropy(self.network(batch_t[0])[1], batch_t[1])
        return ce_t, {"ce_t": ce_t.detach()}


@register("consecutive", display="Consecutive finetuning on source+target", order=1,
          searches=FINE_TUNING + ("source_epochs",))
class Consecutive(TargetOnly):
    """Fine-tune on source images (Eq. 1), then continue on target training images (Eq. 2)."""

    @classmethod
    def phases(cls, hp, n_t, n_s):
        on_source = Phase(cls._epochs(n_s, hp.batch_size_source, hp.source_epochs), target=False, source=True)
        return [on_source] + super().phases(hp, n_t, n_s)

    def loss(self, batch_t, batch_s):
        if batch_t is None:
            ce_s = F.cross_entropy(self.network(batch_s[0])[0], batch_s[1])
            return ce_s, {"ce_s": ce_s.detach()}
        return super().loss(batch_t, batch_s)


@register("joint", display="Joint finetuning on source+target", order=2, searches=FINE_TUNING + ("lambda_s",))
class Joint(Method):
    """Fine-tune jointly on source and target (Eq. 2 + lambda_s Eq. 1), both heads, no OT term."""

    @classmethod
    def phases(cls, hp, n_t, n_s):
        return [Phase(cls._epochs(n_t, hp.batch_size_target, hp.epochs), target=True, source=True)]

    def loss(self, batch_t, batch_s):
        # one forward pass over the concatenated batch: shared features, two heads
        z = torch.cat([batch_t[0], batch_s[0]])
        f = self.network.features(z)
        logits_s, logits_t = self.network.head_s(f), self.network.head_t(f)  # as self.network(z), keeping f
        n_t = len(batch_t[0])
        logits_t_on_target = logits_t[:n_t]  # one slice for both terms: one autograd node, one gradient buffer
        ce_t = F.cross_entropy(logits_t_on_target, batch_t[1])
        ce_s = F.cross_entropy(logits_s[n_t:], batch_s[1])
        parts = {"ce_t": ce_t.detach(), "ce_s": ce_s.detach()}
        total = ce_t + self.hp.lambda_s * ce_s
        ot = self.ot_term(logits_s[:n_t], logits_t_on_target)
        if ot is not None:
            total = torch.add(total, ot, alpha=self.hp.lambda_ot)
            parts["ot"] = ot.detach()
        return total, parts

    def ot_term(self, logits_s_on_target, logits_t_on_target):
        """The OT term of Eq. 4 before its weight ``lambda_ot``; joint fine-tuning has none."""
        return None


class JTLNMethod(Joint):
    """Joint fine-tuning + lambda_ot times the OT loss (Eq. 3) between the heads on target images."""

    def __init__(self, network, hp, C=None):
        super().__init__(network, hp, C)
        if C is None:
            raise ValueError(f"{self.name} needs a cost matrix C [L_s, L_t]")
        # softmax folded into the loss's own backward; deferred: on a GPU the step reads nothing (jtln.train reads the losses
        # once per epoch and stops at a NaN one, which is how a failed Sinkhorn shows there)
        self.ot_loss = OTLoss(C, hp.lam, logits=True, deferred=True)

    def ot_term(self, logits_s_on_target, logits_t_on_target):
        """Eq. 3: the mean OT loss between the heads on the target batch; None with ``lambda_ot = 0`` (exactly joint fine-tuning)."""
        if self.hp.lambda_ot == 0:
            return None
        return self.transport_loss(logits_s_on_target, logits_t_on_target)

    def transport_loss(self, logits_s_on_target, logits_t_on_target):
        """The mean OT loss (Algorithm 1 and Eq. 11) with the method's cost matrix, in float32 at least (bf16 logits too)."""
        return self.ot_loss(logits_s_on_target.float(), logits_t_on_target.float())


@register("jtln_mmd", display="JTLN (fc7MKMMD)", order=3, cost="mmd",
          searches=FINE_TUNING + JTLN_TERMS + ("mmd_kernel_weights",))
class JTLNMMD(JTLNMethod):
    """JTLN (fc7MKMMD): cost matrix by MK-MMD (Eq. 14) between pretrained penultimate features; Eq. 13's weights searched."""


@register("jtln_ot", display="JTLN (fc7OT)", order=4, cost="ot", searches=FINE_TUNING + JTLN_TERMS)
class JTLNOT(JTLNMethod):
    """JTLN (fc7OT): cost matrix by entropic OT (Eq. 16) between the same features."""


@register("jtln_dynamic", display="JTLN, dynamic cost (beyond the paper)", order=0, cost="searched", block="beyond",
          searches=FINE_TUNING + JTLN_TERMS + ("cost_kind", "cost_every", "cost_momentum"))
class JTLNDynamic(JTLNMethod):
    r"""JTLN whose cost matrix follows the network: the paper's Sec. 5 future work, read as recomputing C.

    C starts as the fixed-cost JTLN's (Sec. 3.4 on pretrained features, of
    kind ``hp.cost_kind``).  Every ``hp.cost_every`` target epochs — a share
    of one, so that every run recomputes C at least once, however few epochs
    its search or refit trains: every ``max(1, round(cost_every * steps per
    epoch))`` steps — it is recomputed by the same Sec. 3.4 formula from the
    network's *current* penultimate features of every target training image
    and every source image of the run, computed in evaluation mode (no
    dropout): the same images each time, whatever order the batches took.
    It is then smoothed, :math:`C \leftarrow m C + (1 - m) C_{new}` with
    ``m = hp.cost_momentum`` (below 1: C moves).  The recomputation runs in
    float32 with the median heuristic on at most :attr:`MEDIAN_SAMPLES`
    samples, to stay a small part of a run (``tox -e bench``).  The record
    keeps ``cost_updates``, the recomputations before the epoch kept, and
    the C of that epoch.
    """

    #: the recomputation's median heuristic reads at most this many samples (the prepared costs: jtln.costs.MEDIAN_SAMPLES)
    MEDIAN_SAMPLES = 300
    final_cost, final_cost_label = "final_cost_matrix", "dynamic"

    def start(self, data):
        C = self.ot_loss.C
        self.updates = 0
        refused = self.refuses({g["name"]: g["lr"] for g in self.network.param_groups(self.hp) if g["name"] != "lr_head"})
        if refused:
            raise ValueError(refused)
        epoch_steps = math.ceil(len(data.y["target_train"]) / self.hp.batch_size_target)
        self.period = max(1, min(epoch_steps, round(self.hp.cost_every * epoch_steps)))
        self.images = {side: (data.Z[split], data.y[split]) for side, split in (("s", "source"), ("t", "target_train"))}
        needed = 4 if self.hp.cost_kind == "mmd" and self.hp.mmd_kernel_weights == "optimal" else 2
        for (side, (_, y)), L in zip(self.images.items(), C.shape):
            counts = (y[:, None] == torch.arange(L, device=y.device)).sum(0)  # per class, with no data-dependent shape
            if int(counts.min()) < needed:
                raise ValueError(f"jtln_dynamic: the {side} images hold fewer than {needed} images of some class ({counts.tolist()}): "
                                 f"a cost of kind {self.hp.cost_kind!r} cannot be recomputed from them")

    def _current_features(self, Z, batch_size=512):
        device = self.ot_loss.C.device
        with evaluating(self.network):
            return torch.cat([self.network.features(z.to(device)) for z in Z.split(batch_size)])

    @classmethod
    def refuses(cls, rates):
        """With every trained layer below the heads at learning rate 0, the features C is recomputed from never move."""
        if rates and all(lr == 0 for lr in rates.values()):
            return (f"jtln_dynamic: every trained layer below the heads has learning rate 0 ({', '.join(rates)}), so the "
                    "features C is recomputed from never move, nor does C: it would be fixed-cost JTLN under another name; give "
                    "one of them a positive rate, or run jtln_mmd / jtln_ot")
        return None

    def after_step(self, step):
        if step % self.period:
            return
        C = self.ot_loss.C
        (Z_s, y_s), (Z_t, y_t) = self.images["s"], self.images["t"]
        C_new = class_cost_matrix(self.hp.cost_kind, self._current_features(Z_s), y_s.to(C.device), self._current_features(Z_t),
                                  y_t.to(C.device), C.shape[0], C.shape[1], **cost_options(self.hp), dtype=torch.float32,
                                  median_samples=self.MEDIAN_SAMPLES).to(C.dtype)
        with torch.no_grad():  # in place: OTLoss rebuilds its kernel when C's version changes
            C.mul_(self.hp.cost_momentum).add_(C_new, alpha=1.0 - self.hp.cost_momentum)
        self.updates += 1

    def summary(self):
        return {"cost_updates": self.updates, "final_cost_matrix": self.ot_loss.C.tolist()}

    @classmethod
    def table_note(cls, records):
        """How often C was recomputed per run, up to its kept epoch."""
        updates = sorted(r["cost_updates"] for r in records if "cost_updates" in r)
        if not updates:
            return None
        return f"{cls.display}: C recomputed {updates[0]} to {updates[-1]} times per run (median {updates[len(updates) // 2]})"


@register("jtln_learned_cost", display="JTLN, learned cost (beyond the paper)", order=1, cost="searched", block="beyond",
          searches=FINE_TUNING + JTLN_TERMS + ("cost_kind", "lr_cost", "cost_pull"))
class JTLNLearnedCost(JTLNMethod):
    r"""JTLN with C a parameter learned end to end: the paper's Sec. 5 future work, read as gradient descent on C.

    :math:`C = \max(C_0 + \Delta, 0)` with :math:`C_0` the Sec. 3.4 cost of
    kind ``hp.cost_kind`` and :math:`\Delta` (initially 0) trained with its own
    learning rate ``hp.lr_cost`` on Eq. 4 plus the pull
    :math:`\rho\lVert C - C_0\rVert_F^2` (``rho = hp.cost_pull``).  The OT
    loss's gradient in C is the plan (:mod:`jtln.ot`), which is >= 0, so
    without the pull every entry carrying mass would only fall: a collapse of
    C toward 0 that makes the OT term vanish.  Costs stay >= 0.  With
    ``lr_cost = 0``, C never moves and this is fixed-cost JTLN exactly.
    """

    final_cost, final_cost_label = "learned_cost_matrix", "learned"
    #: C moves every step, so its Gibbs kernel is built every step: one read of C's extremes (jtln.sinkhorn.READS)
    step_reads = READS["kernel"]

    @staticmethod
    def stable(hp):
        """Whether SGD keeps the pull stable: heavy-ball SGD with momentum m on :math:`\\rho\\lVert\\Delta\\rVert^2`
        (curvature :math:`2\\rho`) converges only for :math:`\\mathrm{lr}\\cdot 2\\rho < 2(1 + m)`, that is
        ``lr_cost * cost_pull < 1 + momentum``."""
        return hp.lr_cost * hp.cost_pull < 1 + hp.momentum

    def __init__(self, network, hp, C=None):
        if not self.stable(hp):
            raise ValueError(f"lr_cost * cost_pull = {hp.lr_cost * hp.cost_pull:g} makes the pull toward the initial cost diverge "
                             f"(SGD with momentum {hp.momentum:g} needs it below {1 + hp.momentum:g}): lower lr_cost or cost_pull")
        super().__init__(network, hp, C)
        self.C0 = self.ot_loss.C
        self.delta = nn.Parameter(torch.zeros_like(self.C0))

    @property
    def C(self):
        return (self.C0 + self.delta).clamp_min(0.0)

    def transport_loss(self, logits_s_on_target, logits_t_on_target):
        logits_s, logits_t = logits_s_on_target.float(), logits_t_on_target.float()
        return ot_loss_with_logits(logits_s, logits_t, self.C.to(logits_t.dtype), self.hp.lam, reduction="mean", deferred=True)

    def loss(self, batch_t, batch_s):
        total, parts = super().loss(batch_t, batch_s)
        pull = self.hp.cost_pull * (self.C - self.C0).square().sum()
        parts["pull"] = pull.detach()
        return total + pull, parts

    def param_groups(self):
        return super().param_groups() + [{"params": [self.delta], "lr": self.hp.lr_cost, "weight_decay": 0.0, "name": "lr_cost"}]

    def summary(self):
        return {"learned_cost_matrix": self.C.detach().cpu().tolist()}


@register("co_tuning", display="Co-Tuning (You et al. 2020; beyond the paper)", order=2, block="beyond",
          searches=FINE_TUNING + ("lambda_co",))
class CoTuning(Method):
    r"""Co-Tuning (You, Kou, Jiang, Wang & Long, NeurIPS 2020), on target images only.

    Before fine-tuning, the category relationship :math:`p(y_s \mid y_t)` is
    estimated from the source head's calibrated predictions on the target
    training images (:mod:`jtln.relationship`, their direct approach, Eq. 4;
    the temperature fitted on the run's source images, the source head's own
    training images, since this setting has no held-out source split).  Then
    both heads are fine-tuned on target batches with their Eq. 5:

    .. math:: \frac1{n_t}\sum \ell_{ce}(h_t(x^t), y^t)
              + \lambda\,\frac1{n_t}\sum \ell_{ce}(h_s(x^t), p(y_s \mid y^t))

    the second term the cross-entropy of the source head against the soft
    labels of the relationship (``lambda = hp.lambda_co``).
    """

    @classmethod
    def phases(cls, hp, n_t, n_s):
        return [Phase(cls._epochs(n_t, hp.batch_size_target, hp.epochs), target=True, source=False)]

    def start(self, data):
        from jtln.relationship import calibrate_temperature, relationship

        device = next(self.network.parameters()).device
        with evaluating(self.network):
            logits_source = torch.cat([self.network(z.to(device))[0] for z in data.Z["source"].split(512)])
            logits_target = torch.cat([self.network(z.to(device))[0] for z in data.Z["target_train"].split(512)])
        self.temperature = calibrate_temperature(logits_source, data.y["source"])
        probabilities = (logits_target.double() / self.temperature).softmax(1)
        self.R = relationship(probabilities, data.y["target_train"].to(device), self.network.head_t.out_features)
        self.R = self.R.to(logits_target.dtype)

    def loss(self, batch_t, batch_s):
        logits_s, logits_t = self.network(batch_t[0])
        ce_t = F.cross_entropy(logits_t, batch_t[1])
        ce_co = F.cross_entropy(logits_s, self.R[batch_t[1]])  # soft labels: a row of p(y_s | y_t) per image
        return ce_t + self.hp.lambda_co * ce_co, {"ce_t": ce_t.detach(), "ce_co": ce_co.detach()}

    def summary(self):
        return {"relationship": self.R.cpu().tolist(), "temperature": self.temperature}


@register("linear_probe", display="Linear probe (outside the paper)", order=0, block="reference")
class LinearProbe(Method):
    """Logistic regression on the frozen pretrained penultimate features: what a user gets without fine-tuning.

    Every method's heads start from this probe (:func:`jtln.probe.fit_probe`,
    its L2 strength chosen on the validation split); this method stops there
    and trains nothing, so its network predicts exactly as the probe.
    """

    @classmethod
    def phases(cls, hp, n_t, n_s):
        return []
