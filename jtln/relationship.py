r"""Co-Tuning's category relationship :math:`p(y_s \mid y_t)`, by its direct approach (You et al., NeurIPS 2020).

You, Kou, Jiang, Wang & Long, *Co-Tuning for Transfer Learning*, NeurIPS 2020,
Sec. 3.2: the pretrained source classifier :math:`f_0`, calibrated, predicts
:math:`p(y_s \mid x)` for each target training image; averaging these over the
images of each target class estimates

.. math:: p(y_s \mid y_t = j) \approx \frac{1}{|\{i : y^t_i = j\}|}\sum_{i : y^t_i = j} f_0(x^t_i)

(their Eq. 4, the "direct approach").  Calibration is temperature scaling
(Guo et al., ICML 2017): one temperature :math:`T` minimising the negative
log-likelihood of ``softmax(logits / T)`` on labelled source images.
"""

import math

import torch
import torch.nn.functional as F


def calibrate_temperature(logits, labels, bounds=(0.05, 20.0)):
    """The temperature ``T`` that minimises the mean NLL of ``softmax(logits / T)`` against ``labels`` (scipy, bounded in log T)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        raise ValueError("calibrating a temperature needs labelled samples, got none")
    logits, labels = logits.detach().double().cpu(), torch.as_tensor(labels).cpu()

    def nll(log_t):
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    result = minimize_scalar(nll, bounds=tuple(math.log(b) for b in bounds), method="bounded", options={"xatol": 1e-6})
    return math.exp(result.x)


def relationship(source_probabilities, target_labels, L_t):
    r""":math:`p(y_s \mid y_t)` [L_t, L_s]: the mean of the source-class probabilities over each target class's images.

    Every target class needs at least one image (a row with none would be undefined).
    """
    y = torch.as_tensor(target_labels, device=source_probabilities.device)
    # counted against an image-by-class indicator: no shape that depends on the labels' values
    counts = (y[:, None] == torch.arange(L_t, device=y.device)).sum(0)
    if not bool((counts > 0).all()):
        empty = [c for c, n in enumerate(counts.tolist()) if n == 0]
        raise ValueError(f"target classes {empty} have no images to estimate p(y_s | y_t) from")
    sums = torch.zeros((L_t, source_probabilities.shape[1]), dtype=source_probabilities.dtype, device=y.device)
    sums.index_add_(0, y, source_probabilities)
    return sums / counts[:, None].to(sums.dtype)
