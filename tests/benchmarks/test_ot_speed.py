"""Speed of jtln.ot.ot_loss (forward + backward) against the POT routes a user would pick.

Run with ``tox -e bench``; the ratios are printed and written to
``.benchmarks/ot_speed.json``.  Nothing here asserts a time: speed is a
measurement, not a test.  The problem is the Airbus shape: B = 256,
L_s = 87, L_t = 13, lam = 20, C uniform in [0, 1], float64, tol 1e-9, CPU.
"""

import json
from pathlib import Path

import numpy as np
import ot
import pytest
import torch
from ot.batch import solve_batch

from jtln.ot import ot_loss

B, L_S, L_T, LAM, TOL = 256, 87, 13, 20.0, 1e-9
MEDIANS = {}
pytestmark = pytest.mark.benchmark(group="ot_loss forward+backward, B=256, 87x13, lam=20, float64")


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    h_s = rng.random((B, L_S))
    h_t = rng.random((B, L_T))
    return h_s / h_s.sum(1, keepdims=True), h_t / h_t.sum(1, keepdims=True), rng.random((L_S, L_T))


def run(benchmark, name, fn):
    benchmark.pedantic(fn, rounds=15, warmup_rounds=2)
    MEDIANS[name] = benchmark.stats.stats.median


def test_jtln_ot_loss(benchmark, problem):
    h_s, h_t, C = (torch.tensor(x) for x in problem)

    def step():
        a, b = h_s.clone().requires_grad_(), h_t.clone().requires_grad_()
        ot_loss(a, b, C, LAM, tol=TOL).sum().backward()

    run(benchmark, "jtln.ot.ot_loss", step)


def test_pot_solve_batch(benchmark, problem):
    h_s, h_t, C = (torch.tensor(x) for x in problem)
    M = C.expand(B, L_S, L_T).contiguous()

    def step():
        # solve_batch's envelope gradient covers M only; the gradients w.r.t. the
        # histograms are its centred dual potentials (Eq. 11), taken here directly.
        res = solve_batch(M, reg=1 / LAM, a=h_s, b=h_t, tol=TOL, max_iter=100_000, grad="detach")
        f, g = res.potentials
        return res.value_linear, f - f.mean(1, keepdim=True), g - g.mean(1, keepdim=True)

    run(benchmark, "ot.batch.solve_batch", step)


def test_pot_sinkhorn2_loop(benchmark, problem):
    """Forward only (no gradient): a lower bound on what the loop costs a training step."""
    h_s, h_t, C = problem

    def step():
        return [ot.sinkhorn2(h_s[i], h_t[i], C, reg=1 / LAM, stopThr=TOL) for i in range(B)]

    run(benchmark, "loop of ot.sinkhorn2", step)


def test_report_ratios():
    if "jtln.ot.ot_loss" not in MEDIANS or len(MEDIANS) < 3:
        pytest.skip("run the whole module to get the ratios")
    ours = MEDIANS["jtln.ot.ot_loss"]
    ratios = {name: t / ours for name, t in MEDIANS.items() if name != "jtln.ot.ot_loss"}
    report = {"median_seconds": MEDIANS, "speedup_of_jtln": ratios, "torch_threads": torch.get_num_threads()}
    print("\n" + json.dumps(report, indent=2))
    Path(".benchmarks").mkdir(exist_ok=True)
    Path(".benchmarks/ot_speed.json").write_text(json.dumps(report, indent=2))
