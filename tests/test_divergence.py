"""A search that survives a diverging trial: the trial is recorded as a failed configuration and scored the worst, the
search goes on, and a cell whose every trial diverges is reported at the end (exit 1) with what it tried and a hint,
every other run's record kept."""

from jtln.hparams import DEFAULTS
from reproduce.__main__ import main
from tests.test_extending import TINY


def test_diverged_trials_are_recorded_skipped_by_selection_and_a_cell_that_never_trains_is_reported(tmp_path, monkeypatch,
                                                                                                   capsys):
    import jtln.methods
    from reproduce.collect import collect
    from reproduce.profile import load_profile

    joint_loss, target_loss = jtln.methods.Joint.loss, jtln.methods.TargetOnly.loss

    def joint_diverges_off_the_defaults(self, batch_t, batch_s):  # trial 0 (the defaults) trains; the drawn trial diverges
        loss, parts = joint_loss(self, batch_t, batch_s)
        return (loss * float("nan") if self.hp.lr_head != DEFAULTS.lr_head else loss), parts

    def target_only_always_diverges(self, batch_t, batch_s):
        loss, parts = target_loss(self, batch_t, batch_s)
        return loss * float("inf"), parts

    monkeypatch.setattr(jtln.methods.Joint, "loss", joint_diverges_off_the_defaults)
    monkeypatch.setattr(jtln.methods.TargetOnly, "loss", target_only_always_diverges)
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY.replace("n_trials = 1", "n_trials = 2").replace("[run]\n", '[run]\nmethods = ["joint", "target_only"]\n'))
    code = main(["sweep", "--profile", str(profile), "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "Tops/target_only level 5 seed 0: every search trial diverged" in err and "trial 0 {" in err and "trial 1 {" in err
    assert "the loss is inf at step 1" in err and "lower the learning rates" in err and "[hparams]" in err
    collected = collect(load_profile(profile), tmp_path / "runs")
    diverged = sorted((r["method"], r["trial"]) for r in collected.trials if r.get("diverged"))
    assert diverged == [("joint", 1), ("target_only", 0), ("target_only", 1)]
    assert [r["method"] for r in collected.seeds] == ["joint"]  # joint's selection (trial 0) refit and kept
    assert main(["sweep", "--profile", str(profile), "--runs", str(tmp_path / "runs")]) == 1  # resumed: nothing redone, same report
    assert main(["tables", "--profile", str(profile), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--no-report"]) == 0
    findings = (tmp_path / "tiny" / "findings.md").read_text()
    assert "**Diverged search trials**: 3 of 4" in findings and "Finetuning on target" in findings
