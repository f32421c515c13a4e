"""jtln: Joint Transfer Learning Network with an Optimal Transport loss.

Reproducible companion to Lu, Chen & Saidi, *Optimal Transport for Deep Joint
Transfer Learning* (arXiv:1709.02995).  What a user calls is importable from
here, loaded on first use (``import jtln`` alone imports no PyTorch):

* the OT loss: :class:`OTLoss` (Eq. 3 as a module), :func:`ot_loss` on
  histograms, :func:`ot_loss_with_logits` on the heads' logits (Algorithm 1,
  Eq. 11 as the gradient; :mod:`jtln.ot`);
* the cost matrices of Sec. 3.4: :func:`mmd_cost_matrix` (Eq. 12/14),
  :func:`ot_cost_matrix` (Eq. 16), :func:`class_cost_matrix`,
  :func:`normalize_cost` (:mod:`jtln.costs`);
* the two-headed network :class:`JTLN` and its backbones
  (:func:`build_backbone`, :data:`BACKBONES`; :mod:`jtln.models`);
* the registered methods of Table 2 and beyond (:data:`METHODS`,
  :func:`register`; :mod:`jtln.methods`), and what one training run sees
  (:class:`RunData`; the run itself is :func:`jtln.train.train`, a
  function that shares its module's name, so it is not exported here).
"""

import importlib

__version__ = "0.1.0"

#: each public name and the module that defines it
_EXPORTS = {
    "OTLoss": "jtln.ot", "ot_loss": "jtln.ot", "ot_loss_with_logits": "jtln.ot",
    "mmd_cost_matrix": "jtln.costs", "ot_cost_matrix": "jtln.costs", "class_cost_matrix": "jtln.costs",
    "normalize_cost": "jtln.costs",
    "JTLN": "jtln.models", "build_backbone": "jtln.models", "BACKBONES": "jtln.models",
    "METHODS": "jtln.methods", "register": "jtln.methods",
    "RunData": "jtln.train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # loaded once
        return value
    raise AttributeError(f"module 'jtln' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
