"""Collecting: the records of a runs folder that a profile asks for, checked by their inputs, and the runs still missing."""

from dataclasses import dataclass

from reproduce.plan import plan_seeds, plan_trials, select
from reproduce.records import load_record


@dataclass
class Collected:
    """What the records of a runs folder hold for a profile: trials, the selection, seed runs, and what is missing."""

    trials: list
    selection: dict
    seeds: list
    missing: list


def collect(profile, runs):
    """The finished records of ``runs`` that ``profile`` asks for, the selection of every seed whose search is finished, and the
    runs still missing (a seed with unfinished trials has no selection, so its refit is not planned yet)."""
    trials, missing = [], []
    for job in plan_trials(profile, runs):
        record = load_record(job.folder, job.inputs)
        (trials.append(record) if record else missing.append(job))
    unfinished = {(j.dataset, j.method, j.level, j.seed) for j in missing}
    selection = {key: chosen for key, chosen in select(trials).items() if key not in unfinished}
    seeds = []
    for job in plan_seeds(profile, runs, selection):
        record = load_record(job.folder, job.inputs)
        (seeds.append(record) if record else missing.append(job))
    return Collected(trials, selection, seeds, missing)
