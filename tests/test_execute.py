"""What a run's process sets and keeps: warnings counted by message, cuBLAS's deterministic workspace."""

import os
import warnings

from reproduce.execute import counting_warnings


def test_warnings_are_counted_once_per_distinct_message_and_none_is_shown(recwarn):
    with counting_warnings() as counts:
        for _ in range(1000):
            warnings.warn("a deterministic kernel is missing", UserWarning, stacklevel=1)
        warnings.warn("the run ended at step 999", RuntimeWarning, stacklevel=1)
    assert counts == {"UserWarning: a deterministic kernel is missing": 1000, "RuntimeWarning: the run ended at step 999": 1}
    assert len(recwarn) == 0  # nothing reached the caller's handler


def test_seeding_sets_cublas_deterministic_workspace_unless_the_user_did(monkeypatch):
    from jtln.seeding import CUBLAS_WORKSPACE_CONFIG, seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
