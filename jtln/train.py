"""One run: a registered method trained on one draw's cached features, early-stopped on validation or refit on all labels.

The protocol, the same for every method:

1. both heads start from linear probes on the pretrained penultimate
   features (LP-FT; the target probe's L2 strength chosen on the draw's
   validation images, the source head fitted with the same strength);
2. the method's phases run (:meth:`jtln.methods.Method.phases`);
3. a *search trial* (:class:`RunData` with a ``target_val`` split) measures
   the validation cross-entropy (and accuracy) after every epoch of a phase
   on the target and keeps the network of the epoch with the lowest
   cross-entropy (the earliest among ties) — early stopping, so ``epochs``
   is a budget; its score is that cross-entropy, and it never sees a test
   image;
4. a *refit* (no ``target_val``: its training split holds every labelled
   image, validation ones included, and its probes were refit on them too)
   trains for exactly ``epochs`` target epochs, the count the search
   selected, keeps the last network and is tested once.

A training step never waits for the device, except where the OT loss must
(:data:`jtln.sinkhorn.READS`): the loss and its parts stay on the device and
are read together once per epoch (:func:`_read_steps`), which also finds a
non-finite loss and names its step; features already on the run's device are
batched there (:func:`batches`).

Why cross-entropy and not accuracy (protocol 2): the validation split is
small (39 images for Footwear at 67 images per class, so one image is 2.6
points of accuracy).  The best-epoch accuracy is then the maximum of a noisy,
discrete curve: it ties across trials and rewards configurations whose
curves swing most (in protocol 1 a trial whose seed curves fell to 0.33 was
selected on a tie).  The mean validation cross-entropy is a proper scoring
rule: continuous, it seldom ties, and it charges confident mistakes.
"""

import contextlib
import functools
import math
import platform
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import torch

from jtln.device import canonical
from jtln.methods import METHODS
from jtln.models import JTLN, evaluating
from jtln.ot import solve
from jtln.seeding import seed_everything
from jtln.sinkhorn import transport_plan

#: the version of the training and selection protocol; part of every run's identity, so a change never reuses old records
#: (1: early stopping and selection on validation accuracy; 2: on validation cross-entropy; 3: the tested runs refit on
#: training and validation images for the selected epoch count; 4: each seed searches for itself, trials early-stop with
#: a patience, the heads' probes cross-validated on raw features)
PROTOCOL = 4


def library_versions():
    """The versions of Python and of the libraries a run's result depends on (None for one not installed), for its record."""
    return dict(_library_versions())


@functools.cache  # read once per process: importlib.metadata scans every folder of sys.path for each name
def _library_versions():
    names = ["torch", "torchvision", "timm", "numpy", "numba", "scipy", "pot", "scikit-learn", "optuna", "jtln"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


#: the arithmetic of a run's network: "float32", or "bf16" (autocast on the network's layers; the OT loss and the cost
#: matrices stay in float32 or float64, :mod:`jtln.ot` and :mod:`jtln.costs`)
PRECISIONS = ("float32", "bf16")


@contextlib.contextmanager
def arithmetic(device, precision="float32", tf32=False):
    """For the block: autocast to bfloat16 with ``precision="bf16"``, and TF32 matrix products on CUDA with ``tf32``.

    The previous TF32 settings are restored afterwards.  The defaults change nothing.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = torch.device(device).type
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(tf32)
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@dataclass(frozen=True)
class Rows:
    """Rows ``index`` of a cached ``pool`` [N, ...], gathered only when read: a run's share of a feature cache, which the
    runs of a process share instead of each copying its slice (2.4 GB a run at the paper's scale).

    What a run does with its prefix outputs: ``len``, ``device``, ``shape``,
    ``rows[i]`` (a gather of the indexed rows) and ``split(size)`` (gathered
    chunks, in order).  ``index`` lives on the pool's device.
    """

    pool: torch.Tensor
    index: torch.Tensor

    def __len__(self):
        return len(self.index)

    @property
    def device(self):
        return self.pool.device

    @property
    def shape(self):
        return torch.Size((len(self.index), *self.pool.shape[1:]))

    def __getitem__(self, idx):
        return self.pool[self.index[idx]]

    def split(self, size):
        return [self.pool[chunk] for chunk in self.index.split(size)]


@dataclass(frozen=True)
class RunData:
    """What one run sees: prefix outputs ``Z``, labels ``y`` and pretrained penultimate features ``P`` per split.

    Splits: ``target_train``, ``source``, and either ``target_val`` (a run
    that early-stops on it) or ``target_test`` (a refit, which is tested).
    From :meth:`of`, ``Z``'s splits are :class:`Rows` of the shared cache.
    """

    Z: dict
    y: dict
    P: dict

    @classmethod
    def of(cls, cached, draw, *, refit=False, test=None):
        """The rows of ``cached`` (:class:`jtln.cache.CachedITL`) that ``draw`` (:class:`jtln.data.Draw`) selects.

        ``refit``: its training and validation images together train the run;
        otherwise the validation images are held out.  ``test`` (default:
        ``refit``): with the target test split.
        """
        rows = {"target_train": ("target_train", draw.training(refit))}
        if not refit:
            rows["target_val"] = ("target_train", draw.target_val)
        rows["source"] = ("source", draw.source)
        parts = {name: {} for name in ("Z", "y", "P")}
        for split, (pool, index) in rows.items():
            index = torch.as_tensor(index, dtype=torch.long)
            for name in parts:
                tensor = getattr(cached, name)[pool]
                index = index.to(tensor.device)  # indices where the cache is
                # the prefix outputs stay in the shared cache, read a batch at a time; labels and features are small: gathered
                parts[name][split] = Rows(tensor, index) if name == "Z" else tensor[index]
        if refit if test is None else test:
            for name in parts:
                parts[name]["target_test"] = getattr(cached, name)["target_test"]
        return cls(**parts)

    @property
    def validated(self):
        """Whether the run early-stops on a validation split (a search trial) or trains its full budget (a refit)."""
        return "target_val" in self.y


def batches(Z, y, batch_size, generator, device):
    """Endless shuffled mini-batches (a fresh permutation each pass), drawn from ``generator`` (on the CPU: the same batches on
    every device).

    Features already on ``device`` are gathered there, with each pass's
    permutation copied to the device once (not a copy of indices per batch);
    others are gathered on the host and copied.
    """
    device = canonical(device)
    resident = Z.device == device and y.device == device
    while True:
        order = torch.randperm(len(y), generator=generator)
        if resident:
            order = order.to(device, non_blocking=True)  # one copy a pass, queued behind the device's work
        for idx in order.split(batch_size):
            if resident:
                yield Z[idx], y[idx]
            else:
                yield Z[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)


def _read_steps(pending, method_name, first_step):
    """The steps' losses and parts (0-d tensors, on the device) as floats, in one read; raises at the first non-finite loss."""
    if not pending:
        return []
    values = torch.stack([t.double() for loss, parts in pending for t in (loss, *parts.values())]).tolist()
    steps, at = [], 0
    for k, (_, parts) in enumerate(pending):
        loss, read = values[at], dict(zip(parts, values[at + 1 : at + 1 + len(parts)]))
        at += 1 + len(parts)
        if not math.isfinite(loss):
            why = ("; an OT term of NaN: Sinkhorn misplaced over 0.1% of the mass or overflowed (on a GPU the loss does not "
                   "stop to read it, jtln.ot's deferred)" if math.isnan(read.get("ot", 0.0)) else "")
            raise FloatingPointError(f"{method_name}: the loss is {loss} at step {first_step + k + 1} ({read}){why}")
        steps.append(read)
    return steps


@torch.no_grad()
def validation(network, Z, y, device, batch_size=512):
    """``(accuracy, cross_entropy)`` of the target head on ``(Z, y)``: the fraction correct and the mean negative log-likelihood.

    Counted on the device where the network's logits are, and read once
    (:data:`VALIDATION_READS`).
    """
    correct = nll = 0
    with evaluating(network):
        for z, t in zip(Z.split(batch_size), y.split(batch_size)):
            logits = network(z.to(device))[1].float()
            t = t.to(logits.device)
            correct = correct + (logits.argmax(1) == t).sum()
            nll = nll + torch.nn.functional.cross_entropy(logits, t, reduction="sum").double()  # each batch's sum in float64
    if not len(y):
        return math.nan, math.nan
    correct, nll = torch.stack([correct.double(), nll.double()]).tolist()
    return correct / len(y), nll / len(y)


#: host reads of one :func:`validation` (the tests hold it to this)
VALIDATION_READS = 1


def sgd(param_groups, hp, device):
    """SGD with momentum and weight decay; on CUDA the multi-tensor ("foreach") kernels: a few launches a step for all
    parameters, not a loop over them (the fused kernel has no fake-tensor implementation to test it with on the CPU)."""
    foreach = canonical(device).type == "cuda" or None
    return torch.optim.SGD(param_groups, momentum=hp.momentum, weight_decay=hp.weight_decay, foreach=foreach)


def train(method_name, backbone_factory, data, hp, seed, L_s, L_t, C=None, probes=(None, None), device="cpu", progress=False,
          precision="float32", tf32=False, patience=0):
    """Train ``method_name`` from the pretrained weights and the probe-initialised heads (module docstring).

    ``probes``: the :class:`jtln.probe.Probe` of the target and of the source
    head; a head whose probe is None keeps the random initialisation of
    :class:`torch.nn.Linear` (what LP-FT avoids: pass probes to follow the
    protocol).  ``precision`` and ``tf32``: the network's arithmetic
    (:func:`arithmetic`).

    With a validation split in ``data``, the best validation epoch is kept,
    and with ``patience`` > 0 training stops once that many target epochs
    have passed without a lower validation cross-entropy (early stopping);
    without a validation split (a refit), the last epoch is kept.  Returns the method (network inside, at
    the kept epoch) and a log: ``steps`` (one dict of loss parts per step),
    ``val_curve`` and ``val_loss_curve`` (validation accuracy and
    cross-entropy after each target epoch; empty for a refit),
    ``best_epoch`` (1-based, the kept epoch; 0 for a method that trains
    nothing), ``stopped_epoch`` (the epochs trained), ``val_loss`` and ``val_accuracy`` (at it; None for a refit),
    and ``method``: the method's own summary (a learned cost, a
    relationship) at that epoch; ``timings``: ``setup_s`` (before the first
    step), ``phases`` (``[steps, seconds]`` of each phase, its epochs' ends
    left out), ``epoch_end_s`` (the method's ``after_epoch`` and validation)
    and ``epochs``, read where the host waits for the device anyway.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    device = canonical(device)
    seed_everything(seed)
    network = JTLN(backbone_factory(), L_s, L_t, device=device).init_heads(*probes)
    method = METHODS[method_name](network, hp, None if C is None else C.to(device))
    generator = torch.Generator().manual_seed(seed)
    target = batches(data.Z["target_train"], data.y["target_train"], hp.batch_size_target, generator, device)
    source = batches(data.Z["source"], data.y["source"], hp.batch_size_source, generator, device)
    n_t = len(data.y["target_train"])
    epoch_steps = math.ceil(n_t / hp.batch_size_target)
    phases = method.phases(hp, n_t, len(data.y["source"]))
    method.start(data)

    def val():
        with arithmetic(device, precision, tf32):
            return validation(network, data.Z["target_val"], data.y["target_val"], device)

    kept = KeptEpoch(method, patience)
    if not phases and data.validated:
        kept.offer(0, *val())
    bar = tqdm(total=sum(p.steps for p in phases), desc=f"{method_name} seed {seed}", disable=not progress, leave=False)
    network.train()
    # where the time goes, measured where the host waits for the device anyway (the reads): before the first step, each
    # phase's steps, and the epochs' ends (the method's after_epoch, validation)
    timings = {"setup_s": time.perf_counter() - started, "phases": [], "epoch_end_s": 0.0}
    steps, pending, epoch = [], [], 0
    for phase in phases:
        phase_started, phase_epoch_ends = time.perf_counter(), 0.0
        optimizer = sgd(method.param_groups(), hp, device)
        for step in range(1, phase.steps + 1):
            batch_t = next(target) if phase.target else None
            batch_s = next(source) if phase.source else None
            pending.append(_step(method, optimizer, batch_t, batch_s, arithmetic(device, precision, tf32)))
            method.after_step(step)
            bar.update()
            end_of_epoch = phase.target and (step % epoch_steps == 0 or step == phase.steps)
            if end_of_epoch or step == phase.steps:  # one read per epoch (and per source phase), not one per step
                steps += _read_steps(pending, method_name, len(steps))
                pending = []
            if end_of_epoch:
                epoch_started = time.perf_counter()
                epoch += 1
                method.after_epoch(epoch)
                if data.validated:
                    kept.offer(epoch, *val())
                phase_epoch_ends += time.perf_counter() - epoch_started
                if kept.stopped:
                    break
        timings["phases"].append([phase.steps, time.perf_counter() - phase_started - phase_epoch_ends])
        timings["epoch_end_s"] += phase_epoch_ends
        if kept.stopped:
            break
    bar.close()
    best = kept.restore() if data.validated else {"epoch": epoch, "accuracy": None, "loss": None,
                                                       "summary": method.summary()}  # a refit keeps its last epoch
    network.eval()
    if data.validated and not math.isfinite(best["loss"]):
        raise FloatingPointError(f"{method_name}: the validation cross-entropy is not finite at any epoch ({kept.loss_curve})")
    timings["epochs"] = epoch
    return method, {"steps": steps, "val_curve": kept.curve, "val_loss_curve": kept.loss_curve, "best_epoch": best["epoch"],
                    "stopped_epoch": epoch,
                    "val_accuracy": best["accuracy"], "val_loss": best["loss"], "method": best["summary"], "timings": timings}


def _step(method, optimizer, batch_t, batch_s, forward_arithmetic):
    """One optimisation step of ``method`` on a target and/or a source batch, its forward pass inside
    ``forward_arithmetic`` (:func:`arithmetic`); its loss and parts, still on the device."""
    with forward_arithmetic:
        loss, parts = method.loss(batch_t, batch_s)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), parts


class KeptEpoch:
    """The epoch a validated run keeps: the lowest validation cross-entropy so far, with the network's state and the
    method's summary then; ``stopped`` once ``patience`` (> 0) epochs have passed without a lower one (early stopping).
    ``curve`` and ``loss_curve``: the validation accuracy and cross-entropy offered after each epoch."""

    def __init__(self, method, patience=0):
        self.method, self.patience, self.curve, self.loss_curve, self.stopped = method, patience, [], [], False
        self.best = {"epoch": 0, "accuracy": None, "loss": math.inf, "state": None, "summary": method.summary()}

    def offer(self, epoch, accuracy, cross_entropy):
        """The validation after ``epoch`` (0: before any step, for a method that trains nothing)."""
        if epoch:
            self.curve.append(accuracy)
            self.loss_curve.append(cross_entropy)
        if cross_entropy < self.best["loss"]:
            state = {k: v.detach().clone() for k, v in self.method.network.state_dict().items()} if epoch else None
            self.best = {"epoch": epoch, "accuracy": accuracy, "loss": cross_entropy, "state": state,
                         "summary": self.method.summary()}
        self.stopped = self.patience > 0 and epoch - self.best["epoch"] >= self.patience

    def restore(self):
        """Put the kept epoch's state back into the network; the kept epoch's entry."""
        if self.best["state"] is not None:
            self.method.network.load_state_dict(self.best["state"])
        return self.best


@torch.no_grad()
def evaluate(method, Z, y, L_t, device="cpu", batch_size=512, C=None, lam=None):
    """Multi-class accuracy (the paper's metric), per-class accuracy, predictions; and the mean plan if C is given.

    Computed on the device of the network's logits and read at the end, in
    one copy (and the reads of one Sinkhorn call for the plan).
    """
    method.network.eval()
    logits_s, logits_t = zip(*(method.network(z.to(device)) for z in Z.split(batch_size)))
    logits_s, logits_t = torch.cat(logits_s).float(), torch.cat(logits_t).float()
    y = y.to(logits_t.device)
    predictions = logits_t.argmax(1)
    # per class without a data-dependent shape: an image-by-class indicator, summed
    members = (y[:, None] == torch.arange(L_t, device=y.device)).double()
    per_class = torch.stack([members.sum(0), members.T @ (predictions == y).double()])
    parts = [predictions, y, per_class.flatten()]
    if C is not None:
        C = C.to(logits_t.device, torch.float64)
        h_s, h_t = logits_s.double().softmax(1), logits_t.double().softmax(1)
        scalings = solve(h_s, h_t, C, lam, tol=1e-6)
        parts.append(transport_plan(scalings, C, lam).mean(0).flatten())
    read = torch.cat([p.double() for p in parts]).cpu()  # one copy to the host
    n = len(y)
    predictions, labels = read[:n].long().tolist(), read[n : 2 * n].long().tolist()
    counts, hits = read[2 * n : 2 * n + L_t].tolist(), read[2 * n + L_t : 2 * n + 2 * L_t].tolist()
    result = {"accuracy": sum(hits) / n if n else math.nan,
              "per_class_accuracy": [h / c if c else None for h, c in zip(hits, counts)],
              "predictions": predictions, "labels": labels}
    if C is not None:
        result["mean_plan"] = read[2 * n + 2 * L_t :].view(*C.shape).tolist()
    return result


def run(method_name, backbone_factory, data, hp, seed, L_s, L_t, C=None, probes=(None, None), device="cpu", test=True,
        precision="float32", tf32=False, patience=0):
    """Train (:func:`train`) and, if ``test``, evaluate on the target test split; the part of a record that a run computes."""
    start = time.perf_counter()
    method, log = train(method_name, backbone_factory, data, hp, seed, L_s, L_t, C, probes, device, precision=precision, tf32=tf32,
                        patience=patience)
    trained = time.perf_counter()
    record = {"val_accuracy": log["val_accuracy"], "val_loss": log["val_loss"], "best_epoch": log["best_epoch"],
              "stopped_epoch": log["stopped_epoch"],
              "val_curve": log["val_curve"], "val_loss_curve": log["val_loss_curve"],
              "n_steps": len(log["steps"]), "final_losses": log["steps"][-1] if log["steps"] else {}, **log["method"],
              "versions": library_versions(), "device": str(canonical(device))}
    if test:
        moved = METHODS[method_name].final_cost  # a method whose cost matrix moves: its plans with the cost it ended with
        final = log["method"].get(moved) if moved else None
        C_plan = C if final is None else torch.tensor(final, dtype=C.dtype)
        with arithmetic(device, precision, tf32):
            record.update(evaluate(method, data.Z["target_test"], data.y["target_test"], L_t, device, C=C_plan, lam=hp.lam))
        record["cost_matrix"] = None if C is None else C.tolist()
    record["timings"] = {"train_s": trained - start, "evaluate_s": time.perf_counter() - trained, **log["timings"]}
    return record
