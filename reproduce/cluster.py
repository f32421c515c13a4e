"""The sweep on a SLURM cluster: one job array per phase through submitit, watched so that the driver never waits forever.

The driver submits the preparation of every dataset (features, cost
matrices, probes on disk under ``<runs>/cache``) as an array of its own,
one task per dataset on the profile's device, before the runs, so a run's
task only loads them; every task checks the device where it runs, so the
driver needs no GPU, and runs torch on the CPUs it was given
(:func:`use_allocated_cpus`).  The runs still to do are split into chunks, one array task each (``slurm``
options below); a task runs its chunk with the function the driver passes
(:func:`reproduce.execute.run_jobs`: one run after the other, each under its
lock), so every run's record is written once, atomically, exactly as the
local executor writes it.

While the array runs, the driver polls every ``poll_s`` seconds:

* a task's submitit result file says it finished, or that it raised (the
  error and its log path are reported, the other tasks go on);
* ``squeue`` says a task is pending for a reason that will not clear
  (:data:`UNSCHEDULABLE`, e.g. more CPUs than any node has): the array is
  cancelled and the driver stops with the reason;
* a task left the queue without a result file (``scancel``, a time limit, a
  lost node): after ``grace_s`` for its files to appear it is reported with
  its last state from ``scontrol`` (Slurm keeps it ``MinJobAge`` seconds)
  and its log path.

A requeued task (``scontrol requeue``, preemption) stays in the queue and
is waited for; its runs start again, and a run finished before the requeue
is not run twice.  Whatever ends the wait, finished records are kept and
the same command resumes.  Logs: ``<runs>/slurm/<job id>_<task>/``.
"""

import functools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: pending reasons that waiting will not clear (``squeue -o %r``): the request exceeds what the partition or its nodes offer
UNSCHEDULABLE = frozenset({
    "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "PartitionDown", "PartitionInactive", "ReqNodeNotAvail",
    "BadConstraints", "InvalidAccount", "InvalidQOS", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob", "QOSMaxMemoryPerJob",
    "QOSMaxWallDurationPerJobLimit", "AssocMaxCpuPerJobLimit", "AssocMaxWallDurationPerJobLimit", "NodeDown",
})


class SlurmError(RuntimeError):
    """A sweep's array could not finish: unschedulable, cancelled, timed out, lost, or runs that raised (named with their logs)."""


#: the least each integer option of :class:`SlurmOptions` may be (the command line's flags are checked against the same)
LOWEST = {"cpus_per_task": 1, "gpus_per_task": 0, "time_min": 1, "array_parallelism": 1, "runs_per_task": 0}


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks of the cluster, and how the driver watches the array.

    ``cpus_per_task``: default ``min(4, the most CPUs a node of the partition
    has)``; ``mem_gb``: default the cluster's (``DefMemPerCPU``);
    ``gpus_per_task``: 0 for the CPU profiles, 1 for the paper's on GPUs;
    ``time_min``: the time limit of a task; ``array_parallelism``: at most
    this many tasks at once; ``runs_per_task``: runs per array task (0:
    enough to make about ``4 * array_parallelism`` tasks); ``sbatch``:
    further ``(name, value)`` sbatch parameters.
    """

    partition: str = None
    cpus_per_task: int = None
    mem_gb: float = None
    gpus_per_task: int = 0
    time_min: int = 60
    array_parallelism: int = 8
    runs_per_task: int = 0
    sbatch: tuple = ()
    poll_s: float = 2.0
    grace_s: float = 30.0

    def __post_init__(self):
        for name, low in LOWEST.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ValueError(f"slurm option {name} must be an integer >= {low}, got {value!r}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"slurm option mem_gb must be > 0, got {self.mem_gb!r}")


def use_allocated_cpus():
    """In a SLURM task, torch's intra-op threads set to the task's CPUs (``SLURM_CPUS_PER_TASK``); returns that count, or
    None outside a task.

    A cluster that does not bind each task to its CPUs (``TaskPlugin=task/none``, some sites) leaves torch one thread per
    core of the node, so two 1-CPU tasks on a 2-core node ran four spinning threads: the test cluster's preparation tasks
    took 45 s instead of 15.  A local worker gets its share of the cores the same way (:mod:`reproduce.execute`).
    """
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if not os.environ.get("SLURM_JOB_ID") or not cpus.isdigit() or int(cpus) < 1:
        return None
    import torch

    torch.set_num_threads(int(cpus))
    return int(cpus)


def _in_task(work, chunk):
    """What every array task runs: torch on the task's CPUs (:func:`use_allocated_cpus`), then ``work(chunk)``."""
    use_allocated_cpus()
    return work(chunk)


def _command(*args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True).stdout


def node_cpus(partition=None):
    """The most CPUs a node of ``partition`` (or of every partition) has, from ``sinfo``."""
    out = _command("sinfo", "-h", "-o", "%c", *(("-p", partition) if partition else ()))
    counts = [int(re.sub(r"\D", "", line)) for line in out.split() if re.sub(r"\D", "", line)]
    if not counts:
        raise SlurmError(f"sinfo lists no nodes{f' in partition {partition!r}' if partition else ''}")
    return max(counts)


def squeue(job_id):
    """``{task id: (state, reason)}`` of job ``job_id``'s tasks still in the queue (``squeue -r``; ids as ``123_4``, or ``123``)."""
    out = _command("squeue", "-h", "-r", "-j", str(job_id), "-o", "%i|%T|%r")
    tasks = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            tasks[parts[0]] = (parts[1], parts[2])
    return tasks


def last_state(job_id):
    """``JobState`` and ``Reason`` of a job or array task that left the queue, from ``scontrol``; None once Slurm forgot it."""
    try:
        out = _command("scontrol", "-o", "show", "job", str(job_id))
    except subprocess.CalledProcessError:
        return None
    state, reason = re.search(r"JobState=(\S+)", out), re.search(r"Reason=(\S+)", out)
    return f"{state.group(1) if state else '?'} (reason {reason.group(1) if reason else '?'})"


def chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_array(todo, runs, options, run_jobs, progress=None, what="runs"):
    """Run ``todo`` (:class:`reproduce.plan.Job`) as one job array and wait for it, never forever (module docstring).

    Each array task calls ``run_jobs(chunk)`` on its chunk of ``todo``: a
    function that :mod:`pickle` can name, such as :func:`reproduce.execute.run_jobs`
    (or :func:`reproduce.prepare.prepare_all`).  ``what`` names the work in
    the messages (the job's name is ``jtln-<what>``).

    Returns when every task has ended; raises :class:`SlurmError` naming every
    task that did not finish, with its reason and log.  Ctrl-C or SIGTERM
    cancels the array.
    """
    import submitit

    if not todo:
        return
    if shutil.which("sbatch") is None:
        raise SlurmError("--executor slurm needs SLURM's sbatch, squeue and scontrol on PATH; none found here")
    cpus = options.cpus_per_task or min(4, node_cpus(options.partition))
    size = options.runs_per_task or max(1, -(-len(todo) // (4 * options.array_parallelism)))
    parts = chunks(list(todo), size)
    executor = submitit.SlurmExecutor(folder=Path(runs) / "slurm" / "%j")
    parameters = {"time": options.time_min, "cpus_per_task": cpus, "array_parallelism": options.array_parallelism,
                  "job_name": f"jtln-{what.replace(' ', '-')}", "additional_parameters": dict(options.sbatch)}
    if options.partition:
        parameters["partition"] = options.partition
    if options.mem_gb:
        parameters["mem"] = f"{int(options.mem_gb * 1024)}M"
    if options.gpus_per_task:
        parameters["gpus_per_task"] = options.gpus_per_task
    executor.update_parameters(**parameters)
    try:
        jobs = executor.map_array(functools.partial(_in_task, run_jobs), parts)
    except Exception as error:  # sbatch refused the array
        raise SlurmError(f"sbatch refused the array ({cpus} CPUs per task, partition {options.partition or 'default'}): "
                         f"{error}") from error
    array_id = jobs[0].job_id.split("_")[0]
    request = (f"{cpus} CPUs" + (f", {options.mem_gb:g} GB" if options.mem_gb else "")
               + (f", {options.gpus_per_task} GPUs" if options.gpus_per_task else "")
               + f", {options.time_min} min on partition {options.partition or '(default)'}")
    print(f"submitted job array {array_id} ({what}): {len(parts)} tasks of up to {size} each, {cpus} CPUs per task; logs in "
          f"{Path(runs) / 'slurm'}", flush=True)
    try:
        failures = _wait(jobs, parts, array_id, options, progress, request)
    except BaseException:
        subprocess.run(["scancel", array_id], capture_output=True, timeout=60)
        raise
    if failures:
        raise SlurmError(f"{len(failures)} of {len(jobs)} tasks of job array {array_id} did not finish:\n"
                         + "\n".join(failures) + "\nfinished runs are kept; the same command resumes the rest")


def _wait(jobs, parts, array_id, options, progress, request):
    waiting, failures, gone_since = dict(enumerate(jobs)), [], {}
    while waiting:
        tasks = squeue(array_id)
        now = time.monotonic()
        for i, job in list(waiting.items()):
            if job.paths.result_pickle.exists():
                try:
                    job.result()
                except Exception as error:  # noqa: BLE001 -- the task raised: report it, wait for the others
                    failures.append(f"task {job.job_id} raised:\n    {_exception_lines(error)}\n  log: {job.paths.stderr}")
                del waiting[i]
                if progress is not None:
                    progress(len(parts[i]))
                continue
            state, reason = tasks.get(job.job_id, (None, None))
            if state == "PENDING" and reason in UNSCHEDULABLE:
                raise SlurmError(f"task {job.job_id} cannot be scheduled: pending with reason {reason} (it asks {request}); "
                                 f"the array {array_id} is cancelled. Lower --cpus / --mem-gb / --gpus or choose another "
                                 "--partition (sinfo lists what the nodes have)")
            if state is None:  # left the queue: give its result file grace_s to appear, then report it
                gone_since.setdefault(i, now)
                if now - gone_since[i] > options.grace_s:
                    failures.append(f"task {job.job_id} ended without a result: {last_state(job.job_id) or 'gone from the queue'}"
                                    f"\n  log: {job.paths.stdout}")
                    del waiting[i]
            else:
                gone_since.pop(i, None)
        if waiting:
            time.sleep(options.poll_s)
    return failures


def _exception_lines(error):
    """The exception a task raised, from submitit's FailedJobError: its traceback's last lines, without submitit's advice."""
    lines = [line for line in str(error).split("You can check full logs")[0].splitlines() if line.strip() and set(line) != {"-"}]
    starts = [i for i, line in enumerate(lines) if not line.startswith(" ") and re.match(r"^[\w.]+(Error|Exception)\b", line)]
    return "\n    ".join(lines[starts[-1]:] if starts else lines[-3:])
