"""A training step keeps the device busy: the host reads of one step of every registered method, counted on the CPU.

What a GPU runs is forced here (the torch loop of the OT core), and every way a tensor's value reaches the host is
counted (``item``, ``tolist``, ``cpu``, ``numpy``, ``bool``, ``float``, ``int``, ``index``). Each method is held to its
documented number: none beyond the OT loss's (``Method.step_reads``, :data:`jtln.sinkhorn.READS`); the counter is
:mod:`jtln.host_reads`, which the rehearsal also uses.
"""

import contextlib
import math

import pytest
import torch

import jtln.sinkhorn
from jtln.host_reads import READERS, counting
from jtln.methods import METHODS
from jtln.models import JTLN
from jtln.sinkhorn import torch_loop_reads
from jtln.train import batches, train
from tests.test_torch_branch import force_torch_loop
from tests.tiny import HP, cost_kind


@contextlib.contextmanager
def counting_reads(monkeypatch):
    """Counts every host read of a tensor (:func:`jtln.host_reads.counting`), and the torch loop's calls with their iterations."""
    with counting() as counts, monkeypatch.context() as patch:
        counts["loops"] = []
        loop = jtln.sinkhorn._scaling_iterations

        def counted_loop(a, b, K, K_T, KC, tiny, tol, max_iter, check_every, extrapolate):
            result = loop(a, b, K, K_T, KC, tiny, tol, max_iter, check_every, extrapolate)
            counts["loops"].append((result[5], check_every))
            return result

        patch.setattr(jtln.sinkhorn, "_scaling_iterations", counted_loop)
        yield counts


def training_step(method, data, device):
    """One step of ``method``'s last phase as :func:`jtln.train.train` takes it (batches, loss, backward, SGD), as a function
    that returns the step's loss parts."""
    from jtln.train import sgd

    optimizer = sgd(method.param_groups(), HP, device)
    generator = torch.Generator().manual_seed(0)
    target = batches(data.Z["target_train"], data.y["target_train"], HP.batch_size_target, generator, device)
    source = batches(data.Z["source"], data.y["source"], HP.batch_size_source, generator, device)
    phase = method.phases(HP, len(data.y["target_train"]), len(data.y["source"]))[-1]

    def step():
        loss, parts = method.loss(next(target) if phase.target else None, next(source) if phase.source else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return parts

    return step


def test_the_counter_counts_every_way_a_value_reaches_the_host_and_restores_the_tensor_type():
    x = torch.ones(3)
    before = {name: getattr(torch.Tensor, name) for name in READERS}
    with counting() as counts:
        x.sum().item(), x.tolist(), x.cpu(), x.numpy(), bool(x[0]), float(x[0]), int(x[0]), [0, 1][torch.tensor(1)]
        x + 1, x.sum(), x[0]  # computations read nothing
    assert counts["reads"] == 8
    assert {name: getattr(torch.Tensor, name) for name in READERS} == before


@pytest.mark.parametrize("name", sorted(m for m in METHODS if METHODS[m].trains))
def test_one_training_step_reads_the_device_only_where_the_ot_loss_must(tiny, monkeypatch, name):
    itl, factory, costs, data, probes = tiny.itl, tiny.factory, tiny.costs, tiny.data, tiny.probes
    force_torch_loop(monkeypatch)
    C = costs.get(cost_kind(name))
    method = METHODS[name](JTLN(factory(), itl.L_s, itl.L_t).init_heads(*probes).train(), HP, None if C is None else C.clone())
    method.start(data)
    step = training_step(method, data, "cpu")
    step()  # the first step builds what a run keeps (a fixed cost's Gibbs kernel)
    with counting_reads(monkeypatch) as counts:
        parts = step()
    expected = method.step_reads + sum(torch_loop_reads(n, every) for n, every in counts["loops"])
    assert counts["reads"] == expected, (name, counts)
    assert bool(counts["loops"]) == (C is not None)  # the JTLN variants run the torch loop, once a step
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in parts.values())  # parts stay on the device


def test_a_run_reads_its_losses_once_per_epoch_and_names_the_first_non_finite_step(tiny, monkeypatch):
    itl, factory, data, probes = tiny.itl, tiny.factory, tiny.data, tiny.probes
    _, log = train("joint", factory, data, HP, 0, itl.L_s, itl.L_t, probes=probes)
    assert len(log["steps"]) == math.ceil(len(data.y["target_train"]) / HP.batch_size_target) * HP.epochs
    assert all(isinstance(v, float) and math.isfinite(v) for s in log["steps"] for v in s.values())
    joint = METHODS["joint"]
    original, calls = joint.loss, []

    def nan_at_step_2(self, batch_t, batch_s):
        loss, parts = original(self, batch_t, batch_s)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) == 2 else (loss, parts)

    monkeypatch.setattr(joint, "loss", nan_at_step_2)
    with pytest.raises(FloatingPointError, match=r"joint: the loss is nan at step 2 "):
        train("joint", factory, data, HP.__class__(**{**HP.to_dict(), "epochs": 2}), 0, itl.L_s, itl.L_t, probes=probes)


def test_the_caches_go_to_the_device_when_they_fit_and_batches_are_gathered_there(tiny):
    from jtln.cache import RESIDENT_SHARE, on_device

    cached = tiny.cached
    assert on_device(cached, "cpu")[0] is cached
    moved, where = on_device(cached, "meta", free_bytes=cached.nbytes / RESIDENT_SHARE)
    assert all(t.device.type == "meta" for part in (moved.Z, moved.y, moved.P) for t in part.values()) and "meta" in where
    kept, where = on_device(cached, "meta", free_bytes=cached.nbytes)  # over the share: gathered on the host
    assert all(t.device.type == "cpu" for t in kept.Z.values()) and "host memory" in where
    Z = moved.Z["target_train"]
    z, y = next(batches(Z, moved.y["target_train"], 4, torch.Generator().manual_seed(0), "meta"))
    assert z.device.type == y.device.type == "meta" and z.shape[0] == 4
