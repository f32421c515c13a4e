"""Issue 4: backbones, the frozen-prefix cache and the five registered methods on a tiny ITL problem."""

import copy

import matplotlib
import numpy as np
import pytest
import torch

from jtln.cache import cached_features, to_input
from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays
from jtln.hparams import resolve
from jtln.methods import METHODS, PAPER_NAMES
from jtln.models import JTLN, alexnet, build_backbone, efficientnet_lite0, efficientnet_lite0_state_dict
from jtln.train import cost_matrix, run, seed_everything, train

HP = resolve({"epochs": 1, "source_epochs": 1, "batch_size_target": 8, "batch_size_source": 8, "cost_samples_per_class": 6})


def tiny_backbone():
    return efficientnet_lite0(weights=None, image_size=32)


@pytest.fixture(scope="module")
def tiny():
    itl = fashion_mnist_itl("Footwear", target_train_per_class=6, source_per_class=4, arrays=synthetic_arrays(10, 3))
    torch.manual_seed(0)
    backbone = tiny_backbone()
    factory = lambda: copy.deepcopy(backbone)  # noqa: E731  (the same "pretrained" weights every run)
    cached = cached_features(backbone, itl, "fake-fashion")
    costs = {kind: cost_matrix(kind, cached, HP, itl.L_s, itl.L_t) for kind in ("mmd", "ot")}
    return itl, backbone, factory, cached, costs


def test_registry_holds_the_five_methods_of_table2():
    assert sorted(METHODS) == sorted(PAPER_NAMES) == sorted(["target_only", "consecutive", "joint", "jtln_mmd", "jtln_ot"])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_what_it_should(tiny, name):
    itl, backbone, factory, cached, costs = tiny
    C = costs.get(METHODS[name].cost)
    seed_everything(0)  # as train() does, so that the heads start from the same draw
    before = JTLN(factory(), itl.L_s, itl.L_t)
    method, log = train(name, factory, cached, HP, seed=0, L_s=itl.L_s, L_t=itl.L_t, C=C)
    after = method.network
    changed = {k: not torch.equal(before.state_dict()[k], v) for k, v in after.state_dict().items() if v.is_floating_point()}
    assert changed["head_t.weight"] and changed["trunk.1.0.weight"] and changed["trunk.0.0.weight"]
    assert changed["head_s.weight"] == (name != "target_only")  # target-only never touches the source head
    assert all(np.isfinite(v) for entry in log for k, v in entry.items() if k != "step")
    # the prefix stays frozen and is not part of what is trained
    assert not any(p.requires_grad for p in backbone.prefix.parameters())
    assert not set(map(id, backbone.prefix.parameters())) & set(map(id, after.parameters()))


def test_jtln_with_zero_ot_weight_trains_exactly_as_joint(tiny):
    itl, _, factory, cached, costs = tiny
    joint, _ = train("joint", factory, cached, HP, 3, itl.L_s, itl.L_t)
    for name in ("jtln_mmd", "jtln_ot"):
        jtln, _ = train(name, factory, cached, resolve({**HP.to_dict(), "lambda_ot": 0.0}), 3, itl.L_s, itl.L_t,
                        C=costs[METHODS[name].cost])
        for k, v in joint.network.state_dict().items():
            assert torch.equal(v, jtln.network.state_dict()[k]), k


def test_ot_gradient_reaches_both_heads_and_the_shared_layers(tiny):
    itl, _, factory, cached, costs = tiny
    method = METHODS["jtln_ot"](JTLN(factory(), itl.L_s, itl.L_t), HP, costs["ot"])
    logits_s, logits_t = method.network(cached.Z["target_train"])
    method.extra(logits_s, logits_t).backward()
    grads = {n: p.grad for n, p in method.network.named_parameters()}
    for name in ("head_s.weight", "head_t.weight", "trunk.1.0.weight", "trunk.0.0.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_cache_equals_running_the_prefix(tiny):
    itl, backbone, _, cached, _ = tiny
    images = torch.stack([to_input(itl.loader(k), 32, backbone.mean, backbone.std) for k, _ in itl.target_test])
    with torch.no_grad():
        direct = backbone.prefix(images)
        penultimate = backbone.penultimate(direct)
    torch.testing.assert_close(cached.Z["target_test"], direct, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cached.P["target_test"], penultimate, rtol=1e-5, atol=1e-5)
    assert cached.y["target_test"].tolist() == [y for _, y in itl.target_test]


def test_cache_on_disk_round_trips(tiny, tmp_path):
    itl, backbone, _, cached, _ = tiny
    from jtln import cache

    cache._MEMORY.clear()
    first = cached_features(backbone, itl, "fake-fashion", cache_dir=tmp_path)
    files = list(tmp_path.glob("features-*.pt"))
    assert len(files) == 1
    cache._MEMORY.clear()
    second = cached_features(backbone, itl, "fake-fashion", cache_dir=tmp_path)
    for split in first.Z:
        assert torch.equal(first.Z[split], second.Z[split]) and torch.equal(first.Z[split], cached.Z[split])


def test_a_run_is_deterministic_and_its_record_complete(tiny):
    itl, _, factory, cached, costs = tiny
    a = run("jtln_mmd", factory, cached, HP, 7, itl.L_s, itl.L_t, C=costs["mmd"])
    b = run("jtln_mmd", factory, cached, HP, 7, itl.L_s, itl.L_t, C=costs["mmd"])
    assert a["predictions"] == b["predictions"] and a["accuracy"] == b["accuracy"]
    for key in ("accuracy", "per_class_accuracy", "predictions", "hparams", "seed", "timings", "versions", "cost_matrix", "mean_plan"):
        assert key in a, key
    assert len(a["per_class_accuracy"]) == itl.L_t and a["hparams"]["lam"] == HP.lam
    np.testing.assert_allclose(np.sum(a["mean_plan"]), 1.0, rtol=1e-6)


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
    groups = net.param_groups(HP)
    assert [g["name"] for g in groups] == ["lr_backbone", "lr_fc", "lr_head"]
    assert [g["lr"] for g in groups] == [HP.lr_backbone, HP.lr_fc, HP.lr_head]
    convs = [m for m in backbone.prefix if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and not any(p.requires_grad for p in backbone.prefix.parameters())  # conv1-3 frozen
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.trunk[0]) == 2  # conv4, conv5
    assert sum(isinstance(m, torch.nn.Linear) for m in net.trunk[1]) == 2  # fc6, fc7
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")
