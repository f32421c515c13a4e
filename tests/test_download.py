"""The first run on a fresh machine fetches Fashion-MNIST itself: from a local HTTP mirror standing in for the internet."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

import jtln.data.fashion_mnist as fm
from jtln.data.fashion_mnist import FILES
from reproduce.__main__ import main
from tests.fake_data import http_mirror

TRAIN, TEST = 12, 4  # images per class in the small stand-in files


def idx_files(folder):
    """Small Fashion-MNIST files in the idx format, gzipped as the mirrors serve them; {name: (md5 of the .gz, unzipped size)}."""
    (x_train, y_train), (x_test, y_test) = fm.synthetic_arrays(TRAIN, TEST, seed=1)
    contents = {"train-images-idx3-ubyte": struct.pack(">IIII", 2051, len(x_train), 28, 28) + x_train.tobytes(),
                "train-labels-idx1-ubyte": struct.pack(">II", 2049, len(y_train)) + y_train.astype(np.uint8).tobytes(),
                "t10k-images-idx3-ubyte": struct.pack(">IIII", 2051, len(x_test), 28, 28) + x_test.tobytes(),
                "t10k-labels-idx1-ubyte": struct.pack(">II", 2049, len(y_test)) + y_test.astype(np.uint8).tobytes()}
    info = {}
    for name, data in contents.items():
        gz = gzip.compress(data, mtime=0)
        (folder / f"{name}.gz").write_bytes(gz)
        info[name] = (hashlib.md5(gz).hexdigest(), len(data))
    return info


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on localhost serving the small files; the cache empty, Debian's package out of reach."""
    served = tmp_path / "mirror"
    served.mkdir()
    info = idx_files(served)
    with http_mirror(served) as url:
        monkeypatch.setenv(fm.MIRROR_ENV, url)
        monkeypatch.setenv("JTLN_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("JTLN_DATA", raising=False)
        monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian-package")
        monkeypatch.setattr(fm, "resources", lambda: [(f"{name}.gz", md5) for name, (md5, _) in info.items()])
        monkeypatch.setattr(fm, "SIZES", {name: size for name, (_, size) in info.items()})
        yield served


PROFILE = """name = "first_run"
[data]
dataset = "fashion_mnist"
groups = ["Footwear"]
levels = [6]
source_per_class = 4
download = true
[model]
backbone = "efficientnet_lite0"
pretrained = false
image_size = 32
[search]
n_trials = 1
[run]
methods = ["joint", "linear_probe"]
seeds = [0, 1]
[hparams]
epochs = 1
batch_size_target = 8
batch_size_source = 8
"""


def test_a_fresh_machine_downloads_fashion_mnist_and_runs_the_main_command(mirror, tmp_path, capsys):
    profile = tmp_path / "first_run.toml"
    profile.write_text(PROFILE)
    assert main(["all", "--profile", str(profile), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                 "--no-report"]) == 0
    raw = tmp_path / "cache" / "FashionMNIST" / "raw"
    assert all((raw / f).is_file() and (raw / f"{f}.gz").is_file() for f in FILES)  # fetched, checked, unzipped
    assert (tmp_path / "out" / "first_run" / "table2.tex").is_file()
    assert "100%" in capsys.readouterr().err  # the progress bars


def test_a_damaged_download_is_refused_and_the_error_says_how_else_to_get_the_data(mirror, tmp_path):
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file the checksum describes")
    with pytest.raises(FileNotFoundError, match=r"could not download Fashion-MNIST .*t10k-labels-idx1-ubyte.gz.*"
                                                r"apt-get install dataset-fashion-mnist.*--data-root"):
        fm.locate(download=True)
    assert not (tmp_path / "cache" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()  # nothing bad kept


def test_offline_the_error_names_what_failed(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(fm.MIRROR_ENV, "http://127.0.0.1:9/")  # the discard port: nothing listens
    with pytest.raises(FileNotFoundError, match=r"127.0.0.1:9/train-images-idx3-ubyte.gz: .*refused"):
        fm.locate(download=True)
