"""The methods beyond the paper: the dynamic and the learned cost (the paper's Sec. 5), and Co-Tuning."""

import numpy as np
import pytest
import torch

from jtln.hparams import resolve
from jtln.methods import METHODS
from jtln.probe import fit_with
from jtln.relationship import calibrate_temperature, relationship
from jtln.train import run, train
from tests.tiny import HP


def with_hp(**changes):
    return resolve({**HP.to_dict(), **changes})


def same_network(a, b):
    return all(torch.equal(v, b.network.state_dict()[k]) for k, v in a.network.state_dict().items())


@pytest.mark.parametrize("name, changes", [("jtln_learned_cost", {"lr_cost": 0.0})])
def test_a_cost_that_never_moves_is_fixed_cost_jtln_bit_for_bit(tiny, name, changes):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    hp = with_hp(epochs=2, **changes)
    fixed, fixed_log = train("jtln_mmd", factory, data, hp, 5, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    other, other_log = train(name, factory, data, hp, 5, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    assert same_network(fixed, other)
    assert other_log["val_loss_curve"] == fixed_log["val_loss_curve"]
    assert [s["ot"] for s in other_log["steps"]] == [s["ot"] for s in fixed_log["steps"]]


@pytest.mark.parametrize("cost_every", [0.1, 0.5, 1.0])
def test_every_run_of_the_dynamic_cost_recomputes_it(tiny, cost_every, tmp_path):
    """The schedule is a share of an epoch: a one-epoch run (the shortest refit) recomputes C, as often as the share says,
    and a C that could never move (momentum 1) is refused with the hyper-parameters, before any work."""
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    hp = with_hp(epochs=1, cost_every=cost_every, batch_size_target=4)
    epoch_steps = -(-len(data.y["target_train"]) // 4)
    method, log = train("jtln_dynamic", factory, data, hp, 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    assert epoch_steps >= 4 and method.period == max(1, round(cost_every * epoch_steps))
    assert method.updates == epoch_steps // method.period >= 1 and log["method"]["cost_updates"] == method.updates
    assert not torch.equal(method.ot_loss.C, costs["mmd"])
    with pytest.raises(ValueError, match=r"cost_momentum must be <= 0.99, got 1.0"):
        with_hp(cost_momentum=1.0)
    frozen = r"jtln_dynamic: every trained layer below the heads has learning rate 0 \(lr_backbone\)"
    with pytest.raises(ValueError, match=frozen):
        train("jtln_dynamic", factory, data, with_hp(epochs=1, lr_backbone=0.0), 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    from reproduce.profile import load_profile

    profile = tmp_path / "frozen.toml"  # a profile that fixes it: refused when loaded, before any work
    profile.write_text('name = "frozen"\n[data]\ndataset = "synthetic"\ngroups = ["Tops"]\nlevels = [5]\n'
                       '[model]\nbackbone = "efficientnet_lite0"\n[hparams]\nlr_backbone = 0.0\n')
    with pytest.raises(ValueError, match=r"frozen.toml: \[hparams\] " + frozen):
        load_profile(profile)


def test_the_dynamic_cost_is_recomputed_from_the_current_features(tiny):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    for momentum in (0.0, 0.5):
        method, log = train("jtln_dynamic", factory, data, with_hp(epochs=2, cost_every=1, cost_momentum=momentum, lr_backbone=0.05,
                                                                    batch_size_target=64, batch_size_source=64),
                            0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
        assert method.updates == 2  # after each of the two epochs
        C = torch.tensor(log["method"]["final_cost_matrix"]) if log["best_epoch"] == 2 else method.ot_loss.C
        assert not torch.allclose(method.ot_loss.C, costs["mmd"], atol=1e-4)  # the features moved, so did C
        assert torch.isfinite(C).all() and (method.ot_loss.C >= 0).all()
    # an update by hand: C_1 = m C_0 + (1 - m) C(the current features of every target training and source image, eval mode)
    from jtln.costs import class_cost_matrix
    from jtln.methods import cost_options
    from jtln.models import JTLN

    hp = with_hp(cost_every=1, cost_momentum=0.25)
    method = METHODS["jtln_dynamic"](JTLN(factory(), itl.L_s, itl.L_t).train(), hp, costs["mmd"].clone())
    method.start(data)
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.05)
    for _ in range(2):  # the features move
        optimizer.zero_grad()
        method.loss((data.Z["target_train"][:8], data.y["target_train"][:8]), (data.Z["source"][:8], data.y["source"][:8]))[0].backward()
        optimizer.step()
    assert method.network.training
    with torch.no_grad():
        method.network.eval()
        f_t, f_s = method.network.features(data.Z["target_train"][:]), method.network.features(data.Z["source"][:])
        method.network.train()
    expected = 0.25 * costs["mmd"] + 0.75 * class_cost_matrix("mmd", f_s, data.y["source"], f_t, data.y["target_train"], itl.L_s,
                                                              itl.L_t, **cost_options(hp), dtype=torch.float32, median_samples=300)
    method.after_step(method.period)
    torch.testing.assert_close(method.ot_loss.C, expected, rtol=1e-6, atol=1e-7)
    assert method.network.training and method.updates == 1
    # images too few for a cost matrix are refused before training, not skipped during it
    few = type(data)(Z={**data.Z, "source": data.Z["source"][:3]}, y={**data.y, "source": data.y["source"][:3]}, P=data.P)
    with pytest.raises(ValueError, match="fewer than 2 images of some class"):
        METHODS["jtln_dynamic"](JTLN(factory(), itl.L_s, itl.L_t), hp, costs["mmd"].clone()).start(few)


def test_the_learned_cost_moves_with_its_learning_rate_and_the_pull_holds_it(tiny):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    moved = {}
    for pull in (0.0, 10.0):
        method, _ = train("jtln_learned_cost", factory, data, with_hp(epochs=2, lr_cost=0.1, cost_pull=pull), 0, itl.L_s, itl.L_t,
                          C=costs["mmd"], probes=probes)
        moved[pull] = (method.C - costs["mmd"]).abs().sum().item()
        assert method.delta.grad is not None and method.delta.grad.abs().sum() > 0  # the OT loss reaches C
        assert (method.C >= 0).all()
    # without the pull the OT gradient (the plan, >= 0) only lowers C; a strong pull keeps it near the start
    assert moved[0.0] > 0 and moved[10.0] < moved[0.0] / 2, moved
    record = run("jtln_learned_cost", factory, data, with_hp(lr_cost=0.1), 0, itl.L_s, itl.L_t, C=costs["mmd"], probes=probes)
    assert np.shape(record["learned_cost_matrix"]) == (itl.L_s, itl.L_t) and record["cost_matrix"] == costs["mmd"].tolist()
    with pytest.raises(ValueError, match=r"lr_cost \* cost_pull = 2 makes the pull toward the initial cost diverge"):
        train("jtln_learned_cost", factory, data, with_hp(lr_cost=0.2, cost_pull=10.0), 0, itl.L_s, itl.L_t, C=costs["mmd"])


def test_co_tuning_trains_both_heads_on_target_images_against_the_relationship(tiny):
    itl, factory, data, probes = tiny.itl, tiny.factory, tiny.data, tiny.probes
    method, log = train("co_tuning", factory, data, with_hp(epochs=2), 0, itl.L_s, itl.L_t, probes=probes)
    assert all(set(s) == {"ce_t", "ce_co"} for s in log["steps"])  # target batches only: no source term
    R = method.R
    assert R.shape == (itl.L_t, itl.L_s) and torch.allclose(R.sum(1), torch.ones(itl.L_t), atol=1e-6)
    assert log["method"]["temperature"] > 0 and np.shape(log["method"]["relationship"]) == (itl.L_t, itl.L_s)
    initial = METHODS["co_tuning"](__import__("jtln.models").models.JTLN(factory(), itl.L_s, itl.L_t).init_heads(*probes),
                                   HP).network
    assert not torch.equal(initial.head_s.weight, method.network.head_s.weight)  # the source head learns from p(y_s | y_t)


def test_the_relationship_recovers_a_known_relation():
    """Target classes drawn as known mixtures of well-separated source classes: the direct approach recovers the mixtures."""
    rng = np.random.default_rng(0)
    L_s, L_t, D, n = 4, 3, 5, 3000
    means = 6.0 * np.eye(L_s, D)
    truth = np.array([[0.7, 0.3, 0.0, 0.0], [0.0, 0.2, 0.8, 0.0], [0.25, 0.25, 0.25, 0.25]])
    y_s = rng.integers(0, L_s, n)
    X_s = means[y_s] + rng.standard_normal((n, D))
    y_t = rng.integers(0, L_t, n)
    components = np.array([rng.choice(L_s, p=truth[c]) for c in y_t])
    X_t = means[components] + rng.standard_normal((n, D))
    probe = fit_with(X_s, y_s, L_s, C=1.0)
    logits = lambda X: torch.as_tensor(X, dtype=torch.float32) @ probe.weight.T + probe.bias  # noqa: E731
    T = calibrate_temperature(logits(X_s), torch.as_tensor(y_s))
    R = relationship((logits(X_t).double() / T).softmax(1), torch.as_tensor(y_t), L_t)
    # 1000 images per target class: the mixture weights to ~0.015 (binomial), plus the rare confusion of separated classes
    np.testing.assert_allclose(R.numpy(), truth, atol=0.04)
    with pytest.raises(ValueError, match=r"target classes \[2\] have no images"):
        relationship(torch.full((2, L_s), 0.25), torch.tensor([0, 1]), 3)


def test_the_temperature_minimises_the_calibration_nll():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (500,))
    logits = 4.0 * torch.nn.functional.one_hot(labels, 3).double() + 2.0 * torch.randn(500, 3, dtype=torch.float64)
    T = calibrate_temperature(logits, labels)

    def nll(t):
        return torch.nn.functional.cross_entropy(logits / t, labels).item()

    assert nll(T) <= min(nll(T * 1.01), nll(T / 1.01)) and 0.05 < T < 20
