"""The full profile's wall time, projected from the rehearsal's short runs over the exact plan (:mod:`reproduce.rehearsal`).

What it cannot know, and how it counts it: a refit's configuration and
epoch count are chosen by the search, so each seed's refit is counted with
trial 0's configuration at its full budget (an estimate, not a bound); a
trial at its full epoch count, as if early stopping never stopped it; a
step's time at a trial's own ``lam`` is interpolated linearly between the
measured ones (:func:`step_seconds`); a dynamic cost's recomputation is not
counted; neither is the sweep's own bookkeeping.
"""

def short_hparams(hparams, epochs):
    """Trial 0's configuration cut to ``epochs`` target epochs and one source epoch."""
    return tuple(sorted({**dict(hparams), "epochs": epochs, "source_epochs": 1}.items()))


def run_figures(record, wall_s):
    """What the projection needs of one short run: seconds before the steps, per step of each phase, per epoch end, for the test,
    and the rest of the run's wall time (writing the record, the lookups)."""
    t = record["timings"]
    inside = t["setup_s"] + sum(s for _, s in t["phases"]) + t["epoch_end_s"] + t["evaluate_s"]
    return {"setup_s": t["setup_s"], "step_s": [s / n if n else 0.0 for n, s in t["phases"]],
            "epoch_end_s": t["epoch_end_s"] / max(1, t["epochs"]), "evaluate_s": t["evaluate_s"], "other_s": max(0.0, wall_s - inside)}


def step_seconds(figures, lam):
    """Seconds per step of each phase at Algorithm 1's ``lam``: interpolated linearly in ``lam`` between the short runs
    measured at several (``figures["step_s_by_lam"]``, ``[[lam, step_s], ...]``; clamped at the ends), else the one
    measurement (``figures["step_s"]``)."""
    points = sorted(figures.get("step_s_by_lam") or [])
    if not points:
        return figures["step_s"]
    if lam <= points[0][0]:
        return points[0][1]
    for (lo, low), (hi, high) in zip(points, points[1:]):
        if lam <= hi:
            w = (lam - lo) / (hi - lo)
            return [a + w * (b - a) for a, b in zip(low, high)]
    return points[-1][1]


def project(profile, prepared, measured, prepare_s, fixed_s=0.0):
    """The full profile's wall time, in seconds, from the rehearsal's figures; and its run and step counts.

    ``prepared``: ``{group: Prepared}``; ``measured``: ``{(group, method):
    run_figures(...)}``; ``prepare_s``: ``{group: seconds}``; ``fixed_s``:
    what the command pays once besides (its start, its checks).  Every run of
    the plan (:func:`reproduce.plan.plan_trials`, and
    :func:`reproduce.plan.plan_seeds` with trial 0 standing for each cell's
    selection) is counted phase by phase under its own configuration: its
    setup, its steps at its method's seconds per step of that phase at its
    own ``lam`` (:func:`step_seconds`), its epochs' ends (a trial validates
    each epoch), its test (a seed), and the rest (module docstring for what
    is estimated and what is left out).  Drawing the trials' configurations
    needs optuna (:func:`jtln.hparams.sample`).
    """
    from jtln.methods import METHODS
    from reproduce.plan import TRIAL, cells, n_trials, plan_seeds, plan_trials, trial_hparams

    trained = lambda jobs: [job for job in jobs if METHODS[job.method].trains]  # noqa: E731 -- a probe's run is an evaluation
    stand_in = {}  # each seed's selection as the projection counts it: trial 0's configuration at its full budget
    for d, m, level in cells(profile):
        for s in profile.run.seeds:
            if n_trials(profile, m):
                hparams = dict(trial_hparams(profile, d, m, level, s, 0))
                stand_in[(d, m, level, s)] = {"hparams": hparams, "epochs": hparams["epochs"]}
    jobs = trained(plan_trials(profile, "runs")) + trained(plan_seeds(profile, "runs", stand_in))
    seconds, steps = fixed_s + sum(prepare_s.values()), 0
    for job in jobs:
        hp, figures, prep = job.hp, measured[(job.dataset, job.method)], prepared[job.dataset]
        draw = prep.draws[(job.level, job.draw_seed)]
        phases = METHODS[job.method].phases(hp, len(draw.training(job.role != TRIAL)), len(draw.source))
        steps += sum(p.steps for p in phases)
        step_s = step_seconds(figures, hp.lam)
        seconds += figures["setup_s"] + figures["other_s"] + sum(p.steps * s for p, s in zip(phases, step_s))
        seconds += hp.epochs * figures["epoch_end_s"] if job.role == TRIAL else figures["evaluate_s"]
    return {"seconds": seconds, "runs": len(jobs), "steps": steps}
