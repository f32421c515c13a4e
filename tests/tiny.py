"""The tiny ITL problem many tests train on (a fixture of ``conftest.py``), and the hyper-parameters they use."""

import copy
from typing import NamedTuple

from jtln.cache import cached_features
from jtln.costs import class_cost_matrix
from jtln.data import draw, restrict
from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays
from jtln.hparams import resolve
from jtln.methods import METHODS, cost_options
from jtln.models import efficientnet_lite0
from jtln.probe import fit_probe, fit_with
from jtln.train import RunData

HP = resolve({"epochs": 1, "source_epochs": 1, "batch_size_target": 8, "batch_size_source": 8, "cost_samples_per_class": 6})


def cost_kind(method):
    """The kind of the prepared cost matrix that ``method`` starts from under :data:`HP` (uniform MK-MMD weights), or None."""
    spec = METHODS[method].cost_spec(HP)
    return spec and spec[0]


def tiny_backbone():
    return efficientnet_lite0(weights=None, image_size=32)


class Tiny(NamedTuple):
    """A tiny ITL problem as the sweep prepares it."""

    itl: object
    draw: object
    backbone: object
    cached: object
    costs: dict  # {"mmd", "ot"}: cost matrices of the draw's training images
    data: object  # the draw's run data, with its test split
    probes: tuple  # the target and source heads' probes

    def factory(self):
        """A copy of the backbone: the same "pretrained" weights every run."""
        return copy.deepcopy(self.backbone)


def tiny_problem():
    """A :class:`Tiny` problem: Footwear on generated images, 8 labelled images per class."""
    import torch

    full = fashion_mnist_itl("Footwear", arrays=synthetic_arrays(10, 3))
    itl, (d,) = restrict(full, [draw(full, 8, seed=0, validation_fraction=0.25, source_per_class=4)])
    torch.manual_seed(0)
    backbone = tiny_backbone()
    cached = cached_features(backbone, itl, "fake-fashion")
    data = RunData.of(cached, d, test=True)
    costs = {kind: class_cost_matrix(kind, data.P["source"], data.y["source"], data.P["target_train"], data.y["target_train"],
                                     itl.L_s, itl.L_t, **cost_options(HP)) for kind in ("mmd", "ot")}
    probe_t = fit_probe(data.P["target_train"], data.y["target_train"], itl.L_t)
    probes = (probe_t, fit_with(data.P["source"], data.y["source"], itl.L_s, probe_t.C, probe_t.scaling))
    return Tiny(itl, d, backbone, cached, costs, data, probes)
