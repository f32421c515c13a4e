"""Seeds: one derived from a hash of what a draw depends on, and one call that seeds every generator."""

import hashlib
import os
import random

import numpy as np
import torch


def stable_seed(*parts):
    """A 32-bit seed from a hash of ``parts`` (their repr): the same parts give the same seed in every process.

    >>> stable_seed("Tops", "joint", 67, 0) == stable_seed("Tops", "joint", 67, 0) != stable_seed("Tops", "joint", 67, 1)
    True
    """
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


#: cuBLAS's deterministic workspace (NVIDIA's cuBLAS docs, "Results reproducibility"): without it, deterministic mode on
#: CUDA warns at every matrix product, and cuBLAS may pick a split of the reduction that differs from run to run
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def seed_everything(seed):
    """Seed Python, NumPy and torch together; deterministic kernels where torch has them.

    Sets ``CUBLAS_WORKSPACE_CONFIG`` (unless it is set) for CUDA's matrix
    products; cuBLAS reads it when a process first uses it, so a program that
    uses CUDA before its first run sets it at its start too (``python -m reproduce`` does).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
