"""What a sweep needs is checked before any work: missing images, weights and disk space exit 2 with nothing written."""

import shutil
from collections import namedtuple
from urllib.error import URLError

import pytest

from reproduce.__main__ import main
from tests.fake_data import make_mini_fgvc

PAPER_MINI = ('name = "paper_mini"\n[data]\ndataset = "fgvc_aircraft"\ngroups = ["Boeing", "Airbus"]\nlevels = ["all"]\n'
              'validation_fraction = 0.25\n[model]\nbackbone = "alexnet"\npretrained = {pretrained}\nimage_size = 64\n'
              '[search]\nn_trials = 1\n[run]\nmethods = ["joint"]\nseeds = [0]\n[hparams]\nepochs = 1\n')


@pytest.fixture
def paper_mini(tmp_path):
    root = make_mini_fgvc(tmp_path / "data", n_trainval=4, n_test=2)

    def run(pretrained="false", command="all"):
        profile = tmp_path / "paper_mini.toml"
        profile.write_text(PAPER_MINI.format(pretrained=pretrained))
        options = [] if command == "table1" else ["--runs", str(tmp_path / "runs"), "--no-report"]
        return main([command, "--profile", str(profile), "--data-root", str(root), "--out", str(tmp_path / "out"), *options])

    return root, run, tmp_path


def nothing_written(tmp_path):
    return not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_missing_images_are_counted_with_the_command_that_fetches_them(paper_mini, capsys):
    root, run, tmp_path = paper_mini
    images = sorted((root / "fgvc-aircraft-2013b" / "data" / "images").glob("*.jpg"))
    for image in images[::3]:
        image.unlink()
    assert run() == 2
    err = capsys.readouterr().err
    assert f"{len(images[::3])} of the {len(images)} FGVC-Aircraft images that the ITL datasets use are missing" in err
    assert "python -m reproduce all --profile paper_mini --download" in err
    assert nothing_written(tmp_path)  # Table 1 included
    assert run(command="table1") == 0  # Table 1 reads the annotations alone


def test_weights_that_cannot_be_had_offline_name_weights_path(paper_mini, capsys, monkeypatch):
    import torchvision.models._api

    _, run, tmp_path = paper_mini
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # nothing cached

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    assert run(pretrained="true") == 2
    err = capsys.readouterr().err
    assert "AlexNet's ImageNet weights are not in torchvision's cache" in err and "weights_path" in err and "no network" in err
    assert nothing_written(tmp_path)


def test_too_little_disk_for_the_caches_is_refused_with_the_figures(paper_mini, capsys, monkeypatch):
    import reproduce.preflight

    _, run, tmp_path = paper_mini
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(reproduce.preflight.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    assert run() == 2
    err = capsys.readouterr().err
    assert "the feature caches need about" in err and "0.0 GB are free" in err
    assert nothing_written(tmp_path)


def test_the_cache_estimate_is_the_size_of_the_caches_it_foresees(paper_mini):
    """The estimate against the files the sweep then writes (float32 tensors; torch.save adds little)."""
    from reproduce.preflight import cache_bytes
    from reproduce.profile import load_profile

    root, run, tmp_path = paper_mini
    assert run(command="sweep") == 0
    written = sum(p.stat().st_size for p in (tmp_path / "runs" / "cache").glob("features-*.pt"))
    estimate = cache_bytes(load_profile(tmp_path / "paper_mini.toml"), root)
    assert 0.95 * written <= estimate <= written
    assert shutil.disk_usage(tmp_path).free > estimate
