"""Run records: one JSON file per run, written atomically, with a ``done`` marker written last.

A run's folder is ``<runs>/<dataset>/<method>/seed<k>/``.  A run counts as
finished only when ``done`` exists *and* ``record.json`` parses and carries
the fields a table needs; anything else (a crash between the two files, a
truncated file) is detected and the run is redone.
"""

import json
import os
from pathlib import Path

REQUIRED = ("profile", "dataset", "method", "seed", "accuracy", "predictions", "labels", "hparams", "versions")


def run_dir(runs, dataset, method, seed):
    return Path(runs) / dataset / method / f"seed{seed}"


def write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_record(folder, record):
    folder = Path(folder)
    write_atomic(folder / "record.json", json.dumps(record, indent=1))
    write_atomic(folder / "done", "")


def load_record(folder):
    """The record of a finished run, or None if the run is missing, unfinished or corrupt."""
    folder = Path(folder)
    if not (folder / "done").is_file():
        return None
    try:
        record = json.loads((folder / "record.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED):
        return None
    return record


def load_records(runs):
    """Every finished record under ``runs``, in a stable order."""
    records = []
    for done in sorted(Path(runs).glob("*/*/seed*/done")):
        record = load_record(done.parent)
        if record is not None:
            records.append(record)
    return records
