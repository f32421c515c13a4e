"""jtln: Joint Transfer Learning Network with an Optimal Transport loss.

Reproducible companion to Lu, Chen & Saidi, *Optimal Transport for Deep Joint
Transfer Learning* (arXiv:1709.02995).  The numerical core lives in
:mod:`jtln.ot` (Algorithm 1, Eq. 11), :mod:`jtln.mmd` (Eq. 12/14) and
:mod:`jtln.costs` (Sec. 3.4 cost matrices).
"""

__version__ = "0.1.0"
