"""The sweep through a real single-node SLURM cluster (tests/slurm_cluster.py): records, cancellation, failures, requeue."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reproduce.__main__ import main
from reproduce.collect import collect
from reproduce.profile import load_profile
from tests.conftest import MINI_PROFILE
from tests.test_reproduce import ROOT, deterministic, finished, prepared_as

FAST = ["--cpus", "1", "--array-parallelism", "2", "--grace-s", "1"]  # a result is written before its task leaves the queue here


def records(profile, runs):
    collected = collect(load_profile(profile), runs)
    return collected, sorted(map(deterministic, collected.seeds), key=lambda r: r["id"])


def same_records(a, b):
    """The same runs, predictions and accuracies; the cross-entropies to float32 rounding (other thread counts)."""
    strip = [{k: v for k, v in r.items() if k != "val_loss_curve"} for r in a], [{k: v for k, v in r.items() if k != "val_loss_curve"}
                                                                                  for r in b]
    assert strip[0] == strip[1]
    np.testing.assert_allclose([x for r in a for x in r["val_loss_curve"]], [x for r in b for x in r["val_loss_curve"]], rtol=1e-5)


def mini(tmp_path):
    profile = tmp_path / "mini.toml"
    profile.write_text(MINI_PROFILE)
    return profile


def driver(profile, runs, *options, cluster=None):
    """The sweep's driver as a user starts it, in its own process.

    With ``cluster``, it starts once the queue is empty: an earlier test's
    driver returns when its records are written, while its tasks may still be
    exiting, and a RUNNING task looked up next must be this driver's.
    """
    if cluster is not None:
        wait_for(lambda: array_tasks(cluster) == [], 60, "an empty queue")
    command = [sys.executable, "-m", "reproduce", "sweep", "--profile", str(profile), "--runs", str(runs), "--executor", "slurm",
               *options]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def array_tasks(cluster, state=None):
    out = cluster.run("squeue", "-h", "-r", "-o", "%i %T").stdout.split("\n")
    return [line.split()[0] for line in out if line.strip() and (state is None or line.split()[1] == state)]


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def test_a_sweep_through_the_cluster_reports_a_failing_run_goes_on_and_resumes_to_the_local_records(slurm_cluster, small,
                                                                                                      tmp_path, capsys):
    """One sweep of the small profile through the cluster for several checks: a run that raises is reported with its log
    while every other run finishes (exit 1); the same command then resumes it (exit 0), and the records are those of the
    local sweep. One array per phase: the preparation (a task per dataset not on disk: one of the two is there), the
    search, the seeds; the resumption prepares nothing."""
    from reproduce.plan import plan_trials

    groups = load_profile(small.profile).data.groups
    runs = prepared_as(small, tmp_path / "runs", datasets=groups[:1])
    victim = plan_trials(load_profile(small.profile), runs)[0].folder
    victim.parent.mkdir(parents=True)
    victim.write_text("a file where the run's folder goes: its lock cannot be made, so the run raises")
    command = ["sweep", "--profile", str(small.profile), "--runs", str(runs), "--executor", "slurm", *FAST, "--runs-per-task", "16"]
    start = time.perf_counter()
    # each task pays 5-7 s to start (torch, the data, the cached features) before its runs
    assert main(command) == 1
    first = capsys.readouterr()
    assert "raised" in first.err and re.search(r"1 of \d+ runs failed", first.err) and "log: " in first.err, first.err[-2000:]
    assert victim.name in first.err
    log = Path(first.err.split("log: ")[1].split()[0])
    assert log.is_file() and "FileExistsError" in log.read_text() and victim.name in log.read_text()
    trials = len(plan_trials(load_profile(small.profile), runs))
    assert len(finished(runs)) == trials - 1  # every other search run finished
    victim.unlink()
    assert main(command) == 0
    seconds = time.perf_counter() - start
    again = capsys.readouterr().out
    cluster, local = records(small.profile, runs)[1], records(small.profile, small.runs)[1]
    profile = load_profile(small.profile)  # datasets x methods x levels x seeds
    assert len(cluster) == len(local) == (len(profile.data.groups) * len(profile.run.methods) * len(profile.data.levels) *
                                          len(profile.run.seeds))
    same_records(cluster, local)
    arrays, resumed = ([line for line in out.splitlines() if line.startswith("submitted job array")] for out in (first.out, again))
    assert len(arrays) == 2 and "(preparation): 1 tasks" in arrays[0] and "(search trials)" in arrays[1], arrays
    assert [a.split("(")[1].split(")")[0] for a in resumed] == ["search trials", "seed runs"], resumed
    arrays += resumed
    print(f"\nthe small profile through the cluster, with a failing run and its resumption: {seconds:.0f} s, "
          + "; ".join(arrays))


def test_scancel_ends_the_driver_with_the_reason_the_same_command_resumes_and_a_requeued_task_repeats_no_run(slurm_cluster,
                                                                                                        small, tmp_path):
    """One sweep of the small profile for two checks: ``scancel`` of the array ends the driver (exit 1) with the reason, a
    log and how to resume; the same command then resumes, and its task, requeued (as preemption does) while it is running
    with some of its runs finished, ends with one complete record per run and none of them run twice.  The runs'
    arrays, from a copy of the preparation (its array is tested above)."""
    profile, runs = small.profile, prepared_as(small, tmp_path / "runs")
    options = (*FAST, "--runs-per-task", "100")  # one task holds every run of a phase
    process = driver(profile, runs, *options, cluster=slurm_cluster)
    running = wait_for(lambda: array_tasks(slurm_cluster, "RUNNING"), 120, "running task")
    slurm_cluster.run("scancel", running[0].split("_")[0])  # the whole array
    output, _ = process.communicate(timeout=90)  # bounded: the grace, a poll, the report
    assert process.returncode == 1, output
    assert "ended without a result: CANCELLED" in output and "log: " in output and "the same command resumes" in output
    before = finished(runs)
    process = driver(profile, runs, *options, cluster=slurm_cluster)

    def running_with_runs_finished():
        return len(finished(runs)) > len(before) and array_tasks(slurm_cluster, "RUNNING")

    task = wait_for(running_with_runs_finished, 120, "running task with finished runs")[0]
    requeued = finished(runs)  # finished before the requeue: not run again after it
    slurm_cluster.run("scontrol", "requeue", task)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "Restarts=1" in slurm_cluster.run("scontrol", "-o", "show", "job", task).stdout  # it ran again
    for folder, mtime in {**before, **requeued}.items():
        assert (folder / "done").stat().st_mtime_ns == mtime, f"{folder} was run again"
    collected = collect(load_profile(profile), runs)
    assert collected.missing == [] and len(collected.seeds) == len(collect(load_profile(profile), small.runs).seeds)
    for folder in finished(runs):  # one record per run, complete
        assert len(list(folder.glob("record*.json"))) == 1 and not list(folder.glob("*.tmp*")), folder
    assert len(finished(runs)) == len(collected.trials) + len(collected.seeds)


def test_sigterm_to_the_driver_while_its_preparation_runs_cancels_the_array(slurm_cluster, tmp_path):
    """SIGTERM to the driver (as ``kill`` or the driver's own scheduler sends it) while its first array, the preparation,
    runs: it exits 143 and its array is cancelled, not left running for a driver that is gone."""
    process = driver(mini(tmp_path), tmp_path / "runs", *FAST, cluster=slurm_cluster)
    task = wait_for(lambda: array_tasks(slurm_cluster, "RUNNING"), 120, "running preparation task")[0]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert f"submitted job array {task.split('_')[0]} (preparation)" in output, output
    assert "JobState=CANCELLED" in slurm_cluster.run("scontrol", "-o", "show", "job", task).stdout


def test_a_task_that_cannot_be_scheduled_ends_the_driver_with_its_reason(slurm_cluster, tmp_path, capsys):
    profile, runs = mini(tmp_path), tmp_path / "runs"
    start = time.time()
    cpus = os.cpu_count() * 8
    assert main(["sweep", "--profile", str(profile), "--runs", str(runs), "--executor", "slurm", "--cpus", str(cpus)]) == 1
    assert time.time() - start < 60
    err = capsys.readouterr().err
    assert "cannot be scheduled: pending with reason" in err or "sbatch refused the array" in err, err
    assert f"{cpus} CPUs" in err or f"cpus-per-task={cpus}" in err, err
    wait_for(lambda: array_tasks(slurm_cluster) == [], 30, "empty queue")  # the array was cancelled: nothing left waiting
    assert finished(runs) == {}  # (the same command then resumes: test_scancel_ends_the_driver_with_the_reason_...)


def test_the_driver_needs_no_gpu_the_preparation_job_checks_the_device_where_it_runs(slurm_cluster, tmp_path, capsys):
    """A CUDA profile on this GPU-less machine: the driver (no CUDA here either) passes its checks and submits the
    preparation, whose task, on a node without CUDA, stops with the device's error and its log; nothing is prepared."""
    profile, runs = tmp_path / "mini_cuda.toml", tmp_path / "runs"
    profile.write_text(MINI_PROFILE.replace("[run]\n", '[run]\ndevice = "cuda"\n'))
    assert main(["sweep", "--profile", str(profile), "--runs", str(runs)]) == 2  # locally: refused before any work
    assert "torch finds no CUDA device here" in capsys.readouterr().err
    assert main(["sweep", "--profile", str(profile), "--runs", str(runs), "--executor", "slurm", *FAST]) == 1
    captured = capsys.readouterr()
    assert "submitted job array" in captured.out and "(preparation)" in captured.out, captured.out
    assert "1 of 1 tasks" in captured.err and "torch finds no CUDA device here" in captured.err and "log: " in captured.err, captured.err
    assert not list(runs.glob("cache/features-*.pt")) and finished(runs) == {}


def test_a_task_runs_torch_on_the_cpus_slurm_gave_it(monkeypatch):
    """SLURM_CPUS_PER_TASK sets torch's threads in a task (a cluster that binds no CPUs would leave one per core of the
    node); outside a task nothing changes."""
    import torch

    from reproduce.cluster import use_allocated_cpus

    before = torch.get_num_threads()
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert use_allocated_cpus() is None and torch.get_num_threads() == before
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    try:
        assert use_allocated_cpus() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")  # -c not given: torch's own default is kept
        torch.set_num_threads(before)
        assert use_allocated_cpus() is None and torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_without_sbatch_the_slurm_executor_says_what_it_needs(tmp_path, monkeypatch):
    import shutil

    from reproduce.cluster import SlurmError, SlurmOptions, run_array
    from reproduce.execute import run_jobs

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SlurmError, match="needs SLURM's sbatch"):
        run_array([object()], tmp_path, SlurmOptions(), run_jobs)
    with pytest.raises(ValueError, match="slurm option cpus_per_task must be an integer >= 1, got 0"):
        SlurmOptions(cpus_per_task=0)
