"""Host reads per training step over whole runs of every trained method, on the CPU with the torch loop forced (what a GPU runs).

Whole runs (2 epochs of 18 steps on a small synthetic problem: steps, the per-epoch reads, validation), so that the code
before issue 24, which read every step's loss in the training loop, is counted the same way.  From a checkout's root,
this file copied outside it (it runs on main and on ab33049, the commit before issue 24):

    git worktree add /tmp/before ab33049 && cd /tmp/before && python /tmp/reads_per_step.py

``--fake-cuda``: the same runs on a fake CUDA device (``tests/fake_cuda.py``: the caches and the network there, the
default loop, Triton's, under its fake implementation), counting besides the Python-level reads the hidden ones and
the gathers of device data with host indices (:mod:`jtln.host_reads`).
"""
import copy
import json
import sys

import torch

sys.path.insert(0, ".")
from jtln.cache import cached_features  # noqa: E402
from jtln.costs import class_cost_matrix  # noqa: E402
from jtln.data import draw, restrict  # noqa: E402
from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays  # noqa: E402
from jtln.hparams import resolve  # noqa: E402
from jtln.methods import METHODS  # noqa: E402
from jtln.models import efficientnet_lite0  # noqa: E402
from jtln.ot import GibbsKernel  # noqa: E402
from jtln.probe import fit_probe, fit_with  # noqa: E402
from jtln.train import RunData, train  # noqa: E402

READERS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
FAKE_CUDA = "--fake-cuda" in sys.argv
if not FAKE_CUDA:
    build = GibbsKernel.of.__func__
    GibbsKernel.of = classmethod(lambda cls, C, lam, loop=None: build(cls, C, lam, loop="torch"))

full = fashion_mnist_itl("Footwear", arrays=synthetic_arrays(40, 3))
itl, (d,) = restrict(full, [draw(full, 32, seed=0, validation_fraction=0.25, source_per_class=16)])
torch.manual_seed(0)
backbone = efficientnet_lite0(weights=None, image_size=32)
cached = cached_features(backbone, itl, "fake-fashion")
try:
    data = RunData.of(cached, d)
except TypeError:  # ab33049
    data = RunData.of(cached, d, False)
HP = resolve({"epochs": 2, "source_epochs": 1, "batch_size_target": 4, "batch_size_source": 8, "cost_samples_per_class": 6})
try:
    from jtln.methods import cost_options
    options = cost_options(HP)
except ImportError:
    options = {}
def cost(k):
    args = (k, data.P["source"], data.y["source"], data.P["target_train"], data.y["target_train"], itl.L_s, itl.L_t)
    try:
        return class_cost_matrix(*args, **options)
    except TypeError:  # ab33049
        return class_cost_matrix(*args, HP)


costs = {k: cost(k) for k in ("mmd", "ot")}
try:
    probe_t = fit_probe(data.P["target_train"], data.y["target_train"], itl.L_t)
    probes = (probe_t, fit_with(data.P["source"], data.y["source"], itl.L_s, probe_t.C, probe_t.scaling))
except TypeError:  # before the cross-validated probe
    probe_t = fit_probe(data.P["target_train"], data.y["target_train"], data.P["target_val"], data.y["target_val"], itl.L_t)
    probes = (probe_t, fit_with(data.P["source"], data.y["source"], itl.L_s, probe_t.C))
if FAKE_CUDA:
    from tests.fake_cuda import fake_cuda, reset

    result = {}
    for m in sorted(METHODS):
        if not METHODS[m].trains:
            continue
        cost = {"jtln_mmd": "mmd", "jtln_ot": "ot", "jtln_dynamic": "mmd", "jtln_learned_cost": "mmd"}.get(m)
        pretrained = copy.deepcopy(backbone)
        with fake_cuda() as counts:
            on_device = RunData.of(cached.apply(lambda t: t.to("cuda")), d)
            reset(counts)
            _, log = train(m, lambda: pretrained, on_device, HP, 0, itl.L_s, itl.L_t, None if cost is None else costs[cost].clone(),
                           probes, device="cuda")
        n = len(log["steps"])
        result[m] = {"steps": n, **{k: round(counts[k] / n, 2) for k in ("reads", "hidden_reads", "host_indices")}}
    print(json.dumps(result))
    sys.exit()
counts = {"reads": 0}
for name in READERS:
    original = getattr(torch.Tensor, name)

    def counted(self, *a, _o=original, **k):
        counts["reads"] += 1
        return _o(self, *a, **k)

    setattr(torch.Tensor, name, counted)
result = {}
for m in sorted(METHODS):
    if not getattr(METHODS[m], "trains", True) or m == "linear_probe":
        continue
    cost = {"jtln_mmd": "mmd", "jtln_ot": "ot", "jtln_dynamic": "mmd", "jtln_learned_cost": "mmd"}.get(m)
    counts["reads"] = 0
    _, log = train(m, lambda: copy.deepcopy(backbone), data, HP, 0, itl.L_s, itl.L_t, None if cost is None else costs[cost].clone(),
                   probes)
    result[m] = {"steps": len(log["steps"]), "reads": counts["reads"], "per_step": round(counts["reads"] / len(log["steps"]), 2)}
print(json.dumps(result))
