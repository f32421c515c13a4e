"""Frozen-prefix cache: everything below the first trained layer is computed once per image.

Training then runs only the trained part of the network (:class:`jtln.models.JTLN`
on cached prefix outputs).  This is what makes the offline benchmark fit a
2-core CPU, and it speeds the paper's protocol on a GPU too.  The price:
no random augmentation below the cut — every epoch sees the same prefix
output for an image (preprocessing is a deterministic resize + centre crop).

Where ``cache_dir`` is given the features are kept on disk in
``features-<key>.pt``, keyed by backbone, weights, preprocessing and the
exact list of images, written atomically; a file that does not load or lacks
a pool is reported and rebuilt.  Holding them in memory is the caller's
business (the sweep's prepared datasets).
"""

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from jtln.atomic import atomic_path

SPLITS = ("target_train", "target_test", "source")


def to_input(image, size, mean, std):
    """An image (uint8 HxW array, HxWx3 array, or PIL image) -> normalised float tensor [3, size, size].

    Resize the shorter side to ``size`` then centre-crop (deterministic); grey
    images are repeated to 3 channels.
    """
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image))
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    else:
        x = TF.pil_to_tensor(image)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = TF.to_dtype(x, torch.float32, scale=True)
    x = TF.center_crop(TF.resize(x, [size], antialias=True), [size, size])
    return TF.normalize(x, list(mean), list(std))


@dataclass
class CachedITL:
    """Prefix outputs ``Z[split]`` [N, ...], labels ``y[split]`` [N] and pretrained penultimate features ``P[split]`` [N, D]."""

    Z: dict
    y: dict
    P: dict
    key: str

    @property
    def nbytes(self):
        return sum(t.nbytes for part in (self.Z, self.y, self.P) for t in part.values())

    def apply(self, fn):
        """A copy with ``fn`` applied to every tensor."""
        return CachedITL(*({split: fn(t) for split, t in part.items()} for part in (self.Z, self.y, self.P)), self.key)


#: the share of a GPU's free memory the feature caches may take when they are moved there (the rest: training, kernels)
RESIDENT_SHARE = 0.6


def on_device(cached, device, free_bytes=None):
    """``cached`` where the runs will gather their batches: on ``device`` when it fits, else in pinned host memory.

    It fits when it takes at most :data:`RESIDENT_SHARE` of the device's free
    memory (``free_bytes``, default: what CUDA reports).  Then every batch is
    gathered on the device, with no copy from the host per step; otherwise
    batches are gathered on the host and copied asynchronously from pinned
    memory.  A CPU device keeps ``cached`` as it is.  Returns ``(cached, where)``,
    ``where`` a sentence for the log.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return cached, "on the CPU"
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    if cached.nbytes <= RESIDENT_SHARE * free_bytes:
        return cached.apply(lambda t: t.to(device)), f"on {device} ({cached.nbytes / 1e9:.1f} GB of {free_bytes / 1e9:.1f} GB free)"
    pinned = cached.apply(torch.Tensor.pin_memory) if torch.cuda.is_available() else cached
    return pinned, (f"in pinned host memory: {cached.nbytes / 1e9:.1f} GB is over {RESIDENT_SHARE:.0%} of the "
                    f"{free_bytes / 1e9:.1f} GB free on {device}")


def cache_key(backbone, itl, dataset_id):
    description = {
        "backbone": backbone.name, "weights": backbone.weights_id, "size": backbone.image_size,
        "mean": backbone.mean, "std": backbone.std, "dataset": dataset_id, "group": itl.name,
        "images": {s: hashlib.sha256(repr(getattr(itl, s)).encode()).hexdigest() for s in SPLITS},
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


@torch.no_grad()
def _run(module, batches, device):
    """``module`` over an iterable of input batches, streamed (inputs are never all in memory)."""
    outputs = [module(b.to(device)).cpu() for b in batches]
    return torch.cat(outputs) if outputs else torch.empty(0)


def _load(path, key):
    """The cached features at ``path``, or None (with a warning) if the file is damaged."""
    try:
        stored = torch.load(path, map_location="cpu")
        result = CachedITL(*(stored[part] for part in ("Z", "y", "P")), key)
        if any(split not in part or len(part[split]) != len(result.y[split]) for part in (result.Z, result.P) for split in SPLITS):
            raise ValueError("a pool is missing or its features and labels differ in length")
        return result
    except Exception as error:  # noqa: BLE001 -- any failure to read the file means: rebuild it
        warnings.warn(f"feature cache {path} is damaged ({type(error).__name__}: {error}); rebuilding it", RuntimeWarning, stacklevel=3)
        return None


def cache_path(cache_dir, key):
    """The file in ``cache_dir`` that holds the features of :func:`cache_key` ``key``."""
    return Path(cache_dir) / f"features-{key}.pt"


def cached_features(backbone, itl, dataset_id, cache_dir=None, batch_size=256, device="cpu", progress=False):
    """Prefix outputs and penultimate features of every image of ``itl``'s pools, from the disk cache when possible."""
    key = cache_key(backbone, itl, dataset_id)
    path = cache_path(cache_dir, key) if cache_dir else None
    if path is not None and path.is_file():
        result = _load(path, key)
        if result is not None:
            return result
    result = CachedITL({}, {}, {}, key)
    prefix = backbone.prefix.to(device).eval()
    penultimate = backbone.penultimate.to(device).eval()
    for split in SPLITS:
        items = getattr(itl, split)
        batches = _image_batches(itl, items, backbone, batch_size, progress, f"{itl.name} {split}")  # lazy
        result.Z[split] = _run(prefix, batches, device)
        result.P[split] = _run(penultimate, result.Z[split].split(batch_size) if len(items) else [], device)
        result.y[split] = torch.tensor([label for _, label in items], dtype=torch.long)
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"Z": result.Z, "y": result.y, "P": result.P}, tmp)
    return result


#: threads that decode and resize images for the prefix (PIL and torchvision release the GIL while they work)
DECODE_THREADS = min(8, os.cpu_count() or 1)


def _image_batches(itl, items, backbone, batch_size, progress, desc, threads=DECODE_THREADS):
    """The inputs of ``items`` in batches, in order, each batch's images decoded by ``threads`` threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    def load(item):
        return to_input(itl.loader(item[0]), backbone.image_size, backbone.mean, backbone.std)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for start in tqdm(range(0, len(items), batch_size), desc=f"prefix {desc}", disable=not progress, leave=False):
            yield torch.stack(list(pool.map(load, items[start : start + batch_size])))
