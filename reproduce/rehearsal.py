"""A profile rehearsed at its real scale on stand-in images, and its full wall time projected: ``python -m reproduce rehearse``.

FGVC-Aircraft's images cannot be had everywhere (a GPU machine with no
network, a machine with only the annotation files), so the rehearsal builds
a stand-in tree and runs the profile's real work on it, on the profile's
device (or ``--device``):

* **stand-in images** (:func:`stand_in_tree`): with the real annotation
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
* **the projection** (:func:`project`): the full profile's wall time, from
  those figures and the exact plan — every search trial with its drawn
  configuration, every seed's refit — counted phase by phase.

Each phase is reported with its wall time, peak host memory (resident set),
peak device memory (CUDA), training steps per second and host reads per
step (:mod:`jtln.host_reads`; steps, epoch reads, validation and test), and
the GPU's utilisation sampled by ``nvidia-smi`` during the runs.  With
``--json`` the figures are written after every phase.  The
network starts from random weights and its learning rates are 0 (the images
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
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

#: FGVC-Aircraft's manufacturers as the generated annotations draw them: Boeing's and Airbus's variant counts are the real ones
VARIANTS = {"Boeing": 22, "Airbus": 13, **{f"Maker{k:02d}": 5 for k in range(13)}}
#: FGVC-Aircraft's copyright banner at the bottom of each image, which the loader crops (:func:`jtln.data.fgvc_aircraft.load_rgb`)
BANNER = 20


def _write_images(job):
    import numpy as np
    from PIL import Image

    folder, images = job
    rng = np.random.default_rng(int(images[0][0]))
    for image_id, width, height in images:
        small = rng.integers(0, 255, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
        Image.fromarray(small).resize((width, height)).save(Path(folder) / f"{image_id}.jpg", quality=85)
    return len(images)


def _generated_annotations(data, per_variant):
    """FGVC-Aircraft's annotation files at its scale, written into ``data``; the listed image ids."""
    variants = {maker: [f"{maker}-{v}" for v in range(n)] for maker, n in VARIANTS.items()}
    (data / "variants.txt").write_text("".join(f"{v}\n" for vs in variants.values() for v in vs))
    image_id, lines = 1_000_000, {}
    n_trainval = round(per_variant * 2 / 3)
    for split, n in (("trainval", n_trainval), ("test", per_variant - n_trainval)):
        for maker, vs in variants.items():
            for variant in vs:
                for _ in range(n):
                    image_id += 1
                    lines.setdefault(split, []).append((str(image_id), variant, maker))
    for split, rows in lines.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v, _ in rows))
        (data / f"images_manufacturer_{split}.txt").write_text("".join(f"{i} {m}\n" for i, _, m in rows))
    return [i for rows in lines.values() for i, _, _ in rows]


def stand_in_tree(work, annotations=None, per_variant=100, width=1000, height=700, processes=None):
    """``<work>/data/fgvc-aircraft-2013b/data``: annotation files and a noise JPEG per listed image (module docstring).

    ``annotations``: a folder holding ``fgvc-aircraft-2013b/data`` with the
    real annotation files, linked (not copied) into the tree, each image
    sized from its box; None: generated annotation files, every image
    ``width`` x ``height``.  Built once for what it is built from (other
    annotations or sizes rebuild it): returns the root and the number of
    images written now (0 when the tree was there).
    """
    from jtln.data import fgvc_aircraft as fgvc

    root = Path(work) / "data"
    data = fgvc.data_dir(root)
    done = data / ".complete"
    source = f"annotations {Path(annotations).absolute()}" if annotations is not None else f"generated {per_variant} {width} {height}"
    if done.is_file() and done.read_text().splitlines()[0] == source:
        return root, 0
    if data.exists():
        shutil.rmtree(data)
    (data / "images").mkdir(parents=True)
    if annotations is not None:
        real = fgvc.data_dir(annotations)
        fgvc.fgvc_aircraft_samples(annotations)  # the annotation files are there and consistent, or a clear error
        for path in sorted(real.glob("*.txt")):
            (data / path.name).symlink_to(path.absolute())
        boxes = {}
        if (real / "images_box.txt").is_file():
            for line in (real / "images_box.txt").read_text().splitlines():
                image_id, *box = line.split()
                xmin, ymin, xmax, ymax = map(int, box)
                boxes[image_id] = (xmax + 1 + xmin, ymax + 1 + ymin + BANNER)
        images = [(p.stem, *boxes.get(p.stem, (width, height))) for p in fgvc.annotated_images(root)]
    else:
        images = [(i, width, height) for i in _generated_annotations(data, per_variant)]
    chunks = [(str(data / "images"), images[k:k + 200]) for k in range(0, len(images), 200)]
    with ProcessPoolExecutor(processes or os.cpu_count()) as pool:
        written = sum(pool.map(_write_images, chunks))
    done.write_text(f"{source}\n{written} images\n")
    return root, written


class Utilisation(threading.Thread):
    """Samples ``nvidia-smi``'s GPU utilisation every ``every`` seconds while it runs (nothing where there is no nvidia-smi)."""

    def __init__(self, every=0.5):
        super().__init__(daemon=True)
        self.every, self.samples, self.running = every, [], True

    def run(self):
        while self.running:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            time.sleep(self.every)

    def stop(self):
        self.running = False
        return self.samples


class Phase:
    """Times a phase of the rehearsal and its peak host memory (``VmHWM``, reset at the start) and CUDA memory."""

    def __init__(self, name, device):
        self.name, self.cuda = name, str(device).startswith("cuda")

    def __enter__(self):
        import torch

        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets the resident set's high-water mark (Linux)
        except OSError:
            pass
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.figures = {"phase": self.name, "wall_s": round(time.perf_counter() - self.started, 2),
                        "peak_host_gb": _peak_host_gb(),
                        "peak_device_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if self.cuda else None}
        return False


def _peak_host_gb():
    try:
        return round(int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1e6, 2)
    except (OSError, AttributeError):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)  # the process's peak so far


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
    stand_in = {}  # each cell's selection as the projection counts it: trial 0's configuration at its full budget
    for d, m, level in cells(profile):
        if n_trials(profile, m):
            hparams = dict(trial_hparams(profile, d, m, level, 0))
            stand_in[(d, m, level)] = {"hparams": hparams, "epochs": hparams["epochs"]}
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


def rehearsal_profile(profile, runs, device=None, precision=None, tf32=None):
    """``profile`` as the rehearsal runs it: on ``device`` with ``precision`` and ``tf32`` (None: the profile's), random
    weights (nothing to download), learning rates 0 (the images are noise: module docstring), its caches under
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
                      hparams={**profile.hparams, "lr_backbone": 0.0, "lr_fc": 0.0, "lr_head": 0.0})
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

    planned = profile  # the plan the projection counts: the profile's own search draws
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

    with Phase("stand-in images", "cpu") as phase:
        root, written = stand_in_tree(work, annotations, per_variant, width, height)
    done({**phase.figures, "images_written": written})
    log(f"stand-in tree: {root} ({written} images written now)")
    shutil.rmtree(runs, ignore_errors=True)
    with Phase("checks", "cpu") as phase:  # what `python -m reproduce sweep` checks before any work, on the stand-in tree
        from reproduce.preflight import preflight

        preflight(profile, "sweep", str(root), runs=runs)
    done(phase.figures)
    workspace, prepared, prepare_s = Workspace(), {}, {}
    for group in profile.data.groups:
        with Phase(f"prepare {group}", run.device) as phase:
            prepared[group] = workspace.prepared(profile, group, runs, str(root))
        done(phase.figures)
        prepare_s[group] = phase.figures["wall_s"]
        log(f"prepared {group} in {phase.figures['wall_s']:.1f} s")
    trained, level = [m for m in profile.run.methods if METHODS[m].trains], profile.data.levels[-1]

    def short_job(group, method, short_epochs, **fixed):
        hparams = short_hparams({**dict(trial_hparams(profile, group, method, level, 0)), **fixed}, short_epochs)
        return Job(profile, group, method, level, TRIAL, 0, hparams, str(runs), str(root))

    # what a process pays once per kind of work (the OT loop's compilation or its cache, CUDA's lazily loaded kernels, the
    # allocator's first blocks) is paid here, by one epoch of every method, so that no method's figures carry it
    with Phase("warm-up (every method, not counted)", run.device) as phase:
        for method in trained:
            train_job(short_job(profile.data.groups[0], method, 1), workspace, test=True)
    done(phase.figures)
    meter, measured = Utilisation(), {}
    meter.start()

    def short_run(label, job):
        with Phase(label, run.device) as phase, counting() as reads:
            record = train_job(job, workspace, test=True)
            save_record(job.folder, record)  # as a sweep does: the record's writing is part of a run's time
        steps, step_s = record["n_steps"], sum(s for _, s in record["timings"]["phases"])
        done({**phase.figures, "steps": steps, "steps_per_s": round(steps / step_s, 1) if step_s else None,
              "host_reads_per_step": round(reads["reads"] / steps, 2) if steps else None,
              "hidden_reads_per_step": round(reads["hidden_reads"] / steps, 2) if steps else None})
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
        points = {dict(trial_hparams(profile, first, method, level, 0))["lam"]: at_default}
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


def process_age_s():
    """Seconds since this process started (Linux's ``/proc``; 0 elsewhere): the interpreter's start, the imports, the profile."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def cmd_rehearse(profile, args):
    import reproduce.preflight  # noqa: F401 -- what a sweep's command imports before its work (torch among them): its start
    import reproduce.sweep  # noqa: F401
    from jtln.data import fgvc_aircraft as fgvc

    startup_s = process_age_s()

    root = args.data_root or profile.data.root or None
    annotations = fgvc.resolve_root(root) if (root or os.environ.get("JTLN_FGVC_ROOT")) else None
    def write(figures):  # after every phase, atomically: a run stopped by a time limit keeps what it measured
        from jtln.atomic import atomic_path

        with atomic_path(Path(args.json)) as tmp:
            Path(tmp).write_text(json.dumps(figures, indent=1) + "\n")

    figures = rehearse(profile, args.work, annotations, args.device, args.precision, args.tf32, args.epochs, args.per_variant,
                       args.width, args.height, startup_s=startup_s, on_phase=write if args.json else None)
    print(report(figures))
    return figures


def main(argv=None):
    """``python -m reproduce.rehearsal``: the same as ``python -m reproduce rehearse``."""
    from reproduce.__main__ import main as reproduce_main

    return reproduce_main(["rehearse", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
