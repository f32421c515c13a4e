"""The numerical core at its edges: arguments refused by name, and finite answers where the inputs are degenerate."""

import numpy as np
import pytest
import torch

from jtln.costs import median_bandwidths, mmd_cost_matrix
from jtln.ot import OTLoss, ot_loss
from jtln.sinkhorn import sinkhorn

H = torch.full((2, 2), 0.5, dtype=torch.float64)
C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)


@pytest.mark.parametrize("lam", [True, np.bool_(True), "10", 0, -1.0, float("nan"), float("inf"), None])
def test_lam_that_is_not_a_positive_real_number_is_refused_by_name(lam):
    with pytest.raises(ValueError, match="lam must be a finite positive number"):
        ot_loss(H, H, C, lam)


@pytest.mark.parametrize("lam", [np.float32(10), np.float64(10), np.int64(10), 10])
def test_lam_may_be_any_real_number_numpy_scalars_too(lam):
    torch.testing.assert_close(ot_loss(H, H, C, lam), ot_loss(H, H, C, 10.0), rtol=1e-12, atol=0)
    assert OTLoss(C, lam).lam == 10.0


@pytest.mark.parametrize("options, name", [({"max_iter": 0}, "max_iter"), ({"max_iter": -5}, "max_iter"), ({"max_iter": 2.5}, "max_iter"),
                                           ({"max_iter": True}, "max_iter"), ({"check_every": 0}, "check_every"),
                                           ({"check_every": None}, "check_every")])
def test_iteration_counts_are_refused_by_name(options, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        ot_loss(H, H, C, 10.0, **options)
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        sinkhorn(H, H, C, 10.0, **options)


def test_identical_or_constant_features_give_a_finite_cost_matrix():
    same = torch.ones(12, 4, dtype=torch.float64)
    labels = torch.arange(12) % 3
    sigmas, _ = median_bandwidths(same)
    assert torch.isfinite(sigmas).all() and (sigmas > 0).all()
    for estimator in ("linear", "unbiased"):
        cost = mmd_cost_matrix(same, labels, same, labels % 2, estimator=estimator)
        assert torch.isfinite(cost).all() and torch.equal(cost, torch.zeros(3, 2, dtype=torch.float64))
