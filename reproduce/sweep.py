"""The sweep: prepare every dataset, run the search trials, select, refit every seed, collect — resumable, on any executor.

On a GPU with one local worker, the datasets after the first are prepared in a
background process while the first one's runs train (:func:`overlaps_preparation`);
with several local workers, the datasets are prepared side by side, one process each.

The steps are each a module's job: :mod:`reproduce.prepare` (features, cost
matrices, probes), :mod:`reproduce.plan` (which runs, and the selection),
:mod:`reproduce.execute` (running them here) or :mod:`reproduce.cluster`
(as SLURM job arrays), :mod:`reproduce.collect` (the records).
"""

import contextlib
import sys
from dataclasses import replace
from pathlib import Path

from jtln.atomic import write_atomic
from reproduce.collect import collect
from reproduce.execute import DIVERGED_HINT, Diverged, Workers, run_jobs, run_locally, sigterm_raises
from reproduce.plan import diverged_cells, plan_seeds, plan_trials, select
from reproduce.prepare import Preparation, Workspace, prepare_all, stored
from reproduce.profile import check_device
from reproduce.records import load_record


def sweep(profile, runs=None, data_root=None, download=False, executor="local", workers=None, slurm=None):
    """Prepare, search, select and refit every seed of ``profile`` (a :class:`reproduce.profile.Profile`); returns the collected records.

    ``workers``: local processes (default: the profile's); ``slurm``:
    :class:`reproduce.cluster.SlurmOptions` for ``executor="slurm"``.
    """
    if executor == "local":  # on a cluster the jobs check the device where they run: the driver needs no GPU
        check_device(profile, workers)
    from reproduce.stats import MIN_SEEDS

    if len(profile.run.seeds) < MIN_SEEDS:  # said before any work: the tables will carry no verdict
        print(f"warning: {len(profile.run.seeds)} seed(s) in [run].seeds: the claims and comparisons need at least {MIN_SEEDS} "
              "for a verdict, and will read \"too few seeds\"", file=sys.stderr, flush=True)
    runs = profile.runs_folder(runs)
    runs.mkdir(parents=True, exist_ok=True)
    write_atomic(runs / "profile.toml", Path(profile.path).read_text())
    workspace = Workspace()
    workers = workers or profile.run.workers
    # the search's worker processes run the seeds too; SIGTERM from the preparation to the last run ends them, and the
    # array then running (its tasks cancelled)
    with contextlib.closing(Workers(workers)) as local, sigterm_raises():
        try:  # SIGTERM or Ctrl-C while preparing or searching: the preparing processes are ended with the sweep
            # prepared once, so that every worker or array task only loads it: here, or on a cluster in a job of its own
            if executor == "slurm":
                _prepare_on_the_cluster(profile, runs, data_root, download, slurm)
            trials = plan_trials(profile, runs, data_root, download)  # dataset by dataset
            if executor == "local":
                _prepare_locally(profile, workspace, workers, runs, data_root, download)
            _run(trials, "search trials", profile, executor, local, slurm, runs, workspace)
        except BaseException:
            workspace.close(wait=False)
            raise
        workspace.close()
        trial_records = [load_record(job.folder, job.inputs) for job in trials]  # all finished
        selection = select(trial_records)
        failed = diverged_cells(trial_records, selection)
        try:
            _run(plan_seeds(profile, runs, selection, data_root, download), "seed runs", profile, executor, local, slurm, runs,
                 workspace)
        except Diverged as error:
            failed_refits = str(error)
        else:
            failed_refits = None
    if failed or failed_refits:
        raise Diverged("\n".join(
            [f"{d}/{m} level {level} seed {s}: every search trial diverged, so it has no result:\n" + "\n".join(
                f"    trial {t} {dict(h)}: {message}" for t, h, message in tried) for (d, m, level, s), tried in failed.items()]
            + ([failed_refits] if failed_refits else []) + ([DIVERGED_HINT] if failed else [])))
    collected = collect(profile, runs)
    summary = warnings_summary(collected.trials + collected.seeds)
    if summary:
        print(summary, flush=True)
    return collected


def _prepare_on_the_cluster(profile, runs, data_root, download, slurm):
    """Every dataset not on disk prepared in an array task of its own (a resumed sweep submits none for what is there)."""
    from reproduce.cluster import SlurmOptions, run_array

    preparations = [Preparation(profile, dataset, str(runs), data_root, download) for dataset in profile.data.groups
                    if not stored(profile, dataset, runs, data_root, download)]
    run_array(preparations, runs, replace(slurm or SlurmOptions(), runs_per_task=1), prepare_all, what="preparation")


def _prepare_locally(profile, workspace, workers, runs, data_root, download):
    """Every dataset prepared (or loaded) here: on a GPU with one worker the first here and the next in the background, with
    several workers side by side, one process each (those not on disk yet: :func:`reproduce.prepare.stored`); otherwise
    one after the other."""
    first, *rest = profile.data.groups
    if overlaps_preparation(profile, workers):  # the next datasets are prepared while the first one's runs train
        workspace.prefetch(profile, rest, runs, data_root, download)
        rest = []
    elif workers > 1 and rest:  # several workers: the datasets not prepared yet side by side, one process each
        missing = [d for d in profile.data.groups if not stored(profile, d, runs, data_root, download)]
        if len(missing) > 1:  # (a resumed sweep finds them on disk and loads them here, starting no process)
            workspace.prefetch(profile, missing, runs, data_root, download, processes=min(workers, len(missing)))
            for dataset in profile.data.groups:
                workspace.prepared(profile, dataset, runs, data_root, download)
            workspace.close()  # all prepared: the processes end before the runs' workers start
            return
    for dataset in (first, *rest):
        workspace.prepared(profile, dataset, runs, data_root, download)


def overlaps_preparation(profile, workers):
    """Whether a local sweep prepares its other datasets in the background while the first one's runs train: on a GPU
    with one worker, which the runs leave idle between kernels (on the CPU both would share the same cores)."""
    return profile.run.device != "cpu" and workers == 1 and len(profile.data.groups) > 1


def warnings_summary(records):
    """One paragraph: how many runs warned during training, and each distinct warning with its count (None if none did)."""
    warned = [r for r in records if r.get("warnings")]
    if not warned:
        return None
    counts = {}
    for r in warned:
        for message, n in r["warnings"].items():
            counts[message] = counts.get(message, 0) + n
    lines = [f"  {n} x {message}" for message, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return (f"{len(warned)} of {len(records)} runs warned while training (each record keeps its warnings; their results stand, "
            "a run that cannot give a finite result raises instead):\n" + "\n".join(lines))


def _run(jobs, what, profile, executor, workers, slurm, runs, workspace):
    from tqdm.auto import tqdm

    todo = [j for j in jobs if load_record(j.folder, j.inputs) is None]
    print(f"sweep {profile.name}: {len(jobs)} {what}, {len(jobs) - len(todo)} done, {len(todo)} to run -> {runs}", flush=True)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=what, unit="run")
    try:  # (SIGTERM raises here: the sweep's sigterm_raises holds from the preparation to the last run)
        if executor == "slurm":
            from reproduce.cluster import SlurmOptions, run_array

            run_array(todo, runs, slurm or SlurmOptions(), run_jobs, progress=bar.update, what=what)
            run_locally([j for j in todo if load_record(j.folder, j.inputs) is None], 1, bar.update, workspace)
        else:
            run_locally(todo, workers, bar.update, workspace)
    finally:
        bar.close()
