"""Literal NumPy implementations of the paper's equations: the yardstick.

Plain loop-friendly NumPy and SciPy, one function per equation, no torch.
``jtln`` (the fast PyTorch path) is checked against these in ``tests/``.

| paper                       | here                                     |
|-----------------------------|------------------------------------------|
| Algorithm 1 (OT loss)       | :func:`reference.algorithm1.ot_loss`     |
| Eq. 11 (its gradient)       | :func:`reference.algorithm1.ot_loss_grad`|
| Eq. 12 (MK-MMD, unbiased)   | :func:`reference.mmd.mk_mmd2_unbiased`   |
| Eq. 14 (MK-MMD, linear)     | :func:`reference.mmd.mk_mmd2_linear`     |
| Eq. 16 (OT between classes) | :func:`reference.class_ot.class_ot_distance` |
"""
