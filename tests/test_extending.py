"""Adding a method is one decorated class: registered, it runs through the whole sweep and reaches the tables, with no other
edit (no profile lists it, no table or figure names it)."""

import pytest

from reproduce.__main__ import main

#: the smoke profile cut to one dataset, level and search trial: every registered method, in seconds
TINY = """name = "tiny"
description = "every registered method on tiny generated data"
[data]
dataset = "synthetic"
groups = ["Tops"]
levels = [5]
validation_fraction = 0.2
source_per_class = 6
[model]
backbone = "efficientnet_lite0"
image_size = 32
[search]
n_trials = 1
[run]
seeds = [0]
[hparams]
epochs = 1
source_epochs = 1
batch_size_target = 8
batch_size_source = 8
cost_samples_per_class = 8
"""


@pytest.fixture
def joint_again():
    """A copy of joint fine-tuning under a new name, registered for the test's duration."""
    from jtln.methods import FINE_TUNING, METHODS, Joint, register

    @register("joint_again", display="Joint finetuning, again", order=2.5, searches=FINE_TUNING + ("lambda_s",))
    class JointAgain(Joint):
        """Joint fine-tuning under another name."""

    yield JointAgain
    METHODS.pop("joint_again")


def test_a_method_registered_at_run_time_is_trained_and_tabulated_with_no_other_edit(joint_again, tmp_path):
    from reproduce.collect import collect
    from reproduce.profile import load_profile

    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY)
    assert "joint_again" in load_profile(profile).run.methods
    assert main(["all", "--profile", str(profile), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--no-report"]) == 0
    collected = collect(load_profile(profile), tmp_path / "runs")
    assert {r["seed"] for r in collected.seeds if r["method"] == "joint_again"} == {0}
    assert [r["trial"] for r in collected.trials if r["method"] == "joint_again"] == [0]
    table2 = (tmp_path / "tiny" / "table2.tex").read_text()
    rows = table2[table2.index(r"\begin{tabular}"):]
    assert rows.index("Joint finetuning on source+target") < rows.index("Joint finetuning, again") < rows.index("JTLN (fc7MKMMD)")
    assert "Joint finetuning, again" in (tmp_path / "tiny" / "hparams.tex").read_text()


def test_a_dataset_registered_at_run_time_is_checked_before_work_and_its_root_is_part_of_a_run(tmp_path, capsys):
    """A dataset is one entry: its loader, groups, presence check (called by the command's checks) and whether its root
    is part of a run's identity."""
    from jtln.data import DATASETS, Dataset, register_dataset
    from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays
    from reproduce.profile import load_profile

    def present(root, groups, download):
        if not (root and (tmp_path / root).is_dir()):
            raise FileNotFoundError(f"no copy of my data under {root!r}; put it there")

    register_dataset("mine", Dataset(lambda group, **options: fashion_mnist_itl(group, arrays=synthetic_arrays()),
                                     lambda: ("Tops", "Footwear"), present=present, root_in_identity=True))
    try:
        text = TINY.replace('dataset = "synthetic"', 'dataset = "mine"\nroot = "nowhere"')
        profile = tmp_path / "mine.toml"
        profile.write_text(text)
        assert main(["sweep", "--profile", str(profile), "--runs", str(tmp_path / "runs")]) == 2  # checked before any work
        assert "no copy of my data under 'nowhere'" in capsys.readouterr().err and not (tmp_path / "runs").exists()
        other = tmp_path / "other.toml"
        other.write_text(text.replace('root = "nowhere"', 'root = "elsewhere"'))
        assert load_profile(profile).data.identity() != load_profile(other).data.identity()  # other files, another run
    finally:
        DATASETS.pop("mine")


def test_a_backbone_is_one_entry_whose_weights_check_runs_before_any_work(tmp_path, capsys):
    from jtln.models import BACKBONES, BackboneEntry, backbone_rates, efficientnet_lite0

    def no_weights():
        raise FileNotFoundError("my backbone's weights are not here; set [model].weights_path")

    BACKBONES["mine"] = BackboneEntry(efficientnet_lite0, ("lr_backbone",), no_weights)
    try:
        assert backbone_rates("mine") == ("lr_backbone", "lr_head")
        profile = tmp_path / "tiny.toml"
        profile.write_text(TINY.replace('backbone = "efficientnet_lite0"', 'backbone = "mine"'))
        assert main(["sweep", "--profile", str(profile), "--runs", str(tmp_path / "runs")]) == 2
        assert "my backbone's weights are not here" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    finally:
        BACKBONES.pop("mine")
