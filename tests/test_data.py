"""ITL splits (Sec. 4) of FGVC-Aircraft and Fashion-MNIST, and the loaders' errors."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from jtln.data.fashion_mnist import GROUPS, fashion_mnist_itl, locate, synthetic_arrays
from jtln.data.fgvc_aircraft import fgvc_aircraft_itl
from jtln.data.itl import Sample, build_itl
from tests.fake_data import MINI_MANUFACTURERS, make_mini_fgvc

PAPER_TABLE1 = {
    "Boeing": {"target_categories": 22, "target_train_images": 1466, "target_test_images": 734,
               "source_categories": 78, "source_images": 7800},
    "Airbus": {"target_categories": 13, "target_train_images": 867, "target_test_images": 433,
               "source_categories": 87, "source_images": 8700},
}


def keys(split):
    return {k for k, _ in split}


def assert_disjoint(itl):
    assert not keys(itl.target_train) & keys(itl.target_test)
    assert not keys(itl.target_val) & keys(itl.target_test)
    assert not keys(itl.target_train) & keys(itl.target_val)
    assert not (keys(itl.target_train) | keys(itl.target_test)) & keys(itl.source)


@pytest.mark.parametrize("group", ["Boeing", "Airbus"])
def test_real_fgvc_annotations_give_the_papers_table1(fgvc_root, group):
    itl = fgvc_aircraft_itl(group, root=fgvc_root)
    assert itl.table1_column() == PAPER_TABLE1[group]
    assert_disjoint(itl)


def test_mini_fgvc_tree_splits_and_loads_images(tmp_path):
    root = make_mini_fgvc(tmp_path)
    itl = fgvc_aircraft_itl("Boeing", root=root)
    assert itl.target_classes == sorted(MINI_MANUFACTURERS["Boeing"])
    assert itl.source_classes == sorted(v for m, vs in MINI_MANUFACTURERS.items() if m != "Boeing" for v in vs)
    assert itl.table1_column() == {"target_categories": 3, "target_train_images": 9, "target_test_images": 6,
                                   "source_categories": 3, "source_images": 15}
    assert_disjoint(itl)
    image = itl.loader(itl.target_train[0][0])
    assert image.mode == "RGB" and image.size == (40, 10)  # the 20-pixel banner is cropped


def test_fgvc_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"looked for .*variants.txt.*download=True"):
        fgvc_aircraft_itl("Boeing", root=tmp_path)
    root = make_mini_fgvc(tmp_path / "ok")
    with pytest.raises(ValueError, match=r"unknown group 'Boing'.*known groups"):
        fgvc_aircraft_itl("Boing", root=root)
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images_variant_test.txt").write_text("1000001 707-320\nthis line is broken\n")
    with pytest.raises(ValueError, match=r"corrupt FGVC-Aircraft annotation .*images_variant_test.txt:2"):
        fgvc_aircraft_itl("Boeing", root=root)
    (data / "images_variant_test.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        fgvc_aircraft_itl("Boeing", root=root)


def test_build_itl_rejects_bad_groups():
    samples = [Sample(i, c, "train") for i, c in enumerate("aabbc")]
    with pytest.raises(ValueError, match="has no categories"):
        build_itl("toy", samples, {"g": [], "h": ["a"]}, "g")
    with pytest.raises(ValueError, match=r"categories \['z'\] of group 'g' have no samples"):
        build_itl("toy", samples, {"g": ["a", "z"]}, "g")
    with pytest.raises(ValueError, match="no source categories"):
        build_itl("toy", samples, {"g": ["a", "b", "c"]}, "g")


def test_fashion_mnist_split_counts_are_deterministic_and_disjoint():
    arrays = synthetic_arrays(30, 5)
    itl = fashion_mnist_itl("Footwear", target_train_per_class=7, source_per_class=4, split_seed=3, arrays=arrays)
    assert itl.target_classes == GROUPS["Footwear"]
    assert itl.table1_column() == {"target_categories": 3, "target_train_images": 21, "target_test_images": 15,
                                   "source_categories": 7, "source_images": 28}
    assert_disjoint(itl)
    again = fashion_mnist_itl("Footwear", target_train_per_class=7, source_per_class=4, split_seed=3, arrays=arrays)
    other = fashion_mnist_itl("Footwear", target_train_per_class=7, source_per_class=4, split_seed=4, arrays=arrays)
    assert again.target_train == itl.target_train and again.source == itl.source
    assert other.target_train != itl.target_train
    all_source = fashion_mnist_itl("Tops", source_per_class=None, target_train_per_class=5, arrays=arrays)
    assert len(all_source.source) == 6 * 30
    assert itl.loader(itl.target_test[0][0]).shape == (28, 28)


def test_validation_is_carved_from_target_training_only():
    itl = fashion_mnist_itl("Tops", target_train_per_class=10, source_per_class=2, arrays=synthetic_arrays(30, 5))
    test_before = list(itl.target_test)
    itl.carve_validation(per_class=3, seed=0)
    assert len(itl.target_val) == 4 * 3 and len(itl.target_train) == 4 * 7
    assert itl.target_test == test_before
    assert itl.table1_column()["target_train_images"] == 40
    assert_disjoint(itl)
    with pytest.raises(ValueError, match="leaves no training image"):
        fashion_mnist_itl("Tops", target_train_per_class=3, arrays=synthetic_arrays(30, 5)).carve_validation(3, 0)


def test_fashion_mnist_errors():
    arrays = synthetic_arrays(per_class_train=5, per_class_test=5)
    with pytest.raises(ValueError, match="unknown group 'Hats'"):
        fashion_mnist_itl("Hats", arrays=arrays)
    with pytest.raises(ValueError, match="has 5 training images, 67 requested"):
        fashion_mnist_itl("Tops", arrays=arrays)


def test_locate_reports_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("JTLN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JTLN_DATA", raising=False)
    monkeypatch.setattr("jtln.data.fashion_mnist.DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(FileNotFoundError, match=r"looked in .*cache.*no-debian.*apt-get install dataset-fashion-mnist"):
        locate()
    with pytest.raises(FileNotFoundError, match="the root you gave"):
        locate(tmp_path / "elsewhere")


def test_locate_prepares_a_debian_style_gz_folder(tmp_path, monkeypatch):
    from jtln.data import fashion_mnist

    gz_dir = tmp_path / "debian"
    gz_dir.mkdir()
    for name in fashion_mnist.FILES:
        with gzip.open(gz_dir / f"{name}.gz", "wb") as f:
            f.write(name.encode())
    monkeypatch.setenv("JTLN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JTLN_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", gz_dir)
    root = locate()
    raw = Path(root) / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(fashion_mnist.FILES)
    assert (raw / fashion_mnist.FILES[0]).read_bytes() == fashion_mnist.FILES[0].encode()


def test_real_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    from jtln.data import fashion_mnist

    if not all((fashion_mnist.DEBIAN_DIR / f"{f}.gz").is_file() for f in fashion_mnist.FILES):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.setenv("JTLN_CACHE", str(tmp_path))
    monkeypatch.delenv("JTLN_DATA", raising=False)
    itl = fashion_mnist_itl("Tops", source_per_class=None)
    assert itl.table1_column() == {"target_categories": 4, "target_train_images": 4 * 67, "target_test_images": 4000,
                                   "source_categories": 6, "source_images": 36000}
    image = itl.loader(itl.target_train[0][0])
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() > 0
