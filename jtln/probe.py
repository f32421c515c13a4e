"""The linear probe: multinomial logistic regression on frozen pretrained penultimate features (scikit-learn).

It is the reference row "Linear probe" (what a user gets without fine-tuning)
and the starting point of every fine-tuning method: both heads are
initialised from a probe before fine-tuning (LP-FT, Kumar et al., ICLR 2022),
so that fine-tuning starts where the probe ends instead of from random heads.

Features are standardised with the training set's mean and standard
deviation, and the scaling is folded back into the returned weights, so the
head applies to raw features: :math:`W((x-\\mu)/\\sigma) + b = (W/\\sigma)x + (b - W\\mu/\\sigma)`.
"""

from dataclasses import dataclass

import numpy as np
import torch

#: a feature whose standard deviation is below this share of the features' largest magnitude counts as constant
CONSTANT_BELOW = 1e-6
#: the L2 strengths tried (scikit-learn's C, the inverse of the penalty), chosen on validation cross-entropy
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass(frozen=True)
class Probe:
    """A linear classifier on raw features: ``logits = x @ weight.T + bias``; ``C``, and the validation scores of its selection."""

    weight: torch.Tensor  # [L, D]
    bias: torch.Tensor  # [L]
    C: float
    val_accuracy: float = None
    val_loss: float = None


class _Standardised:
    """Training features standardised once; :meth:`fit` fits one ``C``, warm-started from the previous fit's solution."""

    def __init__(self, X, y, n_classes):
        from sklearn.linear_model import LogisticRegression

        X, self.y = np.asarray(X, np.float64), np.asarray(y)
        missing = sorted(set(range(n_classes)) - set(self.y.tolist()))
        if missing:
            raise ValueError(f"the probe needs training images of every class; classes {missing} have none")
        self.mu, sigma = X.mean(0), X.std(0)
        # constant features carry nothing: leave them unscaled; a spread at float32 rounding level is constant too (scaled up,
        # it would give the probe weights of 1e4 and more, and the network's heads infinite logits)
        self.sigma = np.where(sigma > CONSTANT_BELOW * max(float(np.abs(X).max()), 1e-30), sigma, 1.0)
        self.X = (X - self.mu) / self.sigma
        self.n_classes = n_classes
        self.clf = LogisticRegression(max_iter=1000, warm_start=True)

    def fit(self, C):
        self.clf.set_params(C=C).fit(self.X, self.y)
        W, b = self.clf.coef_, self.clf.intercept_
        if self.n_classes == 2:  # scikit-learn keeps one row for two classes: logit of class 1 minus that of class 0
            W, b = np.stack([-W[0] / 2, W[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
        W = W / self.sigma
        return Probe(torch.from_numpy(W).float(), torch.from_numpy(b - W @ self.mu).float(), float(C))


def scores(probe, X, y):
    """``(accuracy, cross_entropy)`` of ``probe`` on ``(X, y)``, as :func:`jtln.train.validation` measures a network."""
    logits = torch.as_tensor(X, dtype=torch.float32) @ probe.weight.T + probe.bias
    y = torch.as_tensor(y)
    return float((logits.argmax(1) == y).float().mean()), float(torch.nn.functional.cross_entropy(logits, y))


def fit_probe(X_train, y_train, X_val, y_val, n_classes, Cs=PROBE_CS):
    """The probe whose ``C`` (among ``Cs``) has the lowest validation cross-entropy; ties go to the smaller ``C``.

    The same selection rule as the fine-tuning runs' (:mod:`jtln.train`).
    """
    if len(y_val) == 0:
        raise ValueError("the probe's L2 strength is chosen on a validation split, and it is empty")
    data, best = _Standardised(X_train, y_train, n_classes), None
    for C in sorted(Cs):  # increasing C: each fit starts from the last one's solution
        probe = data.fit(C)
        accuracy, cross_entropy = scores(probe, X_val, y_val)
        if best is None or cross_entropy < best.val_loss:
            best = Probe(probe.weight, probe.bias, probe.C, accuracy, cross_entropy)
    return best


def fit_with(X, y, n_classes, C):
    """A probe with a given ``C`` (the source head's, fitted with the target probe's selected strength)."""
    return _Standardised(X, y, n_classes).fit(C)
