"""ITL splits (Sec. 4) of FGVC-Aircraft and Fashion-MNIST, and the loaders' errors."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from jtln.data.fashion_mnist import GROUPS, fashion_mnist_itl, locate, synthetic_arrays
from jtln.data.fgvc_aircraft import fgvc_aircraft_itl
from jtln.data.itl import Sample, build_itl, draw, n_validation, restrict
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
    assert not (keys(itl.target_train) | keys(itl.target_test)) & keys(itl.source)


def drawn(itl, d):
    """The keys of a draw's training, validation and source images."""
    return ({itl.target_train[i][0] for i in d.target_train}, {itl.target_train[i][0] for i in d.target_val},
            {itl.source[i][0] for i in d.source})


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


def test_fashion_mnist_pools_hold_every_image_of_their_classes():
    arrays = synthetic_arrays(30, 5)
    itl = fashion_mnist_itl("Footwear", arrays=arrays)
    assert itl.target_classes == GROUPS["Footwear"]
    assert itl.table1_column() == {"target_categories": 3, "target_train_images": 90, "target_test_images": 15,
                                   "source_categories": 7, "source_images": 210}
    assert_disjoint(itl)
    assert itl.loader(itl.target_test[0][0]).shape == (28, 28)


def test_draws_are_deterministic_nested_disjoint_from_the_test_split_and_redrawn_per_seed():
    itl = fashion_mnist_itl("Tops", arrays=synthetic_arrays(30, 5))
    d10 = draw(itl, 10, seed=1, validation_fraction=0.2, source_per_class=4)
    assert draw(itl, 10, seed=1, validation_fraction=0.2, source_per_class=4) == d10
    train, val, source = drawn(itl, d10)
    assert len(train) == 4 * 8 and len(val) == 4 * 2 and len(source) == 6 * 4
    assert not train & val and not (train | val) & keys(itl.target_test) and not (train | val) & source
    assert itl.table1_column(d10)["target_train_images"] == 40 and itl.table1_column(d10)["source_images"] == 24
    # levels are nested: the 5 images of a class are the first 5 of its 10, and its validation images come first
    train5, val5, _ = drawn(itl, draw(itl, 5, seed=1, validation_fraction=0.2, source_per_class=4))
    assert val5 <= val and train5 <= train | val
    # another seed draws other images; another data_seed too
    other = draw(itl, 10, seed=2, validation_fraction=0.2, source_per_class=4)
    assert drawn(itl, other)[0] != train and drawn(itl, other)[2] != source
    assert draw(itl, 10, seed=1, validation_fraction=0.2, source_per_class=4, data_seed=1) != d10
    assert len(draw(itl, "all", 0, 0.2).target_train) == 4 * 30 - 4 * 6


def test_restricting_to_the_drawn_images_keeps_every_draw_the_same():
    itl = fashion_mnist_itl("Tops", arrays=synthetic_arrays(30, 5))
    draws = [draw(itl, level, seed, 0.2, 3) for level in (5, 10) for seed in (0, 1)]
    small, moved = restrict(itl, draws)
    assert len(small.target_train) < len(itl.target_train) and small.target_test == itl.target_test
    for d, m in zip(draws, moved):
        assert drawn(itl, d) == drawn(small, m)


def test_validation_counts_and_bad_levels():
    assert [n_validation(n, 0.2) for n in (2, 5, 10, 67)] == [1, 1, 2, 13]
    with pytest.raises(ValueError, match="leave none for training"):
        n_validation(2, 0.9)
    itl = fashion_mnist_itl("Tops", arrays=synthetic_arrays(5, 5))
    with pytest.raises(ValueError, match=r"level 67 asks for 67 labelled images of 'T-shirt/top', which has 5"):
        draw(itl, 67, 0, 0.2)
    with pytest.raises(ValueError, match="source_per_class=9"):
        draw(itl, 4, 0, 0.2, source_per_class=9)
    with pytest.raises(ValueError, match="level must be an int >= 2"):
        draw(itl, 1, 0, 0.2)


def test_fashion_mnist_errors():
    with pytest.raises(ValueError, match="unknown group 'Hats'"):
        fashion_mnist_itl("Hats", arrays=synthetic_arrays(per_class_train=5, per_class_test=5))


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
    itl = fashion_mnist_itl("Tops")
    assert itl.table1_column() == {"target_categories": 4, "target_train_images": 4 * 6000, "target_test_images": 4000,
                                   "source_categories": 6, "source_images": 36000}
    assert itl.table1_column(draw(itl, 67, 0, 0.2, 100)) == {"target_categories": 4, "target_train_images": 4 * 67,
                                                            "target_test_images": 4000, "source_categories": 6, "source_images": 600}
    image = itl.loader(itl.target_train[0][0])
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() > 0


def test_damaged_fashion_mnist_files_are_named_with_how_to_get_a_good_copy(tmp_path, monkeypatch):
    from jtln.data import fashion_mnist

    monkeypatch.delenv("JTLN_DATA", raising=False)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, size in fashion_mnist.SIZES.items():
        (raw / name).write_bytes(b"\0" * (size if name != "t10k-labels-idx1-ubyte" else 100))  # one truncated file
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte is damaged: 100 bytes, expected 10008.*--download"):
        fashion_mnist.load_arrays(tmp_path)
    broken = tmp_path / "gz"
    (broken / "FashionMNIST" / "raw").mkdir(parents=True)
    for name in fashion_mnist.FILES:
        (broken / "FashionMNIST" / "raw" / f"{name}.gz").write_bytes(b"not gzip")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.gz is damaged .*apt-get install dataset-fashion-mnist"):
        fashion_mnist.load_arrays(broken)


def test_a_root_holding_only_the_gz_files_is_unzipped_and_loads(tmp_path, monkeypatch):
    from jtln.data import fashion_mnist

    if not all((fashion_mnist.DEBIAN_DIR / f"{f}.gz").is_file() for f in fashion_mnist.FILES):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.delenv("JTLN_DATA", raising=False)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in fashion_mnist.FILES:
        (raw / f"{f}.gz").write_bytes((fashion_mnist.DEBIAN_DIR / f"{f}.gz").read_bytes())
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_arrays(tmp_path)
    assert x_train.shape == (60000, 28, 28) and y_test.shape == (10000,)
