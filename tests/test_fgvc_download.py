"""FGVC-Aircraft's first run: the archive fetched from a local HTTP mirror, checked by its content, never trusted when damaged."""

import io
import shutil
import tarfile
from pathlib import Path

import pytest

import jtln.data.fgvc_aircraft as fgvc
from tests.fake_data import http_mirror, make_mini_fgvc


def make_archive(path, tree, drop=0, truncate=False):
    """``tree``'s fgvc-aircraft-2013b/ as a .tar.gz at ``path``, without its last ``drop`` images, or cut in half."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        images = sorted((tree / "fgvc-aircraft-2013b" / "data" / "images").iterdir())
        skipped = set(images[len(images) - drop:]) if drop else set()
        for file in sorted((tree / "fgvc-aircraft-2013b").rglob("*")):
            if file.is_file() and file not in skipped:
                tar.add(file, arcname=str(file.relative_to(tree)))
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] if truncate else data)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on localhost serving a miniature FGVC archive (``mirror / ARCHIVE``); the cache empty."""
    served = tmp_path / "mirror"
    served.mkdir()
    tree = make_mini_fgvc(tmp_path / "tree", n_trainval=4, n_test=2)
    make_archive(served / fgvc.ARCHIVE, tree)
    with http_mirror(served) as url:
        monkeypatch.setenv(fgvc.MIRROR_ENV, url)
        monkeypatch.setenv("JTLN_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("JTLN_FGVC_ROOT", raising=False)
        yield served, tree


def annotations_only(tree, root):
    """The annotation files of ``tree`` without its images, as the 375 KB annotations archive leaves them."""
    shutil.copytree(tree / "fgvc-aircraft-2013b", root / "fgvc-aircraft-2013b", ignore=shutil.ignore_patterns("*.jpg"))


def test_the_images_are_fetched_into_the_default_root_also_where_the_annotations_exist(mirror, tmp_path):
    served, tree = mirror
    root = fgvc.default_root()
    assert root == tmp_path / "cache" / "fgvc-aircraft" and fgvc.resolve_root() == root
    annotations_only(tree, root)
    assert len(fgvc.missing_images(root)) == 6 * 6  # every image of the six variants, trainval and test
    samples, manufacturers = fgvc.fgvc_aircraft_samples(download=True)
    assert fgvc.missing_images(root) == [] and len(samples) == 36 and set(manufacturers) == {"Boeing", "Airbus", "Cessna"}
    assert not (root / fgvc.ARCHIVE).exists() and not list(root.glob("*.part"))  # the archive removed after extraction
    # a tree that is whole is not fetched again
    (served / fgvc.ARCHIVE).unlink()
    assert fgvc.fgvc_aircraft_samples(download=True)[0] == samples


def test_a_damaged_archive_is_redone_and_kept_only_when_asked(mirror, tmp_path):
    served, _ = mirror
    root = tmp_path / "root"
    root.mkdir()
    (root / fgvc.ARCHIVE).write_bytes(b"not a tar.gz: a download that an earlier run left broken")
    fgvc.fetch(root, keep_archive=True, progress=False)
    assert fgvc.missing_images(root) == [] and (root / fgvc.ARCHIVE).read_bytes() == (served / fgvc.ARCHIVE).read_bytes()


def test_an_archive_that_never_extracts_whole_or_lacks_images_is_refused(mirror, tmp_path):
    served, tree = mirror
    make_archive(served / fgvc.ARCHIVE, tree, truncate=True)
    with pytest.raises(FileNotFoundError, match="did not extract whole in 2 attempts"):
        fgvc.fetch(tmp_path / "a", progress=False)
    assert not (tmp_path / "a" / fgvc.ARCHIVE).exists()  # never trusted
    make_archive(served / fgvc.ARCHIVE, tree, drop=3)
    with pytest.raises(FileNotFoundError, match="3 annotated images are still missing after extracting"):
        fgvc.fetch(tmp_path / "b", progress=False)


def test_an_unreachable_mirror_says_where_else_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv(fgvc.MIRROR_ENV, "http://127.0.0.1:9/")  # the discard port: nothing listens
    with pytest.raises(FileNotFoundError, match=r"could not download http://127.0.0.1:9/fgvc-aircraft-2013b.tar.gz .*--data-root"):
        fgvc.fetch(tmp_path, progress=False, timeout_s=5)
    assert not list(Path(tmp_path).glob("*.part"))
