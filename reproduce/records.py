"""Run records: one JSON file per run, in a folder named by a hash of everything that determines its result.

A run's ``inputs`` (the profile's data and model settings that matter, the
dataset, method, scarcity level, role — search trial or seed — and its
index, the resolved hyper-parameters) are hashed into its id; the folder is
``<runs>/<dataset>/<method>/<id>/``.  The record stores the inputs, so a
record counts only where its inputs are the ones asked for: a changed
profile or hyper-parameter never reuses a stale record, and a record copied
into another run's folder is refused.  A run counts as finished only when
``done`` exists *and* ``record.json`` parses and carries the fields of its
role; anything else (a crash between the two files, a truncated file) is
redone.
"""

import hashlib
import json
from pathlib import Path

from jtln.atomic import write_atomic

#: the fields a record of each role must carry
REQUIRED = {
    "trial": ("id", "inputs", "dataset", "method", "level", "hparams", "val_accuracy", "best_epoch", "versions"),
    "seed": ("id", "inputs", "dataset", "method", "level", "seed", "hparams", "val_accuracy", "accuracy", "predictions",
             "labels", "versions"),
}


def canonical(inputs):
    """``inputs`` as JSON reads it back (tuples become lists), so that a stored copy compares equal."""
    return json.loads(json.dumps(inputs, sort_keys=True))


def run_id(inputs):
    """The first 16 hex digits of the SHA-256 of the canonical JSON of ``inputs``."""
    return hashlib.sha256(json.dumps(canonical(inputs), sort_keys=True).encode()).hexdigest()[:16]


def run_dir(runs, inputs):
    return Path(runs) / str(inputs["dataset"]) / str(inputs["method"]) / run_id(inputs)


def save_record(folder, record):
    folder = Path(folder)
    write_atomic(folder / "record.json", json.dumps(record, indent=1))
    write_atomic(folder / "done", "")


def load_record(folder, inputs=None):
    """The record of a finished run, or None if it is missing, unfinished, corrupt, or (given ``inputs``) of another run."""
    folder = Path(folder)
    if not (folder / "done").is_file():
        return None
    try:
        record = json.loads((folder / "record.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("role") not in REQUIRED:
        return None
    if any(k not in record for k in REQUIRED[record["role"]]):
        return None
    if inputs is not None and (record["inputs"] != canonical(inputs) or record["id"] != run_id(inputs)):
        return None
    return record
