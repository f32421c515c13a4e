"""Profiles: the committed ones load; unknown keys and wrong types are clear errors."""

import pytest

from reproduce.profile import PROFILES_DIR, load_profile


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
def test_committed_profiles_load(name):
    profile = load_profile(name)
    assert profile.name == name and profile.data.groups


@pytest.mark.parametrize(
    "text, message",
    [
        ('[data]\ndataset = "fashion_mnist"\ngroups = ["Tops"]\ncolour = 1\n', r"unknown key\(s\) \['colour'\] in .*\[data\]"),
        ('[data]\ndataset = "fashion_mnist"\ngroups = "Tops"\n', r"\[data\].groups must be of type list"),
        ('[data]\ndataset = "fashion_mnist"\ngroups = ["Tops"]\ntarget_train_per_class = "67"\n', "must be of type int"),
        ('[data]\ndataset = "imagenet"\ngroups = ["Tops"]\n', "dataset must be"),
        ('[data]\ndataset = "fashion_mnist"\ngroups = ["Tops"]\n[hparams]\nlr = 0.1\n', "unknown hyper-parameter 'lr'"),
        ('[data]\ndataset = "fashion_mnist"\ngroups = ["Tops"]\n[hparams]\nepochs = 1.5\n', "epochs must be int"),
        ('[data]\ndataset = "fashion_mnist"\ngroups = ["Tops"]\n[trainer]\n', r"unknown key\(s\) \['trainer'\]"),
        ('name = "x"\n', "has no \\[data\\] section"),
        ("[data\n", "not valid TOML"),
    ],
)
def test_bad_profiles(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_profile(path)


def test_unknown_profile_name_lists_the_available_ones():
    with pytest.raises(FileNotFoundError, match=r"available: \[.*fashion_mnist.*\]"):
        load_profile("no_such_profile")
