import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

# torch's OpenMP threads wait for work passively: by default they spin between operations, holding both cores through
# tests that are mostly one thread of Python, which starved the background sweeps (:class:`Sweeps`) and cost the suite
# ~3 CPU-minutes here. Read when torch loads OpenMP, so set before importing it; the child processes inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

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
def smoke(request):
    """One uninterrupted ``all`` of the smoke profile (its ``runs/`` and ``out/``), shared by the tests that compare against it."""
    return request.config.sweeps.result("smoke")


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


class Small(NamedTuple):
    profile: Path
    runs: Path


@pytest.fixture(scope="session")
def small(request):
    """The small profile (:data:`SMALL_PROFILE`) and the runs folder of one uninterrupted local sweep of it."""
    base = request.config.sweeps.result("small")
    return Small(base / "small.toml", base / "runs")


class Sweeps:
    """The session's two long sweeps, run as a user runs them (``python -m reproduce``), one after the other in a
    background process from the end of collection, at the lowest priority: they take the core that the tests, one thread
    of Python most of the time, leave idle.  The tests that need one run last and wait for it.  Only the sweeps a
    collected test asks for are run."""

    COMMANDS = {"smoke": ["all", "--profile", "smoke", "--runs", "{base}/runs", "--out", "{base}/out"],
                "small": ["sweep", "--profile", "{base}/small.toml", "--runs", "{base}/runs"]}

    def __init__(self, names):
        import tempfile
        import threading

        self.base = Path(tempfile.mkdtemp(prefix="jtln-sweeps-"))
        self.outcomes, self.done = {}, {name: threading.Event() for name in names}
        (self.base / "small").mkdir()
        (self.base / "small" / "small.toml").write_text(SMALL_PROFILE)
        self._process, self._stopped, self._lock = None, False, threading.Lock()
        threading.Thread(target=self._run, args=(names,), daemon=True).start()

    def _run(self, names):
        import subprocess
        import sys

        for name in names:
            base = self.base / name
            try:
                base.mkdir(exist_ok=True)
                command = ["nice", "-n", "19", sys.executable, "-m", "reproduce",
                           *(part.format(base=base) for part in self.COMMANDS[name])]
                with open(base / "log.txt", "w") as log, self._lock:
                    if self._stopped:
                        return
                    self._process = subprocess.Popen(command, cwd=Path(__file__).parents[1], stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True)  # see close()
                code = self._process.wait()
                self.outcomes[name] = "" if code == 0 else f"exit {code}:\n" + (base / "log.txt").read_text()[-5000:]
            except Exception as error:  # noqa: BLE001 -- reported by the test that needs the sweep
                self.outcomes[name] = repr(error)
            finally:
                self.done[name].set()

    def result(self, name):
        """The folder of sweep ``name`` once it has finished; a failed sweep fails the test with its output."""
        if name not in self.done:
            pytest.fail(f"the {name} sweep was not started: no collected test asked for it")
        self.done[name].wait()
        assert self.outcomes[name] == "", f"the {name} sweep failed: {self.outcomes[name]}"
        return self.base / name

    def close(self):
        """End a sweep still running (the session was cut short), with the processes it started, and remove the folder."""
        import shutil
        import signal

        with self._lock:
            self._stopped = True
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _sweeps_needed(item):
    """The background sweeps (:class:`Sweeps`) test ``item`` asks for."""
    return [name for name in Sweeps.COMMANDS if name in getattr(item, "fixturenames", ())]


def pytest_collection_modifyitems(items):
    """The tests that need a background sweep run last (otherwise in their order): the sweeps have the whole run to finish."""
    items.sort(key=lambda item: bool(_sweeps_needed(item)))


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    needed = {name for item in session.items for name in _sweeps_needed(item)}
    session.config.sweeps = Sweeps([name for name in Sweeps.COMMANDS if name in needed])


def pytest_unconfigure(config):
    if hasattr(config, "sweeps"):
        config.sweeps.close()


@pytest.fixture(scope="module")
def tiny():
    """The tiny ITL problem (:class:`tests.tiny.Tiny`), built once per module."""
    from tests.tiny import tiny_problem

    return tiny_problem()
