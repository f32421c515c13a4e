"""A profile rehearsed at its real scale on stand-in images, and its full wall time projected: ``python -m reproduce rehearse``.

FGVC-Aircraft's images cannot be had everywhere (a GPU machine with no
network, a machine with only the annotation files), so the rehearsal builds
a stand-in tree and runs the profile's real work on it, on the profile's
device (or ``--device``):

* **stand-in images** (:func:`reproduce.stand_in.stand_in_tree`): with the real annotation
  files (``--data-root`` holding ``fgvc-aircraft-2013b/data``), one noise
  JPEG per listed image under its real file name, sized from
  ``images_box.txt`` (the box, as much margin right as left and below as
  above, and the 20-pixel banner), beside links to the real annotation
  files; without them, generated annotation files at FGVC-Aircraft's scale
  (100 variants of 100 images; Boeing's 22 and Airbus's 13 among them);
* **preparation** of each ITL dataset, from scratch: decoding, the
  frozen-prefix features, cost matrices and probes;
* **a short run of every training method** on each dataset: trial 0's
  configuration (the defaults) for ``epochs`` target epochs (and one source
  epoch), validated after each epoch, tested at the end and its record
  written, so that every part of a run is timed; after one warm-up epoch of
  every method, which takes what a process pays once per kind of work
  (compilation, lazily loaded CUDA kernels) and is reported but not counted;
  the methods that search Algorithm 1's ``lam`` are also timed at the two
  ends of its search range (on the first dataset), since Sinkhorn's
  iterations grow with it;
* **the projection** (:func:`reproduce.projection.project`): the full profile's wall time, from
  those figures and the exact plan — every search trial with its drawn
  configuration, every seed's refit — counted phase by phase.

Each phase is reported with its wall time, peak host memory (resident set),
peak device memory (CUDA), training steps per second and host reads per
step (:mod:`jtln.host_reads`; steps, epoch reads, validation and test), and
the GPU's utilisation sampled by ``nvidia-smi`` during the runs.  With
``--json`` the figures are written after every phase.  The
network starts from random weights and its learning rates are (about) 0 (the images
are noise): every step still computes its forward pass, backward pass and
SGD update, and the accuracies mean nothing.

What the projection cannot know, and how it counts it: a refit's
configuration and epoch count are chosen by the search, so each seed's
refit is counted with trial 0's configuration at its full budget (an
estimate, not a bound); a step's time at a trial's own ``lam`` is
interpolated linearly between the three measured (:func:`step_seconds`), and
on the other datasets scaled by the first one's ratios; a dynamic cost's recomputation (one forward
pass of the trained layers every ``cost_every`` epochs) is outside the short
runs and not counted; neither is the sweep's own bookkeeping (planning,
selection, collecting the records) nor the tables.  The command's start
and its checks (:mod:`reproduce.preflight`, run on the stand-in tree) are
measured and counted once.  ``tests/test_rehearsal.py`` checks the projection
against a small profile run in full.
"""

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from reproduce.meters import Metered, Utilisation, process_age_s
from reproduce.projection import project, run_figures, short_hparams
from reproduce.stand_in import stand_in_tree

#: the rehearsal's learning rates: 0 for the heads, barely above it below them (the runs stay as they start, at the same cost
#: per step, and the dynamic cost, which is refused where those layers cannot move, runs)
REHEARSAL_RATES = {"lr_backbone": 1e-9, "lr_fc": 1e-9, "lr_head": 0.0}


def rehearsal_profile(profile, runs, device=None, precision=None, tf32=None):
    """``profile`` as the rehearsal runs it: on ``device`` with ``precision`` and ``tf32`` (None: the profile's), random
    weights (nothing to download), learning rates (about) 0 (the images are noise: module docstring), its caches under
    ``<runs>/cache``; checked as a profile is, the device included."""
    from jtln.train import PRECISIONS
    from reproduce.profile import check_device

    if profile.data.dataset != "fgvc_aircraft":
        raise ValueError(f"profile {profile.name}: the rehearsal builds FGVC-Aircraft stand-ins, but its dataset is "
                         f"{profile.data.dataset!r}; run that profile itself")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    run = replace(profile.run, **{k: v for k, v in (("device", device), ("precision", precision), ("tf32", tf32)) if v is not None})
    profile = replace(profile, run=run, model=replace(profile.model, pretrained=False, cache_dir=str(Path(runs) / "cache")),
                      hparams={**profile.hparams, **REHEARSAL_RATES})
    check_device(profile, 1)
    return profile


def rehearse(profile, work, annotations=None, device=None, precision=None, tf32=None, epochs=2, per_variant=100,
             width=1000, height=700, log=print, startup_s=0.0, on_phase=None):
    """Build the stand-in tree (once), prepare every dataset from scratch, run every training method briefly, project.

    ``profile``: a :class:`reproduce.profile.Profile` of FGVC-Aircraft, run
    as :func:`rehearsal_profile` makes it (``device``, ``precision``,
    ``tf32``: instead of the profile's) and projected as it is.  Returns the
    figures as a dict (``phases``, ``projection``, ...).  ``startup_s``:
    the seconds the command took to start (counted once in the projection).
    ``on_phase``: called with the figures so far after every phase (the
    command writes them to its JSON file, so that a run stopped by a time
    limit keeps what it measured).
    """
    import torch

    from jtln.host_reads import counting
    from jtln.hparams import SEARCH_SPACE
    from jtln.methods import METHODS
    from reproduce.execute import train_job
    from reproduce.plan import TRIAL, Job, searched, trial_hparams
    from reproduce.prepare import Workspace
    from reproduce.records import save_record

    planned = profile  # the plan the projection counts: the profile's own seeds and trials
    profile = rehearsal_profile(profile, Path(work) / "runs", device, precision, tf32)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"--epochs must be an integer >= 1, got {epochs!r}")
    run, runs = profile.run, Path(work) / "runs"
    phases = []
    figures = {"profile": profile.name, "device": run.device, "device_name": _device_name(run.device), "precision": run.precision,
               "tf32": run.tf32, "annotations": "real" if annotations is not None else "generated", "short_epochs": epochs,
               "threads": torch.get_num_threads(), "phases": phases, "complete": False}

    def done(phase_figures):
        phases.append(phase_figures)
        if on_phase is not None:
            on_phase(figures)

    with Metered("stand-in images", "cpu") as phase:
        root, written = stand_in_tree(work, annotations, per_variant, width, height)
    done({**phase.figures, "images_written": written})
    log(f"stand-in tree: {root} ({written} images written now)")
    shutil.rmtree(runs, ignore_errors=True)
    with Metered("checks", "cpu") as phase:  # what `python -m reproduce sweep` checks before any work, on the stand-in tree
        from reproduce.preflight import preflight

        preflight(profile, "sweep", str(root), runs=runs)
    done(phase.figures)
    workspace, prepared, prepare_s = Workspace(), {}, {}
    for group in profile.data.groups:
        with Metered(f"prepare {group}", run.device) as phase:
            prepared[group] = workspace.prepared(profile, group, runs, str(root))
        done(phase.figures)
        prepare_s[group] = phase.figures["wall_s"]
        log(f"prepared {group} in {phase.figures['wall_s']:.1f} s")
    trained, level, seed = [m for m in profile.run.methods if METHODS[m].trains], profile.data.levels[-1], profile.run.seeds[0]

    def short_job(group, method, short_epochs, **fixed):
        hparams = short_hparams({**dict(trial_hparams(profile, group, method, level, seed, 0)), **fixed}, short_epochs)
        return Job(profile, group, method, level, TRIAL, 0, hparams, str(runs), str(root), seed=seed)

    # what a process pays once per kind of work (the OT loop's compilation or its cache, CUDA's lazily loaded kernels, the
    # allocator's first blocks) is paid here, by one epoch of every method, so that no method's figures carry it
    with Metered("warm-up (every method, not counted)", run.device) as phase:
        for method in trained:
            train_job(short_job(profile.data.groups[0], method, 1), workspace, test=True)
    done(phase.figures)
    meter, measured = Utilisation(), {}
    meter.start()

    def short_run(label, job):
        with Metered(label, run.device) as phase, counting(dispatch=False) as reads:  # a dispatch mode would slow every op timed
            record = train_job(job, workspace, test=True)
            save_record(job.folder, record)  # as a sweep does: the record's writing is part of a run's time
        steps, step_s = record["n_steps"], sum(s for _, s in record["timings"]["phases"])
        done({**phase.figures, "steps": steps, "steps_per_s": round(steps / step_s, 1) if step_s else None,
              "host_reads_per_step": round(reads["reads"] / steps, 2) if steps else None})
        log(f"{label}: {steps} steps in {phase.figures['wall_s']:.1f} s")
        return run_figures(record, phase.figures["wall_s"])

    for group in profile.data.groups:
        for method in trained:
            measured[(group, method)] = short_run(f"train {group} {method}", short_job(group, method, epochs))
    # Algorithm 1's iterations grow with lam: the methods that search it are also timed at the ends of its search range, on
    # the first group, and each group's steps are scaled by the first group's ratios (an estimate: module docstring)
    lam_range = SEARCH_SPACE["lam"]
    first = profile.data.groups[0]
    for method in trained:
        if "lam" not in searched(method, profile):
            continue
        at_default = measured[(first, method)]["step_s"]
        points = {dict(trial_hparams(profile, first, method, level, seed, 0))["lam"]: at_default}
        for lam in (lam_range.low, lam_range.high):
            points[lam] = short_run(f"train {first} {method} at lam {lam:g}", short_job(first, method, epochs, lam=lam))["step_s"]
        for group in profile.data.groups:
            base = measured[(group, method)]["step_s"]
            measured[(group, method)]["step_s_by_lam"] = [
                [lam, [b * (s / d if d else 1.0) for b, s, d in zip(base, step_s, at_default)]] for lam, step_s in sorted(points.items())]
    samples = meter.stop()
    fixed_s = startup_s + phases[1]["wall_s"]
    figures.update({"measured": {f"{group} {method}": f for (group, method), f in measured.items()}, "prepare_s": prepare_s,
                    "gpu_utilisation_mean": round(sum(samples) / len(samples), 1) if samples else None,
                    "gpu_utilisation_samples": len(samples)})
    try:
        projection = project(planned, prepared, measured, prepare_s, fixed_s)
    except ImportError as error:  # optuna draws the plan's configurations: the measurements stand without it
        figures["projection"] = {"unavailable": f"the plan's configurations are drawn by optuna, which is missing ({error}); "
                                                f"pip install optuna"}
    else:
        figures["projection"] = {"runs": projection["runs"], "steps": projection["steps"], "fixed_s": round(fixed_s, 1),
                                 "prepare_min": round(sum(prepare_s.values()) / 60, 1),
                                 "total_s": round(projection["seconds"], 1), "total_min": round(projection["seconds"] / 60, 1)}
    figures["complete"] = True
    if on_phase is not None:
        on_phase(figures)
    return figures


def _device_name(device):
    import platform

    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def report(figures):
    """The figures as a text table."""
    lines = [f"rehearsal of profile {figures['profile']} on {figures['device']} ({figures['device_name']}), {figures['precision']}"
             f"{', tf32' if figures['tf32'] else ''}, {figures['annotations']} annotations, {figures['threads']} threads",
             f"{'phase':<34}{'wall s':>9}{'host GB':>9}{'device GB':>10}{'steps':>7}{'steps/s':>9}{'reads/step':>11}"]
    for p in figures["phases"]:
        cells = [p["wall_s"], p["peak_host_gb"], p.get("peak_device_gb"), p.get("steps"), p.get("steps_per_s"),
                 p.get("host_reads_per_step")]
        lines.append(f"{p['phase']:<34}" + "".join(f"{'-' if v is None else v:>{w}}" for v, w in zip(cells, (9, 9, 10, 7, 9, 11))))
    if figures["gpu_utilisation_mean"] is not None:
        lines.append(f"GPU utilisation during the runs: {figures['gpu_utilisation_mean']}% "
                     f"(mean of {figures['gpu_utilisation_samples']} nvidia-smi samples)")
    p = figures.get("projection", {"unavailable": "the rehearsal stopped before its end"})
    if "unavailable" in p:
        lines.append(f"no projection: {p['unavailable']}")
    else:
        lines.append(f"projected full profile (a projection, not a measurement): {p['total_min']} min — {p['runs']} runs, "
                     f"{p['steps']} steps, preparation {p['prepare_min']} min, start and checks {p['fixed_s']} s")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--work", default="runs/rehearsal", help="folder for the stand-in tree, the runs and their caches")
    parser.add_argument("--device", default=None, help="instead of the profile's [run] device")
    parser.add_argument("--precision", default=None, help="instead of the profile's [run] precision")
    parser.add_argument("--tf32", action="store_true", default=None, help="TF32 matrix products (CUDA)")
    parser.add_argument("--epochs", type=int, default=2, help="target epochs of each short run")
    parser.add_argument("--per-variant", type=int, default=100,
                        help="images per variant where the annotations are generated (FGVC-Aircraft: 100)")
    parser.add_argument("--width", type=int, default=1000, help="generated images' width, where the annotations are generated")
    parser.add_argument("--height", type=int, default=700, help="generated images' height, where the annotations are generated")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    return parser


def cmd_rehearse(profile, args):
    import reproduce.preflight  # noqa: F401 -- what a sweep's command imports before its work (torch among them): its start
    import reproduce.sweep  # noqa: F401
    from jtln.data import fgvc_aircraft as fgvc

    startup_s = process_age_s()

    root = profile.data_root(args.data_root)
    annotations = fgvc.resolve_root(root) if (root or os.environ.get("JTLN_FGVC_ROOT")) else None
    def write(figures):  # after every phase, atomically: a run stopped by a time limit keeps what it measured
        from jtln.atomic import atomic_path

        with atomic_path(Path(args.json)) as tmp:
            Path(tmp).write_text(json.dumps(figures, indent=1) + "\n")

    figures = rehearse(profile, args.work, annotations, args.device, args.precision, args.tf32, args.epochs, args.per_variant,
                       args.width, args.height, startup_s=startup_s, on_phase=write if args.json else None)
    print(report(figures))
    return figures
