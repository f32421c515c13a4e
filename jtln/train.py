"""One run: train a registered method on cached features and evaluate it on the target test split."""

import platform
import random
import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from jtln.costs import mmd_cost_matrix, ot_cost_matrix
from jtln.methods import METHODS
from jtln.models import JTLN
from jtln.ot import solve
from jtln.sinkhorn import transport_plan


def seed_everything(seed):
    """Seed Python, NumPy and torch together; deterministic kernels where torch has them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def library_versions():
    names = ["torch", "torchvision", "timm", "numpy", "scipy", "pot", "jtln"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def batches(Z, y, batch_size, generator, device):
    """Endless shuffled mini-batches (a fresh permutation each pass), drawn from ``generator``."""
    while True:
        for idx in torch.randperm(len(y), generator=generator).split(batch_size):
            yield Z[idx].to(device), y[idx].to(device)


def cost_matrix(kind, cached, hp, L_s, L_t):
    """The Sec. 3.4 cost matrix from pretrained penultimate features of source and target *training* images.

    At most ``hp.cost_samples_per_class`` images per class enter (the first
    ones in split order); target test images never do.
    """
    P_s, y_s = _first_per_class(cached.P["source"], cached.y["source"], hp.cost_samples_per_class)
    P_t, y_t = _first_per_class(cached.P["target_train"], cached.y["target_train"], hp.cost_samples_per_class)
    P_s, P_t = P_s.double(), P_t.double()
    if kind == "mmd":
        C = mmd_cost_matrix(P_s, y_s, P_t, y_t, L_s=L_s, L_t=L_t, estimator=hp.mmd_estimator, normalize=hp.cost_normalize)
    elif kind == "ot":
        C = ot_cost_matrix(P_s, y_s, P_t, y_t, L_s=L_s, L_t=L_t, normalize=hp.cost_normalize)
    else:
        raise ValueError(f"cost must be 'mmd' or 'ot', got {kind!r}")
    return C.float()


def _first_per_class(P, y, limit):
    keep = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        keep[(y == c).nonzero().flatten()[:limit]] = True
    return P[keep], y[keep]


def train(method_name, backbone_factory, cached, hp, seed, L_s, L_t, C=None, device="cpu", progress=False):
    """Train ``method_name`` from the pretrained weights; returns the method (network inside) and a log."""
    from tqdm.auto import tqdm

    seed_everything(seed)
    backbone = backbone_factory()
    network = JTLN(backbone, L_s, L_t).to(device)
    method = METHODS[method_name](network, hp, None if C is None else C.to(device))
    generator = torch.Generator().manual_seed(seed)
    target = batches(cached.Z["target_train"], cached.y["target_train"], hp.batch_size_target, generator, device)
    source = batches(cached.Z["source"], cached.y["source"], hp.batch_size_source, generator, device)
    phases = method.phases(len(cached.y["target_train"]), len(cached.y["source"]))
    log, step = [], 0
    bar = tqdm(total=sum(p.steps for p in phases), desc=f"{method_name} seed {seed}", disable=not progress, leave=False)
    network.train()
    for phase in phases:
        optimizer = torch.optim.SGD(network.param_groups(hp), momentum=hp.momentum, weight_decay=hp.weight_decay)
        for _ in range(phase.steps):
            batch_t = next(target) if phase.target else None
            batch_s = next(source) if phase.source else None
            loss, parts = method.loss(batch_t, batch_s)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            log.append({"step": step, **parts})
            bar.update()
    bar.close()
    return method, log


@torch.no_grad()
def evaluate(method, Z, y, L_t, device="cpu", batch_size=512, C=None, lam=None):
    """Multi-class accuracy (the paper's metric), per-class accuracy, predictions; and the mean plan if C is given."""
    method.network.eval()
    logits_s, logits_t = zip(*(method.network(z.to(device)) for z in Z.split(batch_size)))
    logits_s, logits_t = torch.cat(logits_s).cpu(), torch.cat(logits_t).cpu()
    predictions = logits_t.argmax(1)
    correct = predictions == y
    per_class = [correct[y == c].float().mean().item() if (y == c).any() else None for c in range(L_t)]
    result = {"accuracy": correct.float().mean().item(), "per_class_accuracy": per_class,
              "predictions": predictions.tolist(), "labels": y.tolist()}
    if C is not None:
        h_s, h_t = logits_s.double().softmax(1), logits_t.double().softmax(1)
        scalings = solve(h_s, h_t, C.double(), lam, tol=1e-6)
        result["mean_plan"] = transport_plan(scalings, C.double(), lam).mean(0).tolist()
    return result


def run(method_name, backbone_factory, cached, hp, seed, L_s, L_t, C=None, device="cpu", progress=False):
    """Train and evaluate; returns the part of a record that a run computes."""
    start = time.perf_counter()
    method, log = train(method_name, backbone_factory, cached, hp, seed, L_s, L_t, C, device, progress)
    trained = time.perf_counter()
    test = evaluate(method, cached.Z["target_test"], cached.y["target_test"], L_t, device, C=C, lam=hp.lam)
    record = {"method": method_name, "seed": seed, "hparams": hp.to_dict(), **test,
              "timings": {"train_s": trained - start, "evaluate_s": time.perf_counter() - trained},
              "n_steps": len(log), "final_losses": log[-1] if log else {}, "versions": library_versions(),
              "device": str(device), "cost_matrix": None if C is None else C.tolist()}
    if len(cached.y["target_val"]):
        record["val_accuracy"] = evaluate(method, cached.Z["target_val"], cached.y["target_val"], L_t, device)["accuracy"]
    return record
