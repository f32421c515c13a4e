"""The numerical core at its edges: arguments refused by name, and finite answers where the inputs are degenerate."""

import warnings

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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_in_its_own_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(87, 13, generator=g).to(dtype)
    logits_s, logits_t = (torch.randn(32, n, generator=g) * 3 for n in (87, 13))
    for logits in (True, False):
        x_s = (logits_s if logits else logits_s.softmax(1)).to(dtype).requires_grad_()
        x_t = (logits_t if logits else logits_t.softmax(1)).to(dtype).requires_grad_()
        # the reference: the same inputs in float32 (histograms renormalised there, as the loss does)
        ref_s, ref_t = (x.detach().float() if logits else x.detach().float() / x.detach().float().sum(1, keepdim=True)
                        for x in (x_s, x_t))
        ref_s, ref_t = ref_s.requires_grad_(), ref_t.requires_grad_()
        loss = OTLoss(cost, 20.0, logits=logits)
        value, reference = loss(x_s, x_t), loss(ref_s, ref_t)
        value.backward()
        reference.backward()
        assert value.dtype == dtype and x_s.grad.dtype == dtype and torch.isfinite(x_s.grad).all()
        # the float32 computation rounded to the input dtype (to its resolution: the reference normalises twice)
        torch.testing.assert_close(value, reference.to(dtype))  # torch's tolerance for the dtype (float16: 1e-3 rel.)
        torch.testing.assert_close(x_s.grad, ref_s.grad.to(dtype))
        torch.testing.assert_close(x_t.grad, ref_t.grad.to(dtype))


@pytest.mark.parametrize("lam, tolerance", [(1e3, 1e-4), (1e4, 1e-6)])
def test_large_lam_is_annealed_to_the_right_plan(lam, tolerance):
    """The entropic OT cost tends to the exact one (POT's ot.emd2) as lam grows; annealing reaches it where plain Sinkhorn did not."""
    import ot

    g = torch.Generator().manual_seed(1)
    cost = torch.rand(7, 5, generator=g, dtype=torch.float64)
    a, b = (torch.rand(3, n, generator=g, dtype=torch.float64) + 0.1 for n in (7, 5))
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    exact = torch.tensor([ot.emd2(a[i].numpy(), b[i].numpy(), cost.numpy()) for i in range(3)], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        loss = ot_loss(a, b, cost, lam, max_iter=100_000)  # lam = 1e4 takes ~14,000 iterations here
        scalings = sinkhorn(a, b, cost, lam, max_iter=100_000)
    torch.testing.assert_close(loss, exact, rtol=0, atol=tolerance)
    assert scalings.marginal_error < 1e-9 and scalings.domain == "log"


def test_lam_too_large_to_converge_raises_instead_of_returning_a_wrong_loss():
    g = torch.Generator().manual_seed(1)  # the problem of the test above
    cost = torch.rand(7, 5, generator=g, dtype=torch.float64)
    a, b = (torch.rand(3, n, generator=g, dtype=torch.float64) + 0.1 for n in (7, 5))
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    for lam in (1e4, 1e6):  # 1e4 converges with a larger max_iter (above); 1e6 stalls
        with pytest.raises(FloatingPointError, match=r"the plan's marginals are off by .* raise max_iter"):
            with pytest.warns(RuntimeWarning, match="did not converge"):
                ot_loss(a, b, cost, lam)


def test_mk_mmd2_names_mixed_dtypes_and_computes_half_precision_in_float32():
    from jtln.mmd import mk_mmd2

    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g) + 1
    sigmas, betas = torch.tensor([0.5, 1.0, 2.0]), torch.full((3,), 1 / 3)
    with pytest.raises(ValueError, match="xs and xt must share a dtype"):
        mk_mmd2(xs, xt.double(), sigmas, betas)
    with pytest.raises(ValueError, match="xs needs at least 2 samples"):
        mk_mmd2(torch.empty(0, 3), xt, sigmas, betas)
    for dtype in (torch.float16, torch.bfloat16):
        for estimator in ("linear", "unbiased"):
            value = mk_mmd2(xs.to(dtype), xt.to(dtype), sigmas, betas, estimator)
            expected = mk_mmd2(xs.to(dtype).float(), xt.to(dtype).float(), sigmas, betas, estimator)
            assert value.dtype == dtype and value == expected.to(dtype)


def test_what_a_newcomer_mistypes_is_refused_where_it_is_typed():
    """Issue 35's library edges: a keyword typo at construction, not at the first forward; a one-element tensor lam taken
    as the number it holds; a negative cost matrix refused by name."""
    import pytest
    import torch

    from jtln.ot import OTLoss, ot_loss_with_logits

    C = torch.rand(3, 2)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['tolerance'\]; the options are \['tol', "):
        OTLoss(C, 10.0, tolerance=1e-6)
    logits_s, logits_t = torch.randn(4, 3), torch.randn(4, 2)
    torch.testing.assert_close(OTLoss(C, torch.tensor(10.0), logits=True)(logits_s, logits_t),
                               OTLoss(C, 10.0, logits=True)(logits_s, logits_t), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"C must hold non-negative costs, got a minimum of -0\.9"):
        ot_loss_with_logits(logits_s, logits_t, torch.tensor([[0.1, 0.0], [0.2, -0.95], [0.3, 0.4]]), 10.0)
    with pytest.raises(ValueError, match=r"lam must be a finite positive number"):
        OTLoss(C, torch.tensor([1.0, 2.0]))


def test_jtln_given_images_says_it_takes_the_prefix_output(tiny):
    """Issue 35: JTLN's forward takes cached prefix features; images get an error with the call that works."""
    import pytest
    import torch

    from jtln.models import JTLN

    backbone = tiny.backbone
    model = JTLN(backbone, tiny.itl.L_s, tiny.itl.L_t).eval()
    images = torch.rand(2, 3, backbone.image_size, backbone.image_size)
    with pytest.raises(ValueError, match=r"JTLN takes the backbone's prefix output .* got images \(2, 3, .*"
                                         r"call model\(backbone.prefix\(images\)\)"):
        model(images)
    with torch.no_grad():
        logits_s, logits_t = model(backbone.prefix.eval()(images))  # what the message says works
    assert logits_s.shape == (2, tiny.itl.L_s) and logits_t.shape == (2, tiny.itl.L_t)


def test_the_probe_takes_integer_class_indices_and_says_so():
    import numpy as np
    import pytest
    import torch

    from jtln.probe import fit_probe

    X = torch.randn(12, 4, dtype=torch.float64)
    y = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError, match=r"y must hold integer class indices 0..2, got <U1 labels \(names: .*numpy.unique"):
        fit_probe(X, np.array(list("abc"))[y], 3)
    with pytest.raises(ValueError, match=r"y must hold integer class indices 0..2, got float64 labels$"):
        fit_probe(X, y.astype(float), 3)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\) \(n_classes = 3\), got \[1, 3\]"):
        fit_probe(X, y + 1, 3)
