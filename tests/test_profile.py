"""Profiles: the committed ones load; unknown keys, wrong types and impossible values are refused by name before any work."""

from dataclasses import fields

import pytest

from jtln.hparams import DEFAULTS, HParams, check_overrides
from reproduce.__main__ import main
from reproduce.profile import PROFILES_DIR, load_profile

DATA = '[data]\ndataset = "fashion_mnist"\ngroups = ["Tops"]\n'


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
def test_committed_profiles_load(name):
    profile = load_profile(name)
    assert profile.name == name and profile.data.groups and profile.data.table2_level in profile.data.levels


@pytest.mark.parametrize(
    "text, message",
    [
        (DATA + "colour = 1\n", r"unknown key\(s\) \['colour'\] in .*\[data\]"),
        ('[data]\ndataset = "fashion_mnist"\ngroups = "Tops"\n', r"\[data\].groups must be of type list"),
        (DATA + 'source_per_class = "67"\n', "source_per_class must be of type int"),
        ('[data]\ndataset = "imagenet"\ngroups = ["Tops"]\n', r"\[data\].dataset: unknown dataset 'imagenet'; known: \["),
        ('[data]\ndataset = "fashion_mnist"\ngroups = ["Hats"]\n', r"has no group\(s\) \['Hats'\]"),
        (DATA + '[model]\nbackbone = "resnet18"\n', r"\[model\].backbone: unknown backbone 'resnet18'; known: \["),
        ('[data]\ndataset = "fashion_mnist"\ngroups = []\n', r"\[data\].groups is empty"),
        (DATA + "levels = [1]\n", "levels item must be an int >= 2"),
        (DATA + "levels = [10, 67]\ntable2_level = 20\n", "table2_level = 20 is not one of"),
        (DATA + "validation_fraction = 1.5\n", "validation_fraction must be <= 1"),
        (DATA + "source_per_class = -3\n", "source_per_class must be >= 0"),
        (DATA + "[hparams]\nlr = 0.1\n", "unknown hyper-parameter 'lr'"),
        (DATA + "[hparams]\nepochs = 1.5\n", "epochs must be of type int"),
        (DATA + "[hparams]\nepochs = 0\n", r"\[hparams\].epochs must be >= 1, got 0"),
        (DATA + "[hparams]\nepochs = -3\n", r"\[hparams\].epochs must be >= 1"),
        (DATA + "[hparams]\nbatch_size_target = -4\n", r"batch_size_target must be >= 1"),
        (DATA + "[hparams]\nlam = -1\n", r"lam must be > 0"),
        (DATA + '[hparams]\nmmd_estimator = "quadratic"\n', "mmd_estimator must be one of"),
        (DATA + "[run]\nmethods = []\n", r"\[run\].methods is empty"),
        (DATA + '[run]\nmethods = ["jtln", "joint"]\n', r"unknown method\(s\) \['jtln'\]"),
        (DATA + "[run]\nseeds = [0, 0]\n", "lists an entry twice"),
        (DATA + "[run]\nseeds = []\n", r"\[run\].seeds is empty"),
        (DATA + "[run]\nseeds = [-1]\n", r"seeds item must be >= 0"),
        (DATA + '[run]\nseeds = ["a"]\n', r"seeds item 'a' must be of type int"),
        (DATA + '[run]\ndevice = "tpu"\n', "device must be"),
        (DATA + '[run]\ndevice = "cuda"\nworkers = 2\n', r"\[run\].workers = 2 on \[run\].device = 'cuda': local workers would each"),
        (DATA + "[search]\nn_trials = 0\n", r"n_trials must be >= 1"),
        (DATA + "[search]\npatience = -1\n", r"patience must be >= 0"),
        ('name = "../../escape"\n' + DATA, "must be letters, digits"),
        (DATA + "[trainer]\n", r"unknown key\(s\) \['trainer'\]"),
        ('name = "x"\n', "has no \\[data\\] section"),
        ("data = 3\n", "data must be a \\[data\\] section"),
        ('[data]\ngroups = ["Tops"]\n', r"lacks the key\(s\) \['dataset'\]"),
        ("[data\n", "not valid TOML"),
    ],
)
def test_bad_profiles(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_profile(path)


def test_every_hyperparameter_declares_its_values_and_its_default_and_search_stay_inside_them():
    for f in fields(HParams):
        declared = f.metadata
        assert (declared["choices"] is None) != (declared["low"] is None), f"{f.name}: a range or choices, not both"
        check_overrides({f.name: getattr(DEFAULTS, f.name)})
        search = declared["search"]
        if search is not None and search.kind == "choice":
            assert set(search.choices) <= set(declared["choices"]), f.name
        elif search is not None:
            check_overrides({f.name: f.type(search.low)})
            check_overrides({f.name: f.type(search.high)})
    with pytest.raises(ValueError, match=r"hparams.cost_momentum must be <= 0.99, got 1.5"):
        check_overrides({"cost_momentum": 1.5})
    with pytest.raises(ValueError, match=r"hparams.cost_kind must be one of \('mmd', 'ot'\)"):
        check_overrides({"cost_kind": "mmd-optimal"})


def test_a_bad_profile_exits_2_before_any_run(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(DATA + "[hparams]\nepochs = 0\n")
    assert main(["all", "--profile", str(path), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_unknown_profile_name_lists_the_available_ones():
    with pytest.raises(FileNotFoundError, match=r"available: \[.*fashion_mnist.*\]"):
        load_profile("no_such_profile")


@pytest.mark.parametrize("flag", ["--out", "--runs"])
def test_an_output_folder_that_cannot_be_written_exits_2_before_any_work(tmp_path, capsys, flag):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    other = "--runs" if flag == "--out" else "--out"
    for target, message in ((a_file, "is a file, not a folder"), (a_file / "below", "cannot be created: ")):
        argv = ["all", "--profile", "smoke", flag, str(target), other, str(tmp_path / "elsewhere")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert flag in err and message in err, err
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").rglob("record.json"))


def test_a_cuda_profile_without_cuda_exits_2_before_any_work(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "gpu.toml"
    path.write_text(DATA.replace('"fashion_mnist"', '"synthetic"') + '[run]\ndevice = "cuda"\n')
    assert main(["all", "--profile", str(path), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "out" / "bad").exists()
    assert not list((tmp_path / "out").rglob("table1.tex"))  # not even Table 1 was written


@pytest.mark.parametrize("argv, message", [
    (["all", "--profile", "BAD"], "unknown backbone 'resnet18'"),
    (["all", "--profile", "smoke", "--workers", "0"], "--workers: must be an integer >= 1, got 0"),
    (["sweep", "--profile", "smoke", "--workers", "-3"], "--workers: must be an integer >= 1, got -3"),
    (["sweep", "--profile", "smoke", "--executor", "slurm", "--cpus", "0"], "--cpus: must be an integer >= 1, got 0"),
])
def test_a_bad_profile_or_option_exits_2_before_anything_is_written(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(DATA + '[model]\nbackbone = "resnet18"\n')
    argv = [str(bad) if a == "BAD" else a for a in argv]
    out, runs = tmp_path / "out", tmp_path / "runs"
    try:
        code = main([*argv, "--out", str(out), "--runs", str(runs)])
    except SystemExit as exit:  # argparse refuses an option's value itself
        code = exit.code
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists() and not runs.exists()  # Table 1 included: nothing is written


def test_only_the_benchmarks_play_the_papers_columns_by_default(tmp_path):
    """Issue 35: a folder dataset (the user's own) is compared with the paper's columns only where [data] plays says so;
    the benchmarks built for it play Boeing and Airbus unless told otherwise."""
    from reproduce.profile import load_profile

    def profile(data):
        path = tmp_path / "p.toml"
        path.write_text(f'name = "p"\n[data]\n{data}\n[model]\nbackbone = "efficientnet_lite0"\n')
        return load_profile(path)

    assert profile('dataset = "folder"\nroot = "x"\ngroups = ["mine"]').plays == ()
    assert profile('dataset = "folder"\nroot = "x"\ngroups = ["mine"]\nplays = ["Airbus"]').plays == ("Airbus",)
    assert profile('dataset = "fashion_mnist"\ngroups = ["Tops", "Footwear"]').plays == ("Boeing", "Airbus")
    assert load_profile("fashion_mnist").plays == ("Boeing", "Airbus")
