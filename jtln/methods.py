"""The five methods of Table 2, and the linear probe as a reference row, registered by name.

Each method has DomainBed's small interface: ``phases(n_t, n_s)`` says what
a training run consists of, ``loss(batch_t, batch_s)`` returns the objective
of one step and its parts, ``predict(z)`` the target logits.

JTLN's objective is Eq. 4 with its first term read as the target
cross-entropy of Eq. 2 (the paper prints the source term twice):

.. math:: \\frac{1}{n_t}\\sum \\ell_{ce}(h_t(x^t), y^t)
        + \\frac{\\lambda_s}{n_s}\\sum \\ell_{ce}(h_s(x^s), y^s)
        + \\frac{\\lambda_{ot}}{n_t}\\sum \\ell_{ot}(h_s(x^t), h_t(x^t))

each sum estimated on a target batch and a source batch.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jtln.ot import OTLoss

METHODS = {}
#: what every fine-tuning method searches (lr_fc only where the backbone has fc6-fc7, see jtln.models)
FINE_TUNING = ("lr_backbone", "lr_fc", "lr_head", "weight_decay", "epochs")


def register(name, *, display, order, searches=(), cost=None, paper=True):
    """Register a method class under ``name`` with what tables and the sweep need to know of it.

    ``display``: its name in the tables (the paper's, for the paper's methods);
    ``order``: its row; ``searches``: the hyper-parameters of
    :data:`jtln.hparams.SEARCH_SPACE` it is tuned on; ``cost``: the cost matrix
    it needs ("mmd", "ot" or None); ``paper``: one of the paper's Table 2
    methods, or a reference row outside the paper.
    """

    def decorator(cls):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name, cls.display, cls.order, cls.searches, cls.cost, cls.paper = name, display, order, tuple(searches), cost, paper
        METHODS[name] = cls
        return cls

    return decorator


def method_order(names):
    """``names`` in the tables' row order: the paper's methods first, then the others."""
    return sorted(names, key=lambda m: (not METHODS[m].paper, METHODS[m].order))


def display_name(name):
    return METHODS[name].display


@dataclass(frozen=True)
class Phase:
    """``steps`` optimisation steps drawing target batches and/or source batches."""

    steps: int
    target: bool
    source: bool


class Method:
    name = display = "method"
    order, searches, cost, paper = 0, (), None, True

    def __init__(self, network, hp, C=None):
        self.network, self.hp = network, hp

    def phases(self, n_t, n_s):
        raise NotImplementedError

    def loss(self, batch_t, batch_s):
        raise NotImplementedError

    def predict(self, z):
        return self.network(z)[1]

    def _epochs(self, n, batch_size, epochs):
        return epochs * math.ceil(n / batch_size)


@register("target_only", display="Finetuning on target", order=0, searches=FINE_TUNING)
class TargetOnly(Method):
    """Fine-tune on target training images only (Eq. 2)."""

    def phases(self, n_t, n_s):
        return [Phase(self._epochs(n_t, self.hp.batch_size_target, self.hp.epochs), target=True, source=False)]

    def loss(self, batch_t, batch_s):
        ce_t = F.cross_entropy(self.network(batch_t[0])[1], batch_t[1])
        return ce_t, {"ce_t": ce_t.item()}


@register("consecutive", display="Consecutive finetuning on source+target", order=1,
          searches=FINE_TUNING + ("source_epochs",))
class Consecutive(TargetOnly):
    """Fine-tune on source images (Eq. 1), then continue on target training images (Eq. 2)."""

    def phases(self, n_t, n_s):
        on_source = Phase(self._epochs(n_s, self.hp.batch_size_source, self.hp.source_epochs), target=False, source=True)
        return [on_source] + super().phases(n_t, n_s)

    def loss(self, batch_t, batch_s):
        if batch_t is None:
            ce_s = F.cross_entropy(self.network(batch_s[0])[0], batch_s[1])
            return ce_s, {"ce_s": ce_s.item()}
        return super().loss(batch_t, batch_s)


@register("joint", display="Joint finetuning on source+target", order=2, searches=FINE_TUNING + ("lambda_s",))
class Joint(Method):
    """Fine-tune jointly on source and target (Eq. 2 + lambda_s Eq. 1), both heads, no OT term."""

    def phases(self, n_t, n_s):
        return [Phase(self._epochs(n_t, self.hp.batch_size_target, self.hp.epochs), target=True, source=True)]

    def loss(self, batch_t, batch_s):
        # one forward pass over the concatenated batch: shared features, two heads
        z = torch.cat([batch_t[0], batch_s[0]])
        logits_s, logits_t = self.network(z)
        n_t = len(batch_t[0])
        logits_t_on_target = logits_t[:n_t]  # one slice for both terms: one autograd node, one gradient buffer
        ce_t = F.cross_entropy(logits_t_on_target, batch_t[1])
        ce_s = F.cross_entropy(logits_s[n_t:], batch_s[1])
        parts = {"ce_t": ce_t.item(), "ce_s": ce_s.item()}
        total = ce_t + self.hp.lambda_s * ce_s
        extra = self.extra(logits_s[:n_t], logits_t_on_target)
        if extra is not None:
            total = torch.add(total, extra, alpha=self.hp.lambda_ot)
            parts["ot"] = extra.item()
        return total, parts

    def extra(self, logits_s_on_target, logits_t_on_target):
        return None


class JTLNMethod(Joint):
    """Joint fine-tuning + lambda_ot times the OT loss (Eq. 3) between the heads on target images."""

    def __init__(self, network, hp, C=None):
        super().__init__(network, hp, C)
        if C is None:
            raise ValueError(f"{self.name} needs a cost matrix C [L_s, L_t]")
        self.ot_loss = OTLoss(C, hp.lam, logits=True)  # softmax folded into the loss's own backward

    def extra(self, logits_s_on_target, logits_t_on_target):
        if self.hp.lambda_ot == 0:
            return None  # exactly joint fine-tuning
        return self.ot_loss(logits_s_on_target, logits_t_on_target)


@register("jtln_mmd", display="JTLN (fc7MKMMD)", order=3, cost="mmd", searches=FINE_TUNING + ("lambda_s", "lambda_ot", "lam"))
class JTLNMMD(JTLNMethod):
    """JTLN (fc7MKMMD): cost matrix by MK-MMD (Eq. 14) between pretrained penultimate features."""


@register("jtln_ot", display="JTLN (fc7OT)", order=4, cost="ot", searches=FINE_TUNING + ("lambda_s", "lambda_ot", "lam"))
class JTLNOT(JTLNMethod):
    """JTLN (fc7OT): cost matrix by entropic OT (Eq. 16) between the same features."""


@register("linear_probe", display="Linear probe (outside the paper)", order=0, paper=False)
class LinearProbe(Method):
    """Logistic regression on the frozen pretrained penultimate features: what a user gets without fine-tuning.

    Every method's heads start from this probe (:func:`jtln.probe.fit_probe`,
    its L2 strength chosen on the validation split); this method stops there
    and trains nothing, so its network predicts exactly as the probe.
    """

    def phases(self, n_t, n_s):
        return []
