"""Every script of examples/ runs as a user would run it, and does what its docstring says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def run(script, *args):
    result = subprocess.run([sys.executable, EXAMPLES / script, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == {"ot_loss_in_your_loop.py", "cost_matrix_heatmap.py", "sweep_on_your_folders.py"}


def test_the_ot_loss_in_your_own_loop_trains():
    out = run("ot_loss_in_your_loop.py")
    accuracy = float(out.split("target training accuracy")[1])
    assert accuracy >= 0.9, out  # 4 well separated classes: the loop learns them


def test_the_cost_matrix_example_finds_the_related_classes_and_draws_them(tmp_path):
    out = run("cost_matrix_heatmap.py", tmp_path / "c.png")
    assert "{'wolf': 'husky', 'fox': 'husky', 'tabby': 'siamese', 'lion': 'siamese'}" in out
    assert (tmp_path / "c.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    work = tmp_path_factory.mktemp("flowers")
    return work, run("sweep_on_your_folders.py", work)


def test_the_folder_example_learns_its_classes(flowers):
    """Every method well above chance on the generated flowers, whose brightness is their class's in every split."""
    import numpy as np
    from PIL import Image

    work, out = flowers
    accuracy = dict(item.split() for item in out.split("mean test accuracy: ")[1].strip().split(", "))
    assert set(accuracy) == {"target_only", "jtln_mmd", "jtln_ot"} and all(float(a) >= 0.75 for a in accuracy.values()), out
    brightness = {(split, folder.name): np.mean([np.asarray(Image.open(f)).mean() for f in folder.glob("*.png")])
                  for split in ("target/train", "target/test") for folder in (work / "images" / split).iterdir()}
    for name in ("daisy", "rose"):  # the signal the methods learn is the same in training and test images
        assert abs(brightness[("target/train", name)] - brightness[("target/test", name)]) < 5, brightness


def test_a_folder_dataset_and_a_timm_backbone_run_the_whole_pipeline(flowers):
    flowers = flowers[0]
    out = flowers / "tables" / "flowers"
    assert json.loads((out / "table1.json").read_text()) == {"flowers": {
        "target_categories": 2, "target_train_images": 12, "target_test_images": 8, "source_categories": 3, "source_images": 12}}
    for name in ("table1.tex", "table2.tex"):  # the tables name the user's data
        assert "my flowers: three tree species" in (out / name).read_text(), name
    rows = json.loads((out / "stats.json").read_text())["table2"]
    assert {r["method"] for r in rows} == {"target_only", "jtln_mmd", "jtln_ot"}
    assert all(r["cells"]["flowers"]["n"] == 2 for r in rows)
    record = json.loads(next((flowers / "runs").rglob("record.json")).read_text())
    assert record["inputs"]["model"]["backbone"] == "timm:resnet18" and record["inputs"]["model"]["trunk_from"] == "layer4"
    assert record["inputs"]["data"]["root"] == str(flowers / "images")  # a folder dataset's images are part of a run's identity
    # the user's own data plays none of the paper's columns unless [data] plays says so: no claim tested, and said
    stats = json.loads((out / "stats.json").read_text())
    assert stats["claims"] == []
    assert "No claim of the paper is tested" in (out / "claims.tex").read_text()
    assert "none tested; no dataset plays one of the paper's columns" in (out / "findings.md").read_text()
