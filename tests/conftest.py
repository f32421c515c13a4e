import os
from pathlib import Path

import numpy as np
import pytest
import torch

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
