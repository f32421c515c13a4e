"""Device placement on a CUDA device that is not there: every registered method's run on fake CUDA tensors.

:mod:`tests.fake_cuda` makes ``.to("cuda")`` work on any machine and raises
on an operation that mixes devices; :func:`jtln.host_reads.counting` flags
every read of the device that a Python-level counter cannot see (a copy to
the host, a data-dependent shape) and every gather of device data with host
indices.  The caches and the network are put on the fake device as the
sweep puts them on a large GPU (:func:`jtln.cache.on_device`), and each
method is run whole (setup, its phases, validation after each epoch, the
test), then one training step and one validation alone, counted.
"""

import copy

import pytest
import torch
from torch._subclasses.fake_tensor import DynamicOutputShapeException

import jtln.methods
import jtln.scaling_triton
import jtln.sinkhorn
from jtln.methods import METHODS
from jtln.models import JTLN
from jtln.sinkhorn import READS
from jtln.train import VALIDATION_READS, RunData, run, validation
from tests.fake_cuda import fake_cuda, reset
from tests.test_host_syncs import training_step
from tests.tiny import HP, cost_kind, tiny_problem

CUDA = torch.device("cuda", 0)


@pytest.fixture(scope="module")
def problem():
    """A tiny ITL problem as the sweep prepares it: its draw, CPU caches, cost matrices and probes."""
    problem = tiny_problem()
    itl, d, backbone, cached, costs, probes = problem.itl, problem.draw, problem.backbone, problem.cached, problem.costs, problem.probes
    return itl, d, backbone, cached, costs, probes


def _on_fake_cuda(problem, refit):
    """The run's data gathered from caches on the fake device, as :func:`reproduce.execute.train_job` gathers it."""
    itl, d, backbone, cached, costs, probes = problem
    return RunData.of(cached.apply(lambda t: t.to("cuda")), d, refit=refit, test=True)


def _clean(counts):
    return {"hidden_reads": counts["hidden_reads"], "host_indices": counts["host_indices"]}


def recomputed_on_the_device(calls):
    """A stand-in for the dynamic cost's recomputation (:func:`jtln.costs.class_cost_matrix`), which fake tensors cannot
    run: its per-class selections have shapes that depend on the labels (on a GPU: a few syncs per recomputation, every
    share of an epoch).  It checks that every input is on the cost matrix's device and returns a matrix there; the
    arithmetic itself is held to the reference on the CPU (``tests/test_beyond.py``)."""

    def stand_in(kind, P_s, y_s, P_t, y_t, L_s, L_t, **options):
        calls.append({t.device for t in (P_s, y_s, P_t, y_t)})
        return torch.zeros(L_s, L_t, device=P_s.device)

    return stand_in


@pytest.mark.parametrize("refit", [False, True], ids=["trial", "refit"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_whole_on_a_fake_cuda_device_without_hidden_reads(problem, name, refit, monkeypatch):
    itl, d, backbone, cached, costs, probes = problem
    C = costs.get(cost_kind(name))
    pretrained = copy.deepcopy(backbone)  # copied outside the fake mode, where its weights are real
    recomputations = []
    monkeypatch.setattr(jtln.methods, "class_cost_matrix", recomputed_on_the_device(recomputations))
    with fake_cuda() as counts:
        data = _on_fake_cuda(problem, refit)
        assert _clean(counts) == {"hidden_reads": 0, "host_indices": 0}  # the run's rows gathered on the device
        record = run(name, lambda: pretrained, data, HP, 0, itl.L_s, itl.L_t, C=C, probes=probes, device="cuda")
    assert record["device"] == str(CUDA)
    assert _clean(counts) == {"hidden_reads": 0, "host_indices": 0}, name
    assert all(devices == {CUDA} for devices in recomputations) and bool(recomputations) == (name == "jtln_dynamic")
    assert len(record["predictions"]) == len(data.y["target_test"])


@pytest.mark.parametrize("name", sorted(m for m in METHODS if METHODS[m].trains))
def test_a_training_step_on_fake_cuda_reads_only_what_the_method_documents(problem, monkeypatch, name):
    itl, d, backbone, cached, costs, probes = problem
    C = costs.get(cost_kind(name))
    loops = []  # the Sinkhorn loops a step runs: on CUDA the Triton one, which reads nothing

    def counting_calls(original, name):
        def counted(*args):
            loops.append(name)
            return original(*args)

        return counted

    for module, loop in ((jtln.sinkhorn, "_scaling_iterations"), (jtln.scaling_triton, "iterate")):
        monkeypatch.setattr(module, loop, counting_calls(getattr(module, loop), loop))
    pretrained = copy.deepcopy(backbone)
    with fake_cuda() as counts:
        data = _on_fake_cuda(problem, refit=False)
        network = JTLN(pretrained, itl.L_s, itl.L_t, device="cuda").init_heads(*probes).train()
        method = METHODS[name](network, HP, None if C is None else C.to("cuda"))
        method.start(data)
        step = training_step(method, data, "cuda")
        step()  # the first step builds what a run keeps (a fixed cost's Gibbs kernel)
        reset(counts)
        loops.clear()
        parts = step()
        step_counts = dict(counts)
        reset(counts)
        validation(network, data.Z["target_val"], data.y["target_val"], "cuda")
        validation_counts = dict(counts)
    assert all(p.device == CUDA for p in network.parameters())
    expected = method.step_reads + READS["triton_deferred"] * len(loops)
    assert (step_counts["reads"], _clean(step_counts)) == (expected, {"hidden_reads": 0, "host_indices": 0}), (name, step_counts)
    assert loops == (["iterate"] if C is not None else [])  # the JTLN variants run the Triton loop, once a step
    assert all(v.device == CUDA and v.dim() == 0 for v in parts.values())  # the parts stay on the device
    assert (validation_counts["reads"], _clean(validation_counts)) == (VALIDATION_READS, {"hidden_reads": 0, "host_indices": 0})


def test_the_counter_sees_what_the_python_level_wrappers_cannot():
    with fake_cuda() as counts:
        x = torch.arange(6.0, device="cuda")
        x[torch.tensor([0, 1])]  # host indices into device data
        with pytest.raises(DynamicOutputShapeException):  # a shape that depends on the data: the host waits for it (and a
            x[x > 2]  # fake tensor cannot know it)
        torch.ops.aten._to_copy.default(x, device="cpu")  # a copy to the host below Python
        x.sum().item()  # a read that is counted as one
    assert (counts["reads"], counts["hidden_reads"], counts["host_indices"]) == (1, 2, 1)


def test_the_stand_in_backward_gives_the_engines_gradients(problem):
    """:func:`tests.fake_cuda.backward_here` (what runs the backward on fake CUDA) against the autograd engine, on a real
    JTLN step on the CPU: the OT loss's custom backward, the broadcast biases and the shared trunk included."""
    from tests.fake_cuda import backward_here

    itl, d, backbone, cached, costs, probes = problem
    data = RunData.of(cached, d)
    network = JTLN(copy.deepcopy(backbone), itl.L_s, itl.L_t).init_heads(*probes).train()
    method = METHODS["jtln_mmd"](network, HP, costs["mmd"])
    batch_t, batch_s = (data.Z["target_train"][:8], data.y["target_train"][:8]), (data.Z["source"][:8], data.y["source"][:8])
    grads = []
    for backward in (torch.Tensor.backward, backward_here):
        network.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks
        backward(method.loss(batch_t, batch_s)[0])
        grads.append({k: p.grad.clone() for k, p in network.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(network.parameters()))
    for k in grads[0]:  # the same operations in another order of accumulation: float32 rounding apart
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-7, msg=k)


def test_a_device_named_without_its_index_is_the_indexed_one():
    from jtln.device import canonical, same

    assert canonical("cuda") == CUDA and same("cuda", "cuda:0") and not same("cuda:1", "cuda")
    assert canonical("cpu") == torch.device("cpu") and same(torch.device("cpu"), "cpu")


def test_a_runs_prefix_outputs_are_rows_of_the_shared_cache_not_a_copy(problem):
    itl, d, backbone, cached, costs, probes = problem
    data = RunData.of(cached, d, refit=False, test=True)
    for split, pool in (("target_train", "target_train"), ("target_val", "target_train"), ("source", "source")):
        rows = data.Z[split]
        assert rows.pool is cached.Z[pool]  # the cache itself, shared by every run of the process
        assert torch.equal(rows[:], cached.Z[pool][torch.as_tensor(d.training(False) if split == "target_train" else
                                                                   d.target_val if split == "target_val" else d.source)])
        assert torch.equal(torch.cat(rows.split(3)), rows[:]) and len(rows) == len(data.y[split]) == rows.shape[0]
    assert data.Z["target_test"] is cached.Z["target_test"]
