"""Training-step ratios on the offline benchmark's shapes (EfficientNet-Lite0 at 64x64, Fashion-MNIST Tops).

* a JTLN step (joint + OT loss) against a joint step on the same batches and network;
* an epoch of the dynamic-cost JTLN (C recomputed every ``cost_every`` of an epoch) against as many joint steps;
* one epoch with the frozen-prefix cache against one epoch running the prefix.

Ratios are printed and written to ``.benchmarks/training_speed.json``; no time is asserted.
"""

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from jtln.cache import to_input
from jtln.hparams import resolve
from jtln.methods import METHODS
from jtln.models import JTLN, efficientnet_lite0

L_S, L_T, N_T = 6, 4, 268  # Tops: classes and target training images
HP = resolve({})
pytestmark = pytest.mark.benchmark(group="training step, EfficientNet-Lite0 64x64")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    backbone = efficientnet_lite0(weights=None, image_size=64)
    generator = np.random.default_rng(0)
    x_t = generator.integers(0, 255, (HP.batch_size_target, 28, 28), dtype=np.uint8)  # Fashion-MNIST images
    x_s = generator.integers(0, 255, (HP.batch_size_source, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        z_t, z_s = backbone.prefix(preprocess(x_t, backbone)), backbone.prefix(preprocess(x_s, backbone))
    batch_t = (z_t, torch.randint(0, L_T, (len(z_t),)))
    batch_s = (z_s, torch.randint(0, L_S, (len(z_s),)))
    C = torch.rand(L_S, L_T)
    return backbone, batch_t, batch_s, (x_t, x_s), C


def preprocess(images, backbone):
    return torch.stack([to_input(x, backbone.image_size, backbone.mean, backbone.std) for x in images])


def step_fn(method, optimizer=None):
    optimizer = optimizer or torch.optim.SGD(method.network.param_groups(HP), momentum=HP.momentum)

    def step(batch_t, batch_s):
        loss, _ = method.loss(batch_t, batch_s)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


STEP_ROUNDS, EPOCH_ROUNDS = 1000, 10
RESULTS = {}


def alternating(runs, rounds, warmup):
    """Seconds of each callable in ``runs`` (name -> fn) over ``rounds`` rounds, the order reversed every round.

    Each round runs every callable once, so slow and fast spells of the
    machine fall on all of them alike; ``warmup`` rounds come first, untimed.
    """
    times = {name: np.empty(rounds) for name in runs}
    order = list(runs)
    for round_ in range(-warmup, rounds):
        for name in order:
            start = time.perf_counter()
            runs[name]()
            if round_ >= 0:
                times[name][round_] = time.perf_counter() - start
        order.reverse()
    return times


def ratio_of_medians(numerator, denominator, resamples=2000):
    """``median(numerator) / median(denominator)`` and a bootstrap 95% interval, resampling rounds."""
    rounds = np.random.default_rng(0).integers(0, len(numerator), (resamples, len(numerator)))
    ratios = np.median(numerator[rounds], axis=1) / np.median(denominator[rounds], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"ratio": float(np.median(numerator) / np.median(denominator)), "95%_interval": [float(low), float(high)],
            "median_seconds": [float(np.median(numerator)), float(np.median(denominator))], "rounds": len(numerator)}


def test_jtln_step_against_joint_step(setup):
    """A joint step and a JTLN step alternate on one network, one optimiser and the same batches.

    One network, because two networks sit at different addresses, and that
    alone moved the ratio of two identical steps by +-2% on this machine.
    1000 rounds: the median of a few hundred ~15 ms steps still moves by
    about 1% between runs here.
    """
    backbone, batch_t, batch_s, _, C = setup
    network = JTLN(backbone, L_S, L_T).train()  # train() as jtln.train does: BatchNorm keeps its statistics
    optimizer = torch.optim.SGD(network.param_groups(HP), momentum=HP.momentum)
    steps = {name: step_fn(METHODS[name](network, HP, C), optimizer) for name in ("joint", "jtln_ot")}
    times = alternating({name: partial(step, batch_t, batch_s) for name, step in steps.items()}, STEP_ROUNDS, warmup=20)
    RESULTS["jtln_step_over_joint_step"] = ratio_of_medians(times["jtln_ot"], times["joint"])


def test_dynamic_cost_run_against_joint_steps(setup):
    """One epoch of jtln_dynamic (JTLN steps, C recomputed every ``cost_every`` of an epoch) against as many joint steps.

    What a dynamic run adds to a JTLN run: at every recomputation, a forward
    pass over the run's images (the Tops profile's 268 target training images
    and 600 source images) and the Sec. 3.4 cost of their features; at the
    default ``cost_every`` (half an epoch of 9 steps: every 4 steps), twice
    per epoch.
    """
    from types import SimpleNamespace

    backbone, batch_t, batch_s, _, C = setup
    network = JTLN(backbone, L_S, L_T).train()
    optimizer = torch.optim.SGD(network.param_groups(HP), momentum=HP.momentum)
    dynamic = METHODS["jtln_dynamic"](network, HP, C.clone())
    n_s = 100 * L_S
    images = SimpleNamespace(Z={"target_train": batch_t[0].repeat(-(-N_T // len(batch_t[0])), 1, 1, 1)[:N_T],
                                "source": batch_s[0].repeat(-(-n_s // len(batch_s[0])), 1, 1, 1)[:n_s]},
                             y={"target_train": torch.arange(N_T) % L_T, "source": torch.arange(n_s) % L_S})
    dynamic.start(images)
    steps = {"jtln_dynamic": step_fn(dynamic, optimizer), "joint": step_fn(METHODS["joint"](network, HP), optimizer)}
    epoch_steps = -(-N_T // HP.batch_size_target)

    def one_epoch(name):
        for step in range(1, epoch_steps + 1):
            steps[name](batch_t, batch_s)
            if name == "jtln_dynamic":
                dynamic.after_step(step)  # as jtln.train calls it: every `period` steps C is recomputed

    times = alternating({name: partial(one_epoch, name) for name in steps}, 30, warmup=2)
    RESULTS["dynamic_run_over_joint_steps"] = {**ratio_of_medians(times["jtln_dynamic"], times["joint"]), "steps_per_epoch": epoch_steps,
                                               "recomputations_per_epoch": epoch_steps // dynamic.period}


def epoch(run_prefix, setup, step):
    """One epoch of joint training over the target training set, on cached features or running the prefix."""
    backbone, batch_t, batch_s, (x_t, x_s), _ = setup
    for _ in range(-(-N_T // HP.batch_size_target)):
        if run_prefix:  # what every step costs without the cache: preprocessing and the frozen prefix
            with torch.no_grad():
                z_t, z_s = backbone.prefix(preprocess(x_t, backbone)), backbone.prefix(preprocess(x_s, backbone))
            batch_t, batch_s = (z_t, batch_t[1]), (z_s, batch_s[1])
        step(batch_t, batch_s)


def test_epoch_with_and_without_cache(setup):
    """Epochs with and without the cache alternate, as the steps do; each is a fraction of a second to ~2 s."""
    step = step_fn(METHODS["joint"](JTLN(setup[0], L_S, L_T).train(), HP))
    runs = {name: partial(epoch, run_prefix, setup, step) for name, run_prefix in (("with cache", False), ("without cache", True))}
    times = alternating(runs, EPOCH_ROUNDS, warmup=1)
    RESULTS["cache_speedup_per_epoch"] = ratio_of_medians(times["without cache"], times["with cache"])


def test_report_ratios():
    if len(RESULTS) < 3:
        pytest.skip("run the whole module to get the ratios")
    report = {**RESULTS, "torch_threads": torch.get_num_threads()}
    print("\n" + json.dumps(report, indent=2))
    Path(".benchmarks").mkdir(exist_ok=True)
    Path(".benchmarks/training_speed.json").write_text(json.dumps(report, indent=2))
