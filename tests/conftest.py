import os
from pathlib import Path

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():  # the Triton kernels run in Triton's interpreter on CPU tensors (jtln.scaling_triton)
    os.environ.setdefault("TRITON_INTERPRET", "1")

DTYPES = [torch.float64, torch.float32]
#: float64 agrees with the reference to 1e-10 relative, float32 to 1e-5
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).split(".")[-1])
def dtype(request):
    return request.param


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def seeded_global_generators():
    """torch's and NumPy's global generators seeded before every test: a test that draws from them is the same every run,
    whatever ran before it."""
    torch.manual_seed(0)
    np.random.seed(0)


def random_histograms(rng, B, L):
    h = rng.random((B, L)) + 0.05
    return h / h.sum(axis=1, keepdims=True)


@pytest.fixture
def fgvc_root():
    """The real FGVC-Aircraft annotations (no images), from $JTLN_FGVC_ROOT; skip where absent."""
    root = os.environ.get("JTLN_FGVC_ROOT")
    if not root or not (Path(root) / "fgvc-aircraft-2013b" / "data" / "variants.txt").is_file():
        pytest.skip("real FGVC-Aircraft annotations not found: set JTLN_FGVC_ROOT to the folder holding fgvc-aircraft-2013b/")
    return Path(root)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM cluster for the session (tests/slurm_cluster.py), with SLURM_CONF exported; skips where it cannot run."""
    from tests.slurm_cluster import Cluster, missing

    why = missing()
    if why:
        pytest.skip(f"no test SLURM cluster: {why}")
    cluster = Cluster(tmp_path_factory.mktemp("slurm")).start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """One uninterrupted sweep of the smoke profile, and its outputs (shared by the tests that compare against it)."""
    from reproduce.__main__ import main

    base = tmp_path_factory.mktemp("smoke")
    env_cache = os.environ.get("JTLN_CACHE")
    assert main(["all", "--profile", "smoke", "--runs", str(base / "runs"), "--out", str(base / "out")]) == 0
    assert os.environ.get("JTLN_CACHE") == env_cache
    return base


#: a profile of 12 runs (one dataset, two searched methods, two seeds, two trials each) that sweeps in seconds
MINI_PROFILE = """name = "mini"
[data]
dataset = "synthetic"
groups = ["Footwear"]
levels = [6]
source_per_class = 4
[model]
backbone = "efficientnet_lite0"
image_size = 32
[search]
n_trials = 2
[run]
methods = ["joint", "jtln_ot"]
seeds = [0, 1]
[hparams]
epochs = 1
source_epochs = 1
batch_size_target = 8
batch_size_source = 8
"""

#: a profile of 42 runs (two datasets, two searched methods and the probe, three seeds, two trials each) that sweeps in
#: seconds: for the tests that interrupt, resume or distribute a sweep and compare with an uninterrupted one
SMALL_PROFILE = (MINI_PROFILE.replace('name = "mini"', 'name = "small"')
                 .replace('groups = ["Footwear"]', 'groups = ["Tops", "Footwear"]')
                 .replace('methods = ["joint", "jtln_ot"]', 'methods = ["joint", "jtln_ot", "linear_probe"]')
                 .replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """The small profile (:data:`SMALL_PROFILE`) and the runs folder of one uninterrupted local sweep of it."""
    from typing import NamedTuple

    from reproduce.__main__ import main

    class Small(NamedTuple):
        profile: Path
        runs: Path

    base = tmp_path_factory.mktemp("small")
    profile = base / "small.toml"
    profile.write_text(SMALL_PROFILE)
    assert main(["sweep", "--profile", str(profile), "--runs", str(base / "runs")]) == 0
    return Small(profile, base / "runs")


@pytest.fixture(scope="module")
def tiny():
    """The tiny ITL problem (:class:`tests.tiny.Tiny`), built once per module."""
    from tests.tiny import tiny_problem

    return tiny_problem()
