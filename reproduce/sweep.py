"""The sweep: a random search per (dataset, method, level) selected on validation data, then every seed.

1. **Prepare** each ITL dataset once: every seed's :class:`jtln.data.Draw`
   (and the search draw's) at every level, the prefix features of the
   images they use, their cost matrices and linear probes — on disk under
   ``<runs>/cache``, and in memory in a :class:`Workspace`.
2. **Search**: ``n_trials`` configurations per (dataset, method, level) —
   trial 0 the defaults, trial ``t`` drawn from :data:`jtln.hparams.SEARCH_SPACE`
   with a seed hashed from (dataset, method, level, t) — each trained on
   ``[search] draws`` *search draws* (labelled target images of their own,
   no test images) and scored by its validation cross-entropy at its
   early-stopped epoch, averaged over the draws: a few dozen validation
   images make a noisy score, and averaging k draws divides its variance by k.
3. **Select** the configuration with the lowest score (the lowest trial
   among ties).
4. **Seeds**: the selected configuration trained on each seed's draw
   (early stopping on that draw's validation images) and tested.

Every run's record is written atomically as it finishes, in a folder named
by the hash of its inputs (:mod:`reproduce.records`); an interrupted sweep
resumes where it stopped.  SIGTERM and SIGINT stop a parallel sweep
promptly: queued runs are cancelled and worker processes ended, finished
records kept.  A run holds a lock (``flock`` on ``<run folder>/lock``) while
it trains, so sweeps started at once on one runs folder share the work: a
run locked by another sweep is skipped, then waited for at the end, and run
here only if that sweep died without finishing it.  Executors: local
processes (``--workers``) or SLURM job arrays through submitit
(:mod:`reproduce.cluster`).
"""

import contextlib
import copy
import fcntl
import os
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jtln.atomic import atomic_path, write_atomic
from jtln.hparams import resolve, sample
from jtln.methods import METHODS
from jtln.seeding import stable_seed
from jtln.train import PROTOCOL
from reproduce.profile import check_device
from reproduce.records import canonical, load_record, run_dir, run_id, save_record

TRIAL, SEED = "trial", "seed"


def search_draw(k):
    """The key of the ``k``-th search draw (its images are drawn like a seed's, under another name)."""
    return f"search{k}"


@dataclass(frozen=True)
class Job:
    """One run: ``role`` "trial" (search trial ``index`` on search draw ``repeat``) or "seed" (seed ``index``, on its own draw)."""

    profile: object
    dataset: str
    method: str
    level: object
    role: str
    index: int
    hparams: tuple  # (name, value) pairs of the resolved hyper-parameters
    runs: str
    data_root: str = None
    download: bool = False
    repeat: int = 0

    @property
    def hp(self):
        return resolve(dict(self.hparams))

    @property
    def draw_seed(self):
        return search_draw(self.repeat) if self.role == TRIAL else self.index

    @property
    def train_seed(self):
        """The seed of weights and batch order: the seed itself, or one hashed from the trial's cell and index."""
        if self.role == SEED:
            return self.index
        return stable_seed(TRIAL, self.dataset, self.method, self.level, self.index, self.repeat) % 2**31

    @property
    def inputs(self):
        p = self.profile
        return canonical({"protocol": PROTOCOL, "data": p.data.identity(), "model": p.model.identity(), "device": p.run.device,
                          "dataset": self.dataset,
                          "method": self.method, "level": self.level, "role": self.role, "index": self.index,
                          "repeat": self.repeat, "hparams": dict(self.hparams)})

    @property
    def folder(self):
        return run_dir(self.runs, self.inputs)


# ---------------------------------------------------------------------------------------------- preparation


def make_backbone(profile, pretrained=None):
    from jtln.models import build_backbone

    m = profile.model
    pretrained = m.pretrained if pretrained is None else pretrained
    weights = (m.weights_path or "DEFAULT") if pretrained else None
    return build_backbone(m.backbone, weights=weights, image_size=m.image_size)


def backbone_lr_keys(profile):
    """The learning-rate groups of the profile's backbone (built without weights: only its layout matters)."""
    return make_backbone(profile, pretrained=False).lr_keys


@dataclass
class Prepared:
    """One ITL dataset ready for runs: draws by (level, seed), features, cost matrices by (level, seed, kind), probes by (level, seed)."""

    itl: object
    draws: dict
    cached: object
    costs: dict
    probes: dict
    backbone: object = field(repr=False)


class Workspace:
    """The prepared ITL datasets of a sweep (or of one worker process), each built once and then kept."""

    def __init__(self):
        self._prepared = {}

    def prepared(self, profile, dataset, runs, data_root=None, download=False):
        key = (profile.path, dataset, str(runs), data_root, download)
        if key not in self._prepared:
            self._prepared[key] = prepare(profile, dataset, runs, data_root, download)
        return self._prepared[key]


def prepare(profile, dataset, runs, data_root=None, download=False):
    """Draws, cached features, cost matrices and linear probes of one ITL dataset (cached on disk under ``<runs>/cache``)."""
    from jtln.cache import cached_features
    from jtln.costs import prepared_cost_matrices
    from jtln.data import draw, load_itl, restrict
    from jtln.probe import fit_probe, fit_with

    data = profile.data
    hp = resolve(profile.hparams)
    full = load_itl(data.dataset, dataset, root=data_root or data.root or None, download=download or data.download)
    searches = [search_draw(k) for k in range(profile.search.draws)]
    keys = [(level, seed) for level in data.levels for seed in (*searches, *profile.run.seeds)]
    draws = [draw(full, level, seed, data.validation_fraction, data.source_per_class or None, data.data_seed) for level, seed in keys]
    itl, draws = restrict(full, draws)
    draws = dict(zip(keys, draws))
    backbone = make_backbone(profile)
    cache_dir = Path(profile.model.cache_dir or Path(runs) / "cache")
    cached = cached_features(backbone, itl, data.dataset, cache_dir=cache_dir, device=profile.run.device, progress=True)
    keys = cost_keys(profile)
    # everything the stored costs and probes depend on; PROTOCOL: the probes' selection rule (jtln.train)
    settings = (cached.key, sorted(map(repr, draws.items())), hp.mmd_estimator, hp.cost_normalize, hp.cost_samples_per_class,
                PROTOCOL, *keys)
    path = cache_dir / f"prepared-{stable_seed(*settings):08x}.pt"
    stored = _load_prepared(path)
    device = profile.run.device
    if stored is None:
        stored = {"costs": {}, "probes": {}}
        for (level, seed), d in draws.items():
            P_t, y_t = cached.P["target_train"][list(d.target_train)], cached.y["target_train"][list(d.target_train)]
            P_v, y_v = cached.P["target_train"][list(d.target_val)], cached.y["target_train"][list(d.target_val)]
            P_s, y_s = cached.P["source"][list(d.source)], cached.y["source"][list(d.source)]
            matrices = prepared_cost_matrices(P_s.to(device), y_s.to(device), P_t.to(device), y_t.to(device), itl.L_s, itl.L_t, hp,
                                              keys)
            for key, C in matrices.items():  # computed on the profile's device, kept on the CPU
                stored["costs"][(level, seed, key)] = C.cpu()
            probe_t = fit_probe(P_t, y_t, P_v, y_v, itl.L_t)
            stored["probes"][(level, seed)] = (probe_t, fit_with(P_s, y_s, itl.L_s, probe_t.C))
        with atomic_path(path) as tmp:
            torch.save(stored, tmp)
    return Prepared(itl, draws, cached, stored["costs"], stored["probes"], backbone)


def _load_prepared(path):
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 -- a damaged file is rebuilt
        return None


# ---------------------------------------------------------------------------------------------- planning


def cost_keys(profile):
    """The prepared cost matrices (:data:`jtln.costs.COST_KEYS`) that the profile's methods can ask for, in a fixed order."""
    from jtln.hparams import CHOICES

    keys = set()
    for m in profile.run.methods:
        names = set(searched(m, profile, ()))
        for kind in CHOICES["cost_kind"] if "cost_kind" in names else (None,):
            for weights in CHOICES["mmd_kernel_weights"] if "mmd_kernel_weights" in names else (None,):
                chosen = {k: v for k, v in (("cost_kind", kind), ("mmd_kernel_weights", weights)) if v is not None}
                key = METHODS[m].cost_key(resolve({**profile.hparams, **chosen}))
                if key is not None:
                    keys.add(key)
    return sorted(keys)


def searched(method, profile, lr_keys):
    """The hyper-parameters ``method`` is tuned on: its registry entry's, less those the profile fixes or the backbone lacks."""
    return [name for name in METHODS[method].searches
            if name not in profile.hparams and (not name.startswith("lr_") or name in lr_keys)]


def trial_hparams(profile, dataset, method, level, trial, lr_keys):
    """Trial 0: the defaults (with the profile's fixed values); trial t: a draw seeded by a hash of (dataset, method, level, t)."""
    drawn = {} if trial == 0 else sample(searched(method, profile, lr_keys), stable_seed(dataset, method, level, trial))
    return tuple(sorted(resolve({**profile.hparams, **drawn}).to_dict().items()))


def cells(profile):
    return [(d, m, level) for d in profile.data.groups for m in profile.run.methods for level in profile.data.levels]


def plan_trials(profile, runs, lr_keys, data_root=None, download=False):
    """Every search trial of the profile; a method that searches nothing has none (it runs with the defaults)."""
    return [Job(profile, d, m, level, TRIAL, t, trial_hparams(profile, d, m, level, t, lr_keys), str(runs), data_root, download, k)
            for d, m, level in cells(profile) if searched(m, profile, lr_keys) for t in range(profile.search.n_trials)
            for k in range(profile.search.draws)]


def select(trial_records):
    """``{(dataset, method, level): trial}``: the trial with the lowest validation cross-entropy averaged over its search draws.

    The lowest trial index wins among ties (the rule of :mod:`jtln.train`).
    Each trial is summarised as ``{"trial", "hparams", "val_loss" and
    "val_accuracy" (means over the draws), "val_losses" and "val_accuracies"
    (per draw)}``.
    """
    trials = {}
    for r in trial_records:
        trials.setdefault((r["dataset"], r["method"], r["level"], r["trial"]), []).append(r)
    best = {}
    for (d, m, level, t), runs in sorted(trials.items(), key=lambda kv: kv[0][3]):
        runs = sorted(runs, key=lambda r: r["inputs"].get("repeat", 0))
        losses, accuracies = [r["val_loss"] for r in runs], [r["val_accuracy"] for r in runs]
        summary = {"trial": t, "hparams": runs[0]["hparams"], "val_losses": losses, "val_accuracies": accuracies,
                   "val_loss": sum(losses) / len(losses), "val_accuracy": sum(accuracies) / len(accuracies)}
        if (d, m, level) not in best or summary["val_loss"] < best[(d, m, level)]["val_loss"]:
            best[(d, m, level)] = summary
    return best


def plan_seeds(profile, runs, selection, lr_keys, data_root=None, download=False):
    """Every seed's run with its cell's selected hyper-parameters; cells whose search is unfinished are left out."""
    jobs = []
    for d, m, level in cells(profile):
        if searched(m, profile, lr_keys):
            if (d, m, level) not in selection:
                continue
            hparams = tuple(sorted(selection[(d, m, level)]["hparams"].items()))
        else:
            hparams = trial_hparams(profile, d, m, level, 0, lr_keys)
        jobs += [Job(profile, d, m, level, SEED, s, hparams, str(runs), data_root, download) for s in profile.run.seeds]
    return jobs


@dataclass
class Collected:
    """What the records of a runs folder hold for a profile: trials, the selection, seed runs, and what is missing."""

    trials: list
    selection: dict
    seeds: list
    missing: list


def collect(profile, runs, lr_keys=None):
    """The records of ``runs`` that the profile asks for (checked by their inputs), and the runs still missing."""
    lr_keys = lr_keys or backbone_lr_keys(profile)
    trials, missing = [], []
    for job in plan_trials(profile, runs, lr_keys):
        record = load_record(job.folder, job.inputs)
        (trials.append(record) if record else missing.append(job))
    complete = {(j.dataset, j.method, j.level) for j in missing}
    selection = {k: v for k, v in select(trials).items() if k not in complete}
    seeds = []
    for job in plan_seeds(profile, runs, selection, lr_keys):
        record = load_record(job.folder, job.inputs)
        (seeds.append(record) if record else missing.append(job))
    return Collected(trials, selection, seeds, missing)


# ---------------------------------------------------------------------------------------------- running

_WORKSPACE = Workspace()  # this process's prepared datasets (each worker process has its own)


@contextlib.contextmanager
def run_lock(folder, wait):
    """Hold the run's lock (True), or yield False at once if another process holds it and ``wait`` is false."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def execute(job, wait=False):
    """Run one job unless it already finished; its record, or None if another process holds its lock (and ``wait`` is false)."""
    record = load_record(job.folder, job.inputs)
    if record is not None:
        return record
    with run_lock(job.folder, wait) as held:
        if not held:
            return None
        return load_record(job.folder, job.inputs) or _train_and_save(job)


def _train_and_save(job):
    from jtln.data import draw_digest
    from jtln.train import RunData, run

    prep = _WORKSPACE.prepared(job.profile, job.dataset, job.runs, job.data_root, job.download)
    draw = prep.draws[(job.level, job.draw_seed)]
    tested = job.role == SEED
    hp = job.hp
    cost = METHODS[job.method].cost_key(hp)
    result = run(job.method, lambda: copy.deepcopy(prep.backbone), RunData.of(prep.cached, draw, with_test=tested), hp,
                 job.train_seed, prep.itl.L_s, prep.itl.L_t, C=prep.costs[(job.level, job.draw_seed, cost)] if cost else None,
                 probes=prep.probes[(job.level, job.draw_seed)], device=job.profile.run.device, test=tested)
    record = {"id": run_id(job.inputs), "inputs": job.inputs, "profile": job.profile.name, "role": job.role,
              "dataset": job.dataset, "method": job.method, "level": job.level, job.role: job.index, "hparams": hp.to_dict(),
              "draw_key": str(job.draw_seed),
              "train_seed": job.train_seed, "target_classes": prep.itl.target_classes, "source_classes": prep.itl.source_classes,
              "cost": cost, "draw": draw_digest(prep.itl, draw), "table1": prep.itl.table1_column(draw), "cache_key": prep.cached.key,
              "probe_C": prep.probes[(job.level, job.draw_seed)][0].C, **result, "run_by": f"{platform.node()}:{os.getpid()}",
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    save_record(job.folder, record)
    return record


def _init_worker(threads):
    torch.set_num_threads(threads)


def sweep(profile, runs=None, data_root=None, download=False, executor="local", workers=None, slurm=None):
    """Prepare, search, select and run every seed of ``profile`` (a :class:`reproduce.profile.Profile`); returns the collected records.

    ``slurm``: :class:`reproduce.cluster.SlurmOptions` for ``executor="slurm"``.
    """
    check_device(profile)
    runs = Path(runs or Path("runs") / profile.name)
    runs.mkdir(parents=True, exist_ok=True)
    write_atomic(runs / "profile.toml", Path(profile.path).read_text())
    for dataset in profile.data.groups:
        _WORKSPACE.prepared(profile, dataset, runs, data_root, download)
    lr_keys = _WORKSPACE.prepared(profile, profile.data.groups[0], runs, data_root, download).backbone.lr_keys
    workers = workers or profile.run.workers
    trials = plan_trials(profile, runs, lr_keys, data_root, download)
    _run(trials, "search trials", profile, executor, workers, slurm, runs)
    selection = select(load_record(job.folder, job.inputs) for job in trials)  # all finished
    seeds = plan_seeds(profile, runs, selection, lr_keys, data_root, download)
    _run(seeds, "seed runs", profile, executor, workers, slurm, runs)
    return collect(profile, runs, lr_keys)


def _run(jobs, what, profile, executor, workers, slurm, runs):
    from tqdm.auto import tqdm

    todo = [j for j in jobs if load_record(j.folder, j.inputs) is None]
    print(f"sweep {profile.name}: {len(jobs)} {what}, {len(jobs) - len(todo)} done, {len(todo)} to run -> {runs}", flush=True)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=what, unit="run")
    previous = signal.signal(signal.SIGTERM, _terminated) if _main_thread() else None
    try:
        if executor == "slurm":
            from reproduce.cluster import SlurmOptions, run_array

            run_array(todo, runs, slurm or SlurmOptions(), progress=bar.update)
        elif workers <= 1 or len(todo) <= 1:
            for job in todo:
                execute(job)
                bar.update()
        else:
            _run_in_processes(todo, workers, bar)
        for job in todo:  # runs another sweep held: wait for it, and run them here if it died
            if load_record(job.folder, job.inputs) is None:
                execute(job, wait=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        bar.close()


class Terminated(Exception):
    """SIGTERM, raised in the driver so that it stops its workers before it exits."""


def _terminated(signum, frame):
    raise Terminated(f"stopped by signal {signum}; finished runs are kept, and the same command resumes")


def _main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _run_in_processes(todo, workers, bar):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
    try:
        futures = {pool.submit(execute, job): job for job in todo}
        for future in as_completed(futures):
            future.result()
            bar.update()
    except BaseException:
        # Ctrl-C, SIGTERM or a failed run: cancel what is queued and end the workers now, not after the queue
        processes = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=30)
        raise
    pool.shutdown()
