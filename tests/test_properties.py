"""Property-based tests (hypothesis) of the OT loss: for random shapes, dtypes, lam and histograms (with zeros, peaked),
the loss is finite and equals the reference, the plan's marginals hold, and the gradient is that of the regularised
objective (central finite differences) — or the call raises a named error."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jtln.ot import ot_loss, solve
from jtln.sinkhorn import transport_plan
from reference.algorithm1 import ot_loss as reference_loss
from reference.algorithm1 import regularised_optimum
from tests.test_algorithm1 import directional_fd

#: the same examples on every run (derandomised, no database of past failures)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def histograms(draw, L, kind):
    """A histogram of ``L`` bins: spread out, with zeros, or peaked on one bin."""
    weights = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=L, max_size=L)))
    if kind == "zeros" and L > 1:
        zeros = draw(st.lists(st.booleans(), min_size=L, max_size=L))
        weights[np.array(zeros)] = 0.0
        if weights.sum() == 0:
            weights[draw(st.integers(0, L - 1))] = 1.0
    elif kind == "peaked":
        weights[draw(st.integers(0, L - 1))] += 1e3
    return weights / weights.sum()


@st.composite
def problems(draw):
    L_s, L_t, B = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["spread", "zeros", "peaked"]))
    h_s = np.stack([draw(histograms(L_s, kind)) for _ in range(B)])
    h_t = np.stack([draw(histograms(L_t, kind)) for _ in range(B)])
    C = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=L_s * L_t, max_size=L_s * L_t))).reshape(L_s, L_t)
    lam = draw(st.floats(0.5, 100.0))
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    return h_s, h_t, C, lam, dtype


@SETTINGS
@given(problems())
def test_the_loss_is_finite_equals_the_reference_and_its_plan_has_the_marginals(problem):
    h_s, h_t, C, lam, dtype = problem
    tensors = [torch.tensor(x, dtype=dtype) for x in (h_s, h_t, C)]
    loss = ot_loss(*tensors, lam)
    assert loss.dtype == dtype and torch.isfinite(loss).all()
    expected = [reference_loss(h_s[i], h_t[i], C, lam, tol=1e-12).loss for i in range(len(h_s))]
    tolerance = {torch.float64: 1e-7, torch.float32: 1e-4}[dtype]
    np.testing.assert_allclose(loss.double().numpy(), expected, rtol=tolerance, atol=tolerance)
    plan = transport_plan(solve(*tensors, lam), tensors[2], lam).double().numpy()
    np.testing.assert_allclose(plan.sum(2), h_s, atol=10 * tolerance)
    np.testing.assert_allclose(plan.sum(1), h_t, atol=10 * tolerance)


@SETTINGS
@given(problems(), st.integers(0, 2**32 - 1))
def test_the_gradient_is_that_of_the_regularised_optimum(problem, seed):
    h_s, h_t, C, lam, _ = problem
    h_s, h_t = h_s[:1], h_t[:1]
    if (h_s == 0).any() or (h_t == 0).any():  # on the simplex's boundary only one-sided differences exist
        h_s, h_t = ((h + 1e-2) / (h + 1e-2).sum() for h in (h_s, h_t))
    rng = np.random.default_rng(seed)
    x_s, x_t = (torch.tensor(h, dtype=torch.float64, requires_grad=True) for h in (h_s, h_t))
    ot_loss(x_s, x_t, torch.tensor(C), lam).sum().backward()
    for grad, h, f in ((x_s.grad[0].numpy(), h_s[0], lambda x: regularised_optimum(x, h_t[0], C, lam)),
                       (x_t.grad[0].numpy(), h_t[0], lambda x: regularised_optimum(h_s[0], x, C, lam))):
        d = rng.standard_normal(len(h))
        d -= d.mean()  # a direction within the simplex
        d *= min(1.0, 0.5 * h.min() / max(np.abs(d).max(), 1e-300) / 1e-6)  # keep h +- 1e-6 d inside it
        # 1e-3: near the simplex's boundary (bins of mass 1e-3) the entropy term's higher derivatives (~1/h^2) limit central
        # differences to ~4e-4 relative; a wrong gradient (sign, centring, a missing factor) is off by O(1)
        np.testing.assert_allclose(grad @ d, directional_fd(f, h, d), rtol=1e-3, atol=1e-7)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from([0.0, -1.0, float("nan"), float("inf")]))
def test_bad_lam_or_histograms_raise_a_named_error(L_s, L_t, bad):
    h_s, h_t = torch.full((1, L_s), 1.0 / L_s, dtype=torch.float64), torch.full((1, L_t), 1.0 / L_t, dtype=torch.float64)
    C = torch.zeros(L_s, L_t, dtype=torch.float64)
    with pytest.raises(ValueError, match="lam must be"):
        ot_loss(h_s, h_t, C, bad)
    broken = h_s.clone()
    broken[0, 0] = bad if bad else 2.0  # not a histogram: NaN, inf, negative, or a row that does not sum to 1
    with pytest.raises(ValueError, match="h_s"):
        ot_loss(broken, h_t, C, 10.0)
