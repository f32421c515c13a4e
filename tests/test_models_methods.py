"""Backbones, the frozen-prefix cache, the linear probe and the registered methods on a tiny ITL problem."""


import matplotlib
import numpy as np
import pytest
import torch

from jtln.cache import cached_features, to_input
from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays
from jtln.hparams import resolve
from jtln.methods import METHODS, method_order
from jtln.models import (
    BACKBONES,
    JTLN,
    LAYER_GROUP_RATES,
    alexnet,
    backbone_rates,
    build_backbone,
    efficientnet_lite0,
    efficientnet_lite0_state_dict,
)
from jtln.probe import fit_probe, fit_with, scores
from jtln.train import RunData, run, train
from tests.tiny import HP, cost_kind


def test_registry_holds_the_five_methods_of_table2_three_beyond_it_and_the_probe_outside_it():
    assert [m for m in method_order(METHODS) if METHODS[m].paper] == ["target_only", "consecutive", "joint", "jtln_mmd", "jtln_ot"]
    assert method_order(METHODS)[5:] == ["jtln_dynamic", "jtln_learned_cost", "co_tuning", "linear_probe"]
    assert [METHODS[m].block for m in method_order(METHODS)[5:]] == ["beyond"] * 3 + ["reference"]
    assert METHODS["jtln_mmd"].cost == "mmd" and METHODS["jtln_ot"].cost == "ot" and METHODS["joint"].cost is None
    optimal = resolve({"mmd_kernel_weights": "optimal", "cost_kind": "ot"})
    assert METHODS["jtln_mmd"].cost_spec(HP) == ("mmd", "uniform") and METHODS["jtln_mmd"].cost_spec(optimal) == ("mmd", "optimal")
    assert METHODS["jtln_dynamic"].cost_spec(HP) == ("mmd", "uniform") and METHODS["jtln_dynamic"].cost_spec(optimal) == ("ot", None)
    assert METHODS["co_tuning"].cost_spec(optimal) is None
    assert METHODS["jtln_ot"].display == "JTLN (fc7OT)" and METHODS["linear_probe"].searches == ()
    for name, cls in METHODS.items():
        assert set(cls.searches) <= set(__import__("jtln.hparams").hparams.SEARCH_SPACE), name


@pytest.mark.parametrize("name", sorted(m for m in METHODS if METHODS[m].paper))
def test_every_method_trains_what_it_should(tiny, name):
    itl, backbone, factory, costs, data, probes = tiny.itl, tiny.backbone, tiny.factory, tiny.costs, tiny.data, tiny.probes
    C = costs.get(cost_kind(name))
    before = JTLN(factory(), itl.L_s, itl.L_t).init_heads(*probes)
    method, log = train(name, factory, data, HP, seed=0, L_s=itl.L_s, L_t=itl.L_t, C=C, probes=probes)
    after = method.network
    changed = {k: not torch.equal(before.state_dict()[k], v) for k, v in after.state_dict().items() if v.is_floating_point()}
    assert changed["head_t.weight"] and changed["trunk.0.0.weight"]  # the heads and the 1x1 head convolution
    assert changed["head_s.weight"] == (name != "target_only")  # target-only never touches the source head
    # BatchNorm keeps its pretrained statistics
    assert not changed["trunk.0.1.running_mean"] and not changed["trunk.0.1.running_var"]
    assert all(np.isfinite(v) for entry in log["steps"] for v in entry.values())
    assert 1 <= log["best_epoch"] <= len(log["val_curve"]) == HP.epochs
    # early stopping keeps the epoch of the lowest validation cross-entropy (the earliest among ties), and reports its accuracy
    assert len(log["val_loss_curve"]) == HP.epochs
    assert log["val_loss"] == min(log["val_loss_curve"]) == log["val_loss_curve"][log["best_epoch"] - 1]
    assert log["best_epoch"] - 1 == log["val_loss_curve"].index(log["val_loss"])
    assert log["val_accuracy"] == log["val_curve"][log["best_epoch"] - 1]
    # the prefix stays frozen and is not part of what is trained
    assert not any(p.requires_grad for p in backbone.prefix.parameters())
    assert not set(map(id, backbone.prefix.parameters())) & set(map(id, after.parameters()))


def test_jtln_with_zero_ot_weight_trains_exactly_as_joint(tiny):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    joint, _ = train("joint", factory, data, HP, 3, itl.L_s, itl.L_t, probes=probes)
    for name in ("jtln_mmd", "jtln_ot"):
        jtln, _ = train(name, factory, data, resolve({**HP.to_dict(), "lambda_ot": 0.0}), 3, itl.L_s, itl.L_t,
                        C=costs[cost_kind(name)], probes=probes)
        for k, v in joint.network.state_dict().items():
            assert torch.equal(v, jtln.network.state_dict()[k]), k


def test_ot_gradient_reaches_both_heads_and_the_shared_layers(tiny):
    itl, factory, costs, data = tiny.itl, tiny.factory, tiny.costs, tiny.data
    method = METHODS["jtln_ot"](JTLN(factory(), itl.L_s, itl.L_t), HP, costs["ot"])
    logits_s, logits_t = method.network(data.Z["target_train"][:])
    method.ot_term(logits_s, logits_t).backward()
    grads = {n: p.grad for n, p in method.network.named_parameters()}
    for name in ("head_s.weight", "head_t.weight", "trunk.0.0.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_cache_equals_running_the_prefix(tiny):
    itl, backbone, cached = tiny.itl, tiny.backbone, tiny.cached
    images = torch.stack([to_input(itl.loader(k), 32, backbone.mean, backbone.std) for k, _ in itl.target_test])
    with torch.no_grad():
        direct = backbone.prefix(images)
        penultimate = backbone.penultimate(direct)
    torch.testing.assert_close(cached.Z["target_test"], direct, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cached.P["target_test"], penultimate, rtol=1e-5, atol=1e-5)
    assert cached.y["target_test"].tolist() == [y for _, y in itl.target_test]


def test_cache_on_disk_round_trips_and_a_damaged_file_is_rebuilt(tiny, tmp_path):
    itl, backbone, cached = tiny.itl, tiny.backbone, tiny.cached
    first = cached_features(backbone, itl, "fake-fashion", cache_dir=tmp_path)
    files = list(tmp_path.glob("features-*.pt"))
    assert len(files) == 1
    second = cached_features(backbone, itl, "fake-fashion", cache_dir=tmp_path)
    for split in first.Z:
        assert torch.equal(first.Z[split], second.Z[split]) and torch.equal(first.Z[split], cached.Z[split])
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    with pytest.warns(RuntimeWarning, match="is damaged .* rebuilding it"):
        third = cached_features(backbone, itl, "fake-fashion", cache_dir=tmp_path)
    assert torch.equal(third.P["source"], cached.P["source"])
    assert torch.equal(cached_features(backbone, itl, "fake-fashion", cache_dir=tmp_path).Z["source"], cached.Z["source"])


def test_a_run_is_deterministic_and_its_record_complete(tiny):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    a = run("jtln_mmd", factory, data, HP, 7, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    b = run("jtln_mmd", factory, data, HP, 7, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    assert a["predictions"] == b["predictions"] and a["accuracy"] == b["accuracy"] and a["val_curve"] == b["val_curve"]
    for key in ("accuracy", "val_accuracy", "best_epoch", "val_curve", "per_class_accuracy", "predictions", "timings",
                "versions", "cost_matrix", "mean_plan"):
        assert key in a, key
    assert len(a["per_class_accuracy"]) == itl.L_t
    np.testing.assert_allclose(np.sum(a["mean_plan"]), 1.0, rtol=1e-6)


class Reads(dict):
    """A split -> tensor mapping that records which splits are read."""

    def __init__(self, items, seen):
        super().__init__(items)
        self.seen = seen

    def __getitem__(self, key):
        self.seen.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("name", ["joint", "jtln_dynamic", "co_tuning"])  # plain, and the two that read whole splits in start()
def test_a_search_trial_never_reads_the_test_split_though_it_is_there(tiny, name):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    seen = set()
    watched = RunData(*(Reads(part, seen) for part in (data.Z, data.y, data.P)))
    assert "target_test" in watched.y  # there to be read: a trial must leave it alone
    record = run(name, factory, watched, HP, 0, itl.L_s, itl.L_t, C=costs.get(cost_kind(name)), probes=probes, test=False)
    assert "target_test" not in seen and {"target_train", "target_val"} <= seen, seen
    assert "accuracy" not in record and "predictions" not in record and 0 <= record["val_accuracy"] <= 1
    seen.clear()
    run(name, factory, watched, HP, 0, itl.L_s, itl.L_t, C=costs.get(cost_kind(name)), probes=probes, test=True)
    assert "target_test" in seen  # the watch sees a read: the test above can fail


def test_the_linear_probe_method_predicts_as_the_probe(tiny):
    """LP-FT starts from the probe exactly: with frozen BatchNorm the trunk's output at step 0 is the cached penultimate feature."""
    itl, factory, data, probes = tiny.itl, tiny.factory, tiny.data, tiny.probes
    record = run("linear_probe", factory, data, HP, 0, itl.L_s, itl.L_t, probes=probes)
    logits = data.P["target_test"] @ probes[0].weight.T + probes[0].bias
    assert record["predictions"] == logits.argmax(1).tolist() and record["n_steps"] == 0 and record["best_epoch"] == 0
    accuracy, cross_entropy = scores(probes[0], data.P["target_val"], data.y["target_val"])
    assert record["val_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert record["val_loss"] == pytest.approx(cross_entropy, rel=1e-5)  # float32 logits, summed per batch


def _probe_problem(seed=0, n=120, d=40):
    """Features like a pretrained network's: a few informative dimensions, many near-constant ones (where standardising
    blows noise up), non-negative (after a ReLU)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = np.abs(rng.normal(size=(n, d))) * np.r_[np.ones(4), np.full(d - 4, 1e-3)]
    X[:, :4] += 0.8 * np.eye(3, 4)[y]
    return X, y


def test_probe_cross_validation_picks_the_lowest_cross_validated_loss():
    """Recomputed independently with scikit-learn's LogisticRegression on the same stratified folds: the chosen (C, scaling)
    is the one with the lowest mean held-out cross-entropy, and its CV loss agrees to 1e-3 (both stop at a tolerance)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    from jtln.probe import PROBE_CS, _scaled

    X, y = _probe_problem()
    probe = fit_probe(X, y, 3, scalings=("raw", "standardised"))
    scored = {}
    for scaling in ("raw", "standardised"):
        Xs = _scaled(X, scaling)[0]
        for C in PROBE_CS:
            folds = StratifiedKFold(5).split(Xs, y)
            scored[(scaling, C)] = np.mean([log_loss(y[h], LogisticRegression(C=C, tol=1e-8, max_iter=5000).fit(Xs[t], y[t])
                                                     .predict_proba(Xs[h]), labels=[0, 1, 2]) for t, h in folds])
    best = min(scored, key=scored.get)
    assert (probe.scaling, probe.C) == best
    assert probe.cv_loss == pytest.approx(scored[best], rel=1e-3)
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):
        fit_probe(X[y < 2], y[y < 2], 3)
    with pytest.raises(ValueError, match="at least 2 images of every class"):
        fit_probe(X[:4], np.array([0, 1, 2, 2]), 3)


@pytest.mark.parametrize("scaling", ["raw", "standardised"])
@pytest.mark.parametrize("C", [1e-3, 1.0])
def test_probe_fit_is_scikit_learns_logistic_regression(C, scaling):
    """torch's L-BFGS on scikit-learn's objective gives scikit-learn's weights (tolerance: both solvers' stopping rules)."""
    from sklearn.linear_model import LogisticRegression

    from jtln.probe import _scaled

    X, y = _probe_problem(1)
    probe = fit_with(X, y, 3, C, scaling)
    Xs, mu, sigma = _scaled(X, scaling)
    theirs = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(Xs, y)
    logits = X @ probe.weight.double().numpy().T + probe.bias.double().numpy()
    np.testing.assert_allclose(logits, theirs.decision_function(Xs), atol=2e-3 * max(1.0, np.abs(logits).max()))


def test_probe_is_at_least_as_accurate_as_scikit_learns_default():
    """The issue's yardstick: on the same features and labels, the cross-validated probe's test accuracy is at least that of
    scikit-learn's default (raw features, C = 1) less 0.01, on each of five problems where standardising hurts."""
    from sklearn.linear_model import LogisticRegression

    from jtln.probe import scores

    ours, theirs = [], []
    for seed in range(5):
        X, y = _probe_problem(seed, n=420)
        train, test = slice(0, 120), slice(120, None)
        ours.append(scores(fit_probe(X[train], y[train], 3), X[test], y[test])[0])
        theirs.append(LogisticRegression().fit(X[train], y[train]).score(X[test], y[test]))
    assert np.mean(ours) >= np.mean(theirs) - 0.01, (ours, theirs)


def test_efficientnet_weights_classify_grace_hopper_as_military_uniform():
    import timm
    from PIL import Image

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(efficientnet_lite0_state_dict(), strict=True)
    net.eval()
    image = Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB")
    x = to_input(image, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with torch.no_grad():
        assert net(x[None]).argmax().item() == 652  # ImageNet "military uniform"


def test_wrong_weight_file_is_rejected(tmp_path):
    bad = tmp_path / "weights.pth"
    torch.save({}, bad)
    with pytest.raises(ValueError, match="sha256"):
        efficientnet_lite0_state_dict(bad)


def test_alexnet_protocol_groups():
    backbone = alexnet(weights=None)
    net = JTLN(backbone, 5, 3)
    def trained_rates(backbone):  # the optimiser's groups, as a run makes them
        return tuple(g["name"] for g in JTLN(backbone, 5, 3).param_groups(HP))

    assert trained_rates(backbone) == ("lr_backbone", "lr_fc", "lr_head")
    assert trained_rates(efficientnet_lite0(weights=None)) == ("lr_backbone", "lr_head")
    for name in BACKBONES:  # what the registry declares is what the built backbone trains
        assert trained_rates(build_backbone(name, weights=None)) == backbone_rates(name), name
    assert "lr_cost" not in LAYER_GROUP_RATES  # a method's own rate is never taken for a layer group's
    groups = net.param_groups(HP)
    assert [g["name"] for g in groups] == ["lr_backbone", "lr_fc", "lr_head"]
    assert [g["lr"] for g in groups] == [HP.lr_backbone, HP.lr_fc, HP.lr_head]
    convs = [m for m in backbone.prefix if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and not any(p.requires_grad for p in backbone.prefix.parameters())  # conv1-3 frozen
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.trunk[0]) == 2  # conv4, conv5
    assert sum(isinstance(m, torch.nn.Linear) for m in net.trunk[1]) == 2  # fc6, fc7
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")


def test_the_feature_cache_key_hashes_the_weights_files_content(tmp_path):
    from jtln.cache import cache_key

    itl = fashion_mnist_itl("Footwear", arrays=synthetic_arrays(3, 2))
    torch.manual_seed(0)
    path = tmp_path / "alexnet.pth"
    torch.save(torchvision_alexnet_state(0), path)
    first = cache_key(alexnet(weights=str(path)), itl, "fake")
    torch.save(torchvision_alexnet_state(1), path)  # another checkpoint at the same path
    assert cache_key(alexnet(weights=str(path)), itl, "fake") != first


def torchvision_alexnet_state(seed):
    from torchvision.models import alexnet as tv_alexnet

    torch.manual_seed(seed)
    return tv_alexnet(weights=None).state_dict()


def test_a_run_trains_its_own_copy_of_the_trunk_and_shares_the_frozen_prefix(tiny):
    backbone = tiny.backbone
    run = backbone.for_training()
    assert run.prefix is backbone.prefix and run.penultimate is backbone.penultimate  # computed the caches: not copied
    for (mine, key), (theirs, their_key) in zip(run.trunk_groups, backbone.trunk_groups):
        assert key == their_key and mine is not theirs
        for a, b in zip(mine.parameters(), theirs.parameters()):
            assert a is not b and torch.equal(a, b)
    with torch.no_grad():
        next(run.trunk_groups[0][0].parameters()).add_(1.0)  # training the copy leaves the pretrained trunk as it was
    assert not torch.equal(next(run.trunk_groups[0][0].parameters()), next(backbone.trunk_groups[0][0].parameters()))
