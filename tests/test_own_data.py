"""Your own data and backbone from a profile: class folders and any timm model, checked when the profile loads (the whole
pipeline on them runs in tests/test_examples.py, through examples/sweep_on_your_folders.py)."""

import numpy as np
import pytest
import torch
from PIL import Image

from jtln.data.folder import folder_itl
from jtln.models import build_backbone
from reproduce.profile import load_profile

SOURCE = ["maple", "oak", "pine"]
TARGET = ["daisy", "rose"]


def make_tree(root):
    """The example's generated tree (``examples/sweep_on_your_folders.py``): 8 images per class, 4 per target test class."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "sweep_on_your_folders.py"
    spec = importlib.util.spec_from_file_location("sweep_on_your_folders", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.make_tree(root)
    return root


def test_a_folder_dataset_reads_class_folders(tmp_path):
    itl = folder_itl("flowers", make_tree(tmp_path))
    assert itl.name == "flowers" and itl.source_classes == SOURCE and itl.target_classes == TARGET
    assert len(itl.source) == 24 and len(itl.target_train) == 16 and len(itl.target_test) == 8
    assert np.asarray(itl.loader(itl.source[0][0])).shape == (24, 24, 3)


def test_a_folder_dataset_refuses_shared_class_names_mismatched_splits_and_a_missing_root(tmp_path):
    root = make_tree(tmp_path / "a")
    (root / "source" / "rose").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "source" / "rose" / "0.png")
    with pytest.raises(ValueError, match=r"class\(es\) \['rose'\] are both source and target classes"):
        folder_itl("x", root)
    root = make_tree(tmp_path / "b")
    (root / "target" / "test" / "tulip").mkdir()
    with pytest.raises(ValueError, match=r"hold different classes \(\['tulip'\] in only one of them\)"):
        folder_itl("x", root)
    with pytest.raises(FileNotFoundError, match="is not a folder; expected the layout source/<class>/"):
        folder_itl("x", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no root; set \\[data\\] root"):
        folder_itl("x", None)
    empty = make_tree(tmp_path / "c")
    (empty / "source" / "birch").mkdir()
    with pytest.raises(FileNotFoundError, match="birch holds no image"):
        folder_itl("x", empty)


def test_every_unreadable_image_of_a_folder_dataset_is_named_before_any_work(tmp_path, capsys):
    """A corrupt image and an empty file: the command's checks decode every image once and name both (exit 2, nothing
    written), instead of the first one stopping the sweep after Table 1."""
    from reproduce.__main__ import main

    root = make_tree(tmp_path / "images")
    corrupt, empty = root / "target" / "test" / "rose" / "broken.png", root / "source" / "oak" / "empty.jpg"
    corrupt.write_bytes((root / "target" / "test" / "rose" / "0.png").read_bytes()[:60])  # a PNG cut short
    empty.write_bytes(b"")
    profile = tmp_path / "mine.toml"
    profile.write_text(f"""name = "mine"
description = "my folders"
[data]
dataset = "folder"
groups = ["flowers"]
root = "{root}"
levels = [6]
validation_fraction = 0.34
[model]
backbone = "efficientnet_lite0"
pretrained = false
image_size = 32
""")
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert main(["all", "--profile", str(profile), "--runs", str(runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 of the images under" in err and str(corrupt) in err and str(empty) in err, err
    assert not runs.exists() and not out.exists()
    corrupt.unlink()
    empty.unlink()
    from jtln.data.folder import check_images

    assert len(check_images("flowers", root).source) == 24  # the tree without them passes


def test_any_timm_convnet_is_cut_at_its_last_trained_child_or_where_the_profile_says():
    backbone = build_backbone("timm:resnet18", weights=None, image_size=32)
    assert backbone.name == "timm:resnet18" and backbone.feature_dim == 512
    assert list(backbone.trunk_groups[0][0]._modules)[:2] == ["layer4", "global_pool"]
    z = backbone.prefix(torch.randn(2, 3, 32, 32))
    assert not any(p.requires_grad for p in backbone.prefix.parameters())
    assert torch.equal(backbone.trunk_groups[0][0].eval()(z), backbone.penultimate(z))  # pretrained features = the trunk at step 0
    later = build_backbone("timm:resnet18", weights=None, image_size=32, trunk_from="layer3")
    assert list(later.trunk_groups[0][0]._modules)[:2] == ["layer3", "layer4"]
    with pytest.raises(ValueError, match="trunk_from = 'layer9' is not a top-level child of timm's 'resnet18'"):
        build_backbone("timm:resnet18", weights=None, image_size=32, trunk_from="layer9")
    with pytest.raises(ValueError, match="does not run as the sequence of its top-level children"):
        build_backbone("timm:vit_tiny_patch16_224", weights=None)
    with pytest.raises(ValueError, match="unknown timm model 'resnet1800'"):
        build_backbone("timm:resnet1800", weights=None)
    with pytest.raises(ValueError, match="trunk_from applies to timm backbones"):
        build_backbone("efficientnet_lite0", weights=None, trunk_from="conv_head")


def test_timm_weights_from_a_file_and_offline_without_one(tmp_path, monkeypatch):
    import timm

    path = tmp_path / "resnet18.pt"
    torch.save(timm.create_model("resnet18", num_classes=7).state_dict(), path)  # a classifier of its own: ignored
    backbone = build_backbone("timm:resnet18", weights=str(path), image_size=32)
    assert backbone.weights_id.startswith("file:")
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="is not a state dict of timm's 'resnet18'"):
        build_backbone("timm:resnet18", weights=str(tmp_path / "wrong.pt"), image_size=32)
    from huggingface_hub.errors import LocalEntryNotFoundError

    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):  # what timm raises offline with nothing cached, without waiting on a network
        if pretrained:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache; outgoing traffic is disabled")
        return real(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(FileNotFoundError, match="set \\[model\\].weights_path to a local state-dict file"):
        build_backbone("timm:resnet18", image_size=32)


def test_trunk_from_with_a_backbone_whose_cut_is_built_in_is_refused_when_the_profile_loads(tmp_path):
    profile = tmp_path / "bad.toml"
    profile.write_text('name = "bad"\ndescription = ""\n[data]\ndataset = "folder"\ngroups = ["mine"]\n'
                       '[model]\nbackbone = "alexnet"\ntrunk_from = "features"\n')
    with pytest.raises(ValueError, match="trunk_from applies to a \"timm:<model>\" backbone, not 'alexnet'"):
        load_profile(profile)
    profile.write_text(profile.read_text().replace('"alexnet"', '"timm:resnet1800"'))
    with pytest.raises(ValueError, match="unknown timm model 'resnet1800'"):
        load_profile(profile)
