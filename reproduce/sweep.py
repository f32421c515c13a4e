"""The sweep: ITL dataset x method x seed, each run's record written atomically as it finishes.

An interrupted sweep (Ctrl-C, kill -9, a crash) resumes where it stopped:
finished runs (``done`` marker + valid record) are skipped, anything else is
rerun.  Executors: local processes (``--workers``) or SLURM through submitit.
Data, cached prefix features and cost matrices are prepared once per ITL
dataset and shared by its runs (on disk under ``<runs>/cache``).
"""

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reproduce.profile import load_profile
from reproduce.records import load_record, run_dir, save_record, write_atomic


@dataclass(frozen=True)
class Job:
    profile: str
    dataset: str
    method: str
    seed: int
    runs: str
    data_root: str = None
    download: bool = False

    @property
    def folder(self):
        return run_dir(self.runs, self.dataset, self.method, self.seed)


def plan(profile, runs, data_root=None, download=False):
    """Every run of the grid, in a fixed order (dataset, method, seed)."""
    return [Job(profile.path, group, method, seed, str(runs), data_root, download)
            for group in profile.data.groups for method in profile.run.methods for seed in profile.run.seeds]


@functools.lru_cache(maxsize=4)
def prepare(profile_path, group, runs, data_root=None, download=False):
    """ITL dataset, cached features and cost matrices of one ITL dataset (once per process)."""
    from jtln.cache import cached_features
    from jtln.data import load_itl
    from jtln.hparams import resolve
    from jtln.train import cost_matrix

    profile = load_profile(profile_path)
    hp = resolve(profile.hparams)
    itl = load_itl(profile.data.dataset, group, **profile.data.itl_options(data_root, download))
    if profile.data.validation_per_class:
        itl.carve_validation(profile.data.validation_per_class, seed=profile.data.split_seed)
    backbone = make_backbone(profile)
    cache_dir = profile.model.cache_dir or str(Path(runs) / "cache")
    cached = cached_features(backbone, itl, profile.data.dataset, cache_dir=cache_dir, device=profile.run.device, progress=True)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    costs_path = Path(cache_dir) / f"costs-{cached.key}-{hp.mmd_estimator}-{hp.cost_normalize}-{hp.cost_samples_per_class}.pt"
    if costs_path.is_file():
        costs = torch.load(costs_path)
    else:
        costs = {kind: cost_matrix(kind, cached, hp, itl.L_s, itl.L_t) for kind in ("mmd", "ot")}
        tmp = costs_path.with_name(f".{costs_path.name}.tmp{os.getpid()}")
        torch.save(costs, tmp)
        tmp.replace(costs_path)
    return itl, cached, costs, hp


def make_backbone(profile):
    from jtln.models import build_backbone

    m = profile.model
    weights = (m.weights_path or "DEFAULT") if m.pretrained else None
    return build_backbone(m.backbone, weights=weights, image_size=m.image_size)


def execute(job):
    """Run one job unless it already finished; returns its record."""
    from jtln.methods import METHODS
    from jtln.train import run

    record = load_record(job.folder)
    if record is not None:
        return record
    profile = load_profile(job.profile)
    itl, cached, costs, hp = prepare(job.profile, job.dataset, job.runs, job.data_root, job.download)
    cost = METHODS[job.method].cost
    record = run(job.method, lambda: make_backbone(profile), cached, hp, job.seed, itl.L_s, itl.L_t,
                 C=costs[cost] if cost else None, device=profile.run.device)
    record.update(profile=profile.name, dataset=job.dataset, target_classes=itl.target_classes,
                  source_classes=itl.source_classes, cost=cost, split_seed=profile.data.split_seed,
                  table1=itl.table1_column(), cache_key=cached.key, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    save_record(job.folder, record)
    return record


def _init_worker(threads):
    torch.set_num_threads(threads)


def sweep(profile_name, runs=None, data_root=None, download=False, executor="local", workers=None, slurm=None):
    """Run every unfinished job of the profile; returns the records of all finished jobs."""
    from tqdm.auto import tqdm

    profile = load_profile(profile_name)
    runs = Path(runs or Path("runs") / profile.name)
    runs.mkdir(parents=True, exist_ok=True)
    write_atomic(runs / "profile.toml", Path(profile.path).read_text())
    jobs = plan(profile, runs, data_root, download)
    todo = [j for j in jobs if load_record(j.folder) is None]
    print(f"sweep {profile.name}: {len(jobs)} runs, {len(jobs) - len(todo)} done, {len(todo)} to run -> {runs}", flush=True)
    workers = workers or profile.run.workers
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="runs", unit="run")
    if executor == "slurm":
        _run_on_slurm(todo, runs, slurm or {}, bar)
    elif workers <= 1 or len(todo) <= 1:
        for job in todo:
            bar.set_postfix_str(f"running {job.dataset}/{job.method}/seed{job.seed}, {bar.total - bar.n - 1} left after it")
            execute(job)
            bar.update()
    else:
        _run_in_processes(todo, workers, bar)
    bar.close()
    return [load_record(j.folder) for j in jobs]


def _prepare_all(todo):
    """Prepare each ITL dataset once, here, so that workers find features and costs on disk."""
    for key in dict.fromkeys((j.profile, j.dataset, j.runs, j.data_root, j.download) for j in todo):
        prepare(*key)


def _run_in_processes(todo, workers, bar):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    _prepare_all(todo)
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(execute, job): job for job in todo}
        for future in as_completed(futures):
            future.result()
            bar.update()


def _run_on_slurm(todo, runs, options, bar):
    import submitit

    _prepare_all(todo)
    executor = submitit.AutoExecutor(folder=Path(runs) / "slurm")
    executor.update_parameters(
        slurm_partition=options.get("partition"), timeout_min=options.get("time", 60),
        gpus_per_node=options.get("gpus", 0), cpus_per_task=options.get("cpus", 4),
    )
    jobs = executor.map_array(execute, todo)
    for job in submitit.helpers.as_completed(jobs):
        job.result()
        bar.update()
