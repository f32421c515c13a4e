"""The whole sweep on your own image folders with any timm backbone: Table 1, the search, Table 2 and the statistics.

Needs the experiment's packages: ``pip install ".[experiment]"`` from the repository's root (timm, optuna, ...).

Your images go in class folders (``source/<class>/``, ``target/train/<class>/``, ``target/test/<class>/``; see
``jtln.data.folder``); a profile names them and the backbone.  This script generates a small tree of images whose
brightness is their class's, in every split (a signal a randomly initialised network still carries), and a randomly
initialised ResNet-18's weights (offline), so that it runs in about a minute on a 2-core CPU:
``python examples/sweep_on_your_folders.py [workdir]``.  It prints each method's mean test accuracy and exits 1 if one
is not clearly above chance (one half).  With your data, write the profile below and run
``python -m reproduce all --profile my_profile.toml`` from the repository's root.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduce/ runs from a checkout
from reproduce.__main__ import main  # noqa: E402

PROFILE = """name = "flowers"
description = "my flowers: three tree species as the source, two flowers as the target"

[data]
dataset = "folder"
groups = ["flowers"]          # the name your data goes by in the tables
root = "{root}"
levels = [6]                  # labelled target images per class (training + validation), drawn per seed
validation_fraction = 0.34
source_per_class = 4

[model]
backbone = "timm:resnet18"    # any timm CNN; pretrained weights from timm, or weights_path offline
weights_path = "{weights}"
image_size = 32
trunk_from = "layer4"         # the first trained block (default: the last one holding a convolution)

[search]
n_trials = 1

[run]
methods = ["target_only", "jtln_mmd", "jtln_ot"]
seeds = [0, 1]

[hparams]
epochs = 1
source_epochs = 1
batch_size_target = 4
batch_size_source = 4
cost_samples_per_class = 4
"""


#: each class's mean brightness, the same in every split: the target's two flowers far apart, the source's trees between
BRIGHTNESS = {"daisy": 50, "rose": 200, "maple": 70, "oak": 125, "pine": 180}


def make_tree(root, per_class=8, size=24):
    """Small PNGs whose brightness follows their class (:data:`BRIGHTNESS`) in every split, in the folder layout."""
    rng = np.random.default_rng(0)
    parts = [("source", c, per_class) for c in ("maple", "oak", "pine")]
    parts += [("target/train", c, per_class) for c in ("daisy", "rose")] + [("target/test", c, 4) for c in ("daisy", "rose")]
    for part, name, n in parts:
        folder = Path(root) / part / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(rng.normal(BRIGHTNESS[name], 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def learned(tables):
    """Each method's mean test accuracy from the sweep's ``stats.json``, and whether every one is clearly above chance."""
    import json

    rows = json.loads((tables / "stats.json").read_text())["table2"]
    accuracy = {r["method"]: r["cells"]["flowers"]["mean"] for r in rows}
    return accuracy, all(a >= 0.75 for a in accuracy.values())  # two classes: chance is 0.5


if __name__ == "__main__":
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="jtln-flowers-"))
    make_tree(work / "images")
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18").state_dict(), work / "resnet18.pt")
    profile = work / "flowers.toml"
    profile.write_text(PROFILE.format(root=work / "images", weights=work / "resnet18.pt"))
    code = main(["all", "--profile", str(profile), "--runs", str(work / "runs"), "--out", str(work / "tables"), "--no-report"])
    print(f"tables in {work / 'tables' / 'flowers'}")
    if code:
        sys.exit(code)
    accuracy, above_chance = learned(work / "tables" / "flowers")
    print("mean test accuracy: " + ", ".join(f"{m} {a:.3f}" for m, a in accuracy.items()))
    sys.exit(0 if above_chance else 1)
