"""Executing runs: one job trained and recorded under its lock, and the local executor (one process, or several).

Every run's record is written atomically as it finishes, in a folder named
by the hash of its inputs (:mod:`reproduce.records`); an interrupted sweep
resumes where it stopped.  A run holds a lock (``flock`` on ``<run
folder>/lock``) while it trains, so sweeps started at once on one runs
folder share the work: a run locked by another sweep is skipped, then
waited for at the end, and run here only if that sweep died without
finishing it.  SIGTERM and SIGINT stop a parallel sweep promptly: the
workers are ended, finished records kept.

Each process keeps the datasets it has prepared in a
:class:`reproduce.prepare.Workspace` that it owns and passes to
:func:`execute`: the driver its own, every worker process one of its own.
"""

import contextlib
import fcntl
import os
import platform
import queue
import signal
import threading
import time
import traceback
import warnings
from pathlib import Path

import torch

from jtln.train import library_versions
from reproduce.plan import SEED, searched
from reproduce.prepare import Workspace, cost_key
from reproduce.records import load_record, run_id, save_record


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


def execute(job, workspace, wait=False):
    """Run one job unless it already finished; its record, or None if another process holds its lock (and ``wait`` is false)."""
    record = load_record(job.folder, job.inputs)
    if record is not None:
        return record
    with run_lock(job.folder, wait) as held:
        if not held:
            return None
        return load_record(job.folder, job.inputs) or train_and_save(job, workspace)


def train_and_save(job, workspace):
    """Train ``job`` (a :class:`reproduce.plan.Job`) on its prepared data and write its record (:func:`train_job`)."""
    record = train_job(job, workspace)
    save_record(job.folder, record)
    return record


def train_job(job, workspace, test=None):
    """Train ``job`` on its prepared data; its record.

    A search trial trains on its seed's training part and early-stops on its
    validation part; a seed's run is the refit on both and is tested
    (:mod:`reproduce.plan`).  ``test`` (default: a seed's run is tested)
    also tests a trial: the rehearsal times every part of a run at once.
    """
    from jtln.data import draw_digest
    from jtln.train import RunData, run

    prep = workspace.prepared(job.profile, job.dataset, job.runs, job.data_root, job.download)
    draw = prep.draws[(job.level, job.draw_seed)]
    refit = job.refit
    test = refit if test is None else test
    hp = job.hp
    cost = cost_key(job.method, hp)
    probes = prep.probes[(job.level, job.draw_seed, refit)]
    with counting_warnings() as caught, diverging(job) as diverged:  # warnings kept in the record, summed up at the end
        result = run(job.method, prep.backbone.for_training, RunData.of(prep.cached, draw, refit=refit, test=test), hp,
                     job.train_seed, prep.itl.L_s, prep.itl.L_t,
                     C=prep.costs[(job.level, job.draw_seed, refit, cost)] if cost else None, probes=probes,
                     device=job.profile.run.device, test=test, precision=job.profile.run.precision, tf32=job.profile.run.tf32,
                     patience=0 if refit else job.profile.search.patience)
    if diverged:  # a search trial whose loss left the finite numbers: a failed configuration, scored the worst
        result = {"diverged": diverged[0], "val_loss": None, "val_accuracy": None, "best_epoch": 0, "val_curve": [],
                  "val_loss_curve": [], "n_steps": 0, "final_losses": {}, "versions": library_versions(),
                  "device": job.profile.run.device, "timings": {}}
    record = {"id": run_id(job.inputs), "inputs": job.inputs, "profile": job.profile.name, "role": job.role,
              "dataset": job.dataset, "method": job.method, "level": job.level, job.role: job.index, "hparams": hp.to_dict(),
              "searched": searched(job.method, job.profile), "draw_key": str(job.draw_seed),
              "train_seed": job.train_seed, "target_classes": prep.itl.target_classes, "source_classes": prep.itl.source_classes,
              "cost": cost, "draw": draw_digest(prep.itl, draw), "table1": prep.itl.table1_column(draw), "cache_key": prep.cached.key,
              "probe_C": probes[0].C, "probe_scaling": probes[0].scaling, "parents": prep.itl.parents, **result, "warnings": caught,
              "run_by": f"{platform.node()}:{os.getpid()}",
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if refit:  # every cost matrix prepared for this draw, so that how well each kind finds the true parents is read from records
        mine = [(key, C) for key, C in prep.costs.items() if key[:3] == (job.level, job.draw_seed, True)]
        # ordered by the key's repr (levels are ints or "all"), never the matrices': printing every prepared matrix at every
        # refit took 3 of the smoke profile's 40 s
        record["prepared_costs"] = {key[3]: C.tolist() for key, C in sorted(mine, key=lambda item: repr(item[0]))}
    return record


@contextlib.contextmanager
def diverging(job):
    """For a search trial: a loss that turns non-finite (FloatingPointError) is caught and its message put in the list the
    block yields; for a seed's refit, raised as :class:`Diverged` naming the run and its configuration."""
    caught = []
    try:
        yield caught
    except FloatingPointError as error:
        if job.role == SEED:
            raise Diverged(f"{job.dataset}/{job.method} level {job.level} seed {job.index}: the selected configuration "
                           f"{dict(job.hparams)} diverged in its refit ({error})") from error
        caught.append(str(error))


class Diverged(Exception):
    """A seed's refit whose loss left the finite numbers, or cells whose every search trial did (the sweep reports every one
    at its end, exit 1; every other run's record is kept)."""


#: what a user can do about a configuration that diverges
DIVERGED_HINT = ("lower the learning rates (lr_backbone, lr_fc, lr_head: the search space is jtln.hparams.SEARCH_SPACE), or "
                 "fix a value under the profile's [hparams] (a fixed value leaves the search); the records of every other run "
                 "are kept, and the same command resumes")


@contextlib.contextmanager
def counting_warnings():
    """Within the block, every warning is counted, not shown: ``{"Category: message": count}``, one entry per distinct
    message (a warning raised at every step of a run costs a count, never an object per call)."""
    counts = {}

    def count(message, category, filename, lineno, file=None, line=None):
        key = f"{category.__name__}: {message}"
        counts[key] = counts.get(key, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = count
        yield counts


def run_jobs(jobs):
    """Every run of ``jobs`` in this process, one after the other, each waiting for its lock (a SLURM array task's work).

    The profile's device is checked first, here where the runs train.  A run
    that raises does not stop the others; the failures are raised together at
    the end.
    """
    from reproduce.profile import check_device

    for profile in {id(job.profile): job.profile for job in jobs}.values():
        check_device(profile, 1)
    workspace, errors = Workspace(), []
    for job in jobs:
        try:
            execute(job, workspace, wait=True)
        except Exception as error:  # noqa: BLE001 -- reported below, with the others
            errors.append(f"{job.dataset}/{job.method}/{job.folder.name} ({job.role} {job.index}): {type(error).__name__}: {error}")
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(jobs)} runs failed:\n" + "\n".join(errors))
    return len(jobs)


class Terminated(Exception):
    """SIGTERM, raised in the driver so that it stops its workers before it exits."""


def _terminated(signum, frame):
    raise Terminated(f"stopped by signal {signum}; finished runs are kept, and the same command resumes")


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_locally(todo, workers, progress, workspace):
    """Run ``todo`` here: in this process (with ``workspace``), or in worker processes that each keep their own workspace.

    ``workers``: how many processes, or :class:`Workers` that the caller
    keeps from one call to the next (a sweep's search and seed phases).
    Then every run another sweep held is waited for, and run here if that
    sweep died without finishing it.  ``progress()`` is called once per run.
    """
    pool = workers if isinstance(workers, Workers) else None
    diverged = []  # refits whose loss left the finite numbers: the others go on, and they are reported together
    if (pool.count if pool else workers) <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                execute(job, workspace)
            except Diverged as error:
                diverged.append(str(error))
            progress()
    elif pool is not None:
        diverged += pool.run(todo, progress)
    else:
        with contextlib.closing(Workers(workers)) as pool:
            diverged += pool.run(todo, progress)
    failed = {str(error).split(":")[0] for error in diverged}
    for job in todo:
        if load_record(job.folder, job.inputs) is None and f"{job.dataset}/{job.method} level {job.level} seed {job.index}" not in failed:
            execute(job, workspace, wait=True)
    if diverged:
        raise Diverged(f"{len(diverged)} refit(s) diverged:\n" + "\n".join(f"  - {d}" for d in diverged) + "\n" + DIVERGED_HINT)


def _worker(tasks, results, threads):
    """A worker process: runs the jobs it is sent until it gets None, with one workspace for all of them; an idle worker
    whose driver died (SIGKILL leaves it no time to send None) ends within a second."""
    import multiprocessing

    torch.set_num_threads(threads)
    workspace, driver = Workspace(), multiprocessing.parent_process()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if driver is not None and not driver.is_alive():
                return
            continue
        if task is None:
            return
        index, job = task
        try:
            execute(job, workspace)
            results.put((index, None, None))
        except Exception as error:  # noqa: BLE001 -- sent to the driver, which raises it
            results.put((index, error, traceback.format_exc()))


class Workers:
    """``count`` worker processes (spawned, each with its share of the cores), started by the first :meth:`run` and kept
    for the next until :meth:`close`: a sweep's seed phase runs in its search's workers, which have imported torch and
    loaded the preparations already (starting two again cost ~6 s on two cores)."""

    def __init__(self, count):
        self.count, self._processes, self._tasks, self._results = count, [], None, None

    def _start(self):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._tasks, self._results = context.Queue(), context.Queue()
        threads = max(1, (os.cpu_count() or 1) // self.count)
        self._processes = [context.Process(target=_worker, args=(self._tasks, self._results, threads), daemon=True)
                           for _ in range(self.count)]
        for process in self._processes:
            process.start()

    def run(self, todo, progress):
        """Run ``todo`` in the workers, calling ``progress()`` once per run; the messages of the refits that diverged.
        Another failure raises, and Ctrl-C or SIGTERM stops: either ends the workers at once."""
        if not self._processes:
            self._start()
        for index, job in enumerate(todo):
            self._tasks.put((index, job))
        diverged = []
        try:
            for _ in todo:
                while True:
                    try:
                        index, error, trace = self._results.get(timeout=1.0)
                        break
                    except queue.Empty:
                        dead = [p for p in self._processes if p.exitcode is not None]
                        if dead:
                            raise RuntimeError(f"a worker process died (exit code {dead[0].exitcode}); finished runs are kept, "
                                               "and the same command resumes") from None
                if isinstance(error, Diverged):
                    diverged.append(str(error))
                elif error is not None:
                    error.add_note(f"in the worker that ran {todo[index].folder}:\n{trace}")
                    raise error
                progress()
            return diverged
        except BaseException:  # Ctrl-C, SIGTERM or a failed run: end the workers now, not after the queue
            self.close(wait=False)
            raise

    def close(self, wait=True):
        """End the workers: once they are idle (``wait``), or at once, dropping what is left queued."""
        if not self._processes:
            return
        if wait:
            for _ in self._processes:
                self._tasks.put(None)
            for process in self._processes:
                process.join(timeout=30)
        self._tasks.cancel_join_thread()  # what is left queued is dropped, not flushed at exit
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(timeout=30)
        self._processes = []
