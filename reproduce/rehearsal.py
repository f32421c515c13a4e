"""The paper profile rehearsed at the paper's scale on generated images: ``python -m reproduce.rehearsal``.

FGVC-Aircraft's images cannot be fetched everywhere (a GPU machine with no
network), so this builds a tree in FGVC-Aircraft's format and at its scale —
100 variants of ``per_variant`` images (two thirds trainval), Boeing's 22 and
Airbus's 13 among them, JPEGs of ``width`` x ``height`` pixels — and runs the
paper profile on it with fewer trials and seeds: every method, AlexNet at
224 px, the real preparation (decoding, features, cost matrices, probes).
It reports, as JSON, the wall time of preparation and of the runs, the
training steps per second, the GPU's utilisation sampled by ``nvidia-smi``
while the runs train, and the full paper profile's time extrapolated from the
runs (its runs are the rehearsal's times ``(n_trials * draws + seeds) /
(1 + 1)`` per cell).  The accuracies mean nothing: the images are noise.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: FGVC-Aircraft's manufacturers as the rehearsal draws them: Boeing's and Airbus's variant counts are the real ones
VARIANTS = {"Boeing": 22, "Airbus": 13, **{f"Maker{k:02d}": 5 for k in range(13)}}


def _write_images(job):
    import numpy as np
    from PIL import Image

    folder, ids, width, height = job
    rng = np.random.default_rng(ids[0])
    for image_id in ids:
        small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((width, height)).save(Path(folder) / f"{image_id}.jpg", quality=85)
    return len(ids)


def make_tree(root, per_variant=100, width=1000, height=700, processes=None):
    """A ``<root>/fgvc-aircraft-2013b/data`` tree in FGVC-Aircraft's format: annotation files and generated JPEGs."""
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    variants = {maker: [f"{maker}-{v}" for v in range(n)] for maker, n in VARIANTS.items()}
    (data / "variants.txt").write_text("".join(f"{v}\n" for vs in variants.values() for v in vs))
    image_id, lines, ids = 1_000_000, {}, []
    n_trainval = round(per_variant * 2 / 3)
    for split, n in (("trainval", n_trainval), ("test", per_variant - n_trainval)):
        for maker, vs in variants.items():
            for variant in vs:
                for _ in range(n):
                    image_id += 1
                    ids.append(image_id)
                    lines.setdefault(split, []).append((image_id, variant, maker))
    for split, rows in lines.items():
        (data / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v, _ in rows))
        (data / f"images_manufacturer_{split}.txt").write_text("".join(f"{i} {m}\n" for i, _, m in rows))
    chunks = [(str(data / "images"), ids[k:k + 200], width, height) for k in range(0, len(ids), 200)]
    with ProcessPoolExecutor(processes or os.cpu_count()) as pool:
        written = sum(pool.map(_write_images, chunks))
    return Path(root), written


PROFILE = """name = "paper_rehearsal"
description = "the paper profile on generated FGVC-shaped images (python -m reproduce.rehearsal)"
[data]
dataset = "fgvc_aircraft"
groups = ["Boeing", "Airbus"]
levels = ["all"]
validation_fraction = 0.2
[model]
backbone = "alexnet"
pretrained = {pretrained}
image_size = {image_size}
[search]
n_trials = 1
draws = 1
[run]
seeds = [0]
device = "{device}"
precision = "{precision}"
tf32 = {tf32}
[hparams]
# random weights on noise images give features near 0 and probes of weights near 1e4, which diverge at any learning rate;
# the rehearsal measures time, not accuracy: the network stays put, and every step still computes its forward pass,
# backward pass and SGD update
lr_backbone = 0.0
lr_fc = 0.0
lr_head = 0.0
{hparams}
"""


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


def rehearse(work, device="cuda", per_variant=100, width=1000, height=700, image_size=224, pretrained=False,
             precision="float32", tf32=False, hparams=""):
    """Build the tree (once), prepare and sweep it; returns the figures as a dict."""
    from reproduce.collect import collect
    from reproduce.prepare import Workspace
    from reproduce.profile import load_profile
    from reproduce.sweep import sweep

    work = Path(work)
    start = time.perf_counter()
    root = work / "data"
    images = 0 if (root / "fgvc-aircraft-2013b").is_dir() else make_tree(root, per_variant, width, height)[1]
    generated = time.perf_counter()
    profile_path = work / "paper_rehearsal.toml"
    profile_path.write_text(PROFILE.format(pretrained=str(pretrained).lower(), image_size=image_size, device=device,
                                           precision=precision, tf32=str(tf32).lower(), hparams=hparams))
    profile, runs = load_profile(profile_path), work / "runs"
    workspace = Workspace()
    for group in profile.data.groups:
        workspace.prepared(profile, group, runs, str(root))
    prepared = time.perf_counter()
    meter = Utilisation()
    meter.start()
    sweep(profile, runs, str(root))
    samples = meter.stop()
    finished = time.perf_counter()
    collected = collect(profile, runs)
    records = collected.trials + collected.seeds
    steps = sum(r["n_steps"] for r in records)
    train_s = sum(r["timings"]["train_s"] for r in records)
    paper = load_profile("paper")
    factor = (paper.search.n_trials * paper.search.draws + len(paper.run.seeds)) / 2
    return {"device": device, "precision": precision, "tf32": tf32, "images_generated": images,
            "generate_s": round(generated - start, 1), "prepare_s": round(prepared - generated, 1),
            "sweep_s": round(finished - prepared, 1), "runs": len(records), "steps": steps,
            "train_s": round(train_s, 1), "steps_per_s": round(steps / train_s, 1) if train_s else None,
            "gpu_utilisation_mean": round(sum(samples) / len(samples), 1) if samples else None,
            "gpu_utilisation_samples": len(samples),
            "paper_profile_estimate_min": round(((prepared - generated) + factor * (finished - prepared)) / 60, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m reproduce.rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/rehearsal", help="folder for the generated tree, runs and caches")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--per-variant", type=int, default=100, help="images per variant (FGVC-Aircraft: 100)")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=700)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--hparams", default="", help="TOML lines for [hparams], e.g. 'epochs = 2' (default: the paper's)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = rehearse(args.work, args.device, args.per_variant, args.width, args.height, args.image_size,
                       precision=args.precision, tf32=args.tf32, hparams=args.hparams.replace("\\n", "\n"))
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
