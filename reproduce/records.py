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
import warnings
from pathlib import Path

import numpy as np

from jtln.atomic import write_atomic

#: the fields a record of each role must carry
REQUIRED = {
    "trial": ("id", "inputs", "dataset", "method", "level", "hparams", "val_accuracy", "val_loss", "best_epoch", "versions"),
    "seed": ("id", "inputs", "dataset", "method", "level", "seed", "hparams", "best_epoch", "accuracy", "predictions", "labels",
             "versions"),
}


def correct_count(predictions, labels):
    """How many ``predictions`` equal their ``labels`` (class indices, two sequences of one length): the count a seed
    record's accuracy is (:func:`reproduce.stats.seed_accuracy`), counted by NumPy (a Python loop over a record's test
    images took most of the statistics' time)."""
    return int(np.count_nonzero(np.asarray(predictions) == np.asarray(labels)))


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


def problem(record, folder=None):
    """What is wrong with a record's content, or None: fields, types and ranges, and (given its folder) where it lies."""
    if not isinstance(record, dict) or record.get("role") not in REQUIRED:
        return "not a run record (no role 'trial' or 'seed')"
    missing = [k for k in REQUIRED[record["role"]] if k not in record]
    if missing:
        return f"lacks {missing}"
    for key in ("val_accuracy", "accuracy"):
        value = record.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
            return f"{key} = {value!r} is not an accuracy in [0, 1]"
    loss = record.get("val_loss")
    diverged = record["role"] == "trial" and isinstance(record.get("diverged"), str) and loss is None  # a failed configuration
    if record["role"] == "trial" and not diverged and not (
            isinstance(loss, (int, float)) and not isinstance(loss, bool) and 0 <= loss < float("inf")):
        return f"val_loss = {loss!r} is not a finite cross-entropy"
    if record["role"] == "seed":
        predictions, labels = record["predictions"], record["labels"]
        if not (isinstance(predictions, list) and isinstance(labels, list)) or len(predictions) != len(labels) or not labels:
            return "predictions and labels are not two lists of the same, non-zero length"
        correct = correct_count(predictions, labels) / len(labels)
        if abs(correct - record["accuracy"]) > 1e-6:  # accuracies are computed in float32
            return f"accuracy {record['accuracy']} disagrees with its predictions ({correct})"
    if record["id"] != run_id(record["inputs"]):
        return "its id is not the hash of its inputs"
    if folder is not None and Path(folder).resolve() != run_dir(Path(folder).parents[2], record["inputs"]).resolve():
        return "it lies in another run's folder (its inputs name another method, dataset or configuration)"
    return None


def load_record(folder, inputs=None):
    """The record of a finished run, or None if it is missing, unfinished, corrupt, or (given ``inputs``) of another run.

    A record that parses but fails :func:`problem` is reported (a warning
    naming its path and the problem) and treated as missing, so it is redone.
    """
    folder = Path(folder)
    if not (folder / "done").is_file():
        return None
    try:
        record = json.loads((folder / "record.json").read_text())
    except (OSError, ValueError):
        return None
    wrong = problem(record, folder if inputs is not None else None)
    if wrong is None and inputs is not None and record["inputs"] != canonical(inputs):
        wrong = "its inputs are not those of the run asked for"
    if wrong is not None:
        warnings.warn(f"run record {folder / 'record.json'} is refused and will be redone: {wrong}", RuntimeWarning, stacklevel=2)
        return None
    return record
