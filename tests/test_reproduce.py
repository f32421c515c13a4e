"""The smoke profile end to end, the search and selection protocol, run identity, golden LaTeX, statistics, kill-and-resume."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from jtln.methods import METHODS, display_name
from reproduce.__main__ import main
from reproduce.collect import collect
from reproduce.plan import SEED, TRIAL, plan_trials, select
from reproduce.profile import load_profile
from reproduce.records import load_record, save_record
from reproduce.stats import mcnemar, paired
from reproduce.tables import table2_latex
from tests.conftest import MINI_PROFILE

ROOT = Path(__file__).parents[1]


def records_of(runs, profile="smoke"):
    return collect(load_profile(profile), runs)


def test_smoke_profile_end_to_end(smoke):
    out = smoke / "out" / "smoke"
    for name in ("table1.tex", "table1.json", "table2.tex", "hparams.tex", "stats.tex", "stats.json", "claims.tex", "findings.md",
                 "accuracy.png", "accuracy.pdf", "learning_curve.png", "costs_Tops.png", "plans_Footwear.pdf", "report.html"):
        assert (out / name).is_file(), name
    collected = records_of(smoke / "runs")
    assert collected.missing == []
    profile = load_profile("smoke")
    datasets, levels, seeds = len(profile.data.groups), len(profile.data.levels), len(profile.run.seeds)
    trained = [m for m in profile.run.methods if METHODS[m].trains]
    assert set(profile.run.methods) == set(METHODS)  # a profile that names no methods runs every registered one
    assert len(collected.trials) == datasets * len(trained) * levels * seeds * profile.search.n_trials  # each seed searches
    assert len(collected.seeds) == datasets * len(METHODS) * levels * seeds
    table2_tex = (out / "table2.tex").read_text()
    table2 = table2_tex[table2_tex.index(r"\begin{tabular}"):]  # the rows, not the caption
    for name in ("Finetuning on target", "Consecutive finetuning on source+target", "Joint finetuning on source+target",
                 "JTLN (fc7MKMMD)", "JTLN (fc7OT)", "Linear probe (outside the paper)"):
        assert name in table2
    # blocks: the paper's five, a rule, "Beyond the paper" and its three, a rule, the probe
    beyond = table2.index("Beyond the paper")
    assert table2.index("JTLN (fc7OT)") < table2.index(r"\midrule", table2.index("JTLN (fc7OT)")) < beyond
    assert beyond < table2.index("JTLN, dynamic cost") < table2.index("JTLN, learned cost") < table2.index("Co-Tuning")
    assert table2.index("Co-Tuning") < table2.index(r"\midrule", table2.index("Co-Tuning")) < table2.index("Linear probe")
    assert "Co-Tuning" not in (out / "stats.tex").read_text()  # the exploratory pairs are the paper's methods'
    assert "not significantly below it" in table2_tex and "(paper)" not in table2_tex  # paper values only beside the paper profile
    assert "refit the selected configuration on all its labelled images" in table2_tex
    updates = [r["cost_updates"] for r in collected.trials + collected.seeds if r["method"] == "jtln_dynamic"]
    assert updates and min(updates) >= 1  # every run of the dynamic cost recomputed it (a share of an epoch)
    shown = [r["cost_updates"] for r in collected.seeds if r["method"] == "jtln_dynamic" and r["level"] == profile.data.table2_level]
    assert f"C recomputed {min(shown)} to {max(shown)} times per run" in table2_tex
    assert "Trials won" in (out / "hparams.tex").read_text()
    payload = json.loads((out / "stats.json").read_text())
    assert {c["verdict"] for c in payload["claims"]} <= {"supported", "contradicted", "paper's effect ruled out", "inconclusive",
                                                         "at chance"}
    # each new method against JTLN (both costs) and joint fine-tuning, per dataset
    assert sorted((c["dataset"], c["a"], c["b"]) for c in payload["beyond"]) == sorted(
        (d, a, b) for d in ("Tops", "Footwear") for a in ("jtln_dynamic", "jtln_learned_cost", "co_tuning")
        for b in ("jtln_mmd", "jtln_ot", "joint"))
    assert {c["verdict"] for c in payload["beyond"]} <= {"supported", "contradicted", "inconclusive", "at chance"}
    assert (out / "beyond.tex").is_file() and "Beyond the paper" in (out / "report.html").read_text()
    assert len(payload["selection"]) == datasets * len(trained) * levels * seeds  # one selection per seed
    assert {e["seed"] for e in payload["selection"]} == set(profile.run.seeds)
    record = collected.seeds[0]
    for key in ("hparams", "seed", "level", "versions", "accuracy", "best_epoch", "per_class_accuracy",
                "predictions", "timings", "profile", "inputs", "id", "draw"):
        assert key in record, key
    report = (out / "report.html").read_text()
    assert "Tops" in report and "without encryption" not in report and "WARNING" not in report
    assert r"\begin{table}" not in report  # tables as HTML, not raw LaTeX
    from bs4 import BeautifulSoup

    tables = BeautifulSoup(report, "html.parser").find_all("table")
    rows = {tr.find("th").get_text(strip=True): [td.get_text(strip=True) for td in tr.find_all("td")]
            for table in tables for tr in table.find_all("tr") if tr.find("th")}
    table2 = json.loads((out / "stats.json").read_text())["table2"]
    for row in table2:  # Table 2's rows, with the numbers of the LaTeX table
        cell = row["cells"]["Tops"]
        assert rows[row["name"]][0] == f"{cell['mean']:.4f} ± {cell['std']:.4f}", row["name"]
        assert f"{cell['mean']:.4f} $\\pm$ {cell['std']:.4f}" in table2_tex
    assert "Linear probe (outside the paper)" in rows and "Footwear" in report
    # for a reader: no code cells, no NaN, no number in exponent notation
    text = BeautifulSoup(report, "html.parser").get_text(" ")
    assert "def fmt" not in report and "import json" not in report
    assert "NaN" not in text and not re.search(r"\b\d+(\.\d+)?e[-+]\d+", text), re.search(r"\b\d+(\.\d+)?e[-+]\d+", text)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_registered_method_trains_is_recorded_and_searches_all_it_declares(smoke, method):
    """DomainBed's habit: every method of the registry through the whole sweep (the smoke profile runs them all)."""
    from reproduce.plan import searched
    from reproduce.records import problem

    profile, collected = load_profile("smoke"), records_of(smoke / "runs")
    assert method in profile.run.methods
    seeds = [r for r in collected.seeds if r["method"] == method]
    assert len(seeds) == 2 * 2 * 3 and all(problem(r) is None for r in seeds)  # datasets x levels x seeds, each complete
    names = searched(method, profile)
    # what the registry declares, less what the profile fixes and the layer groups EfficientNet lacks (fc6-fc7)
    assert set(names) == set(METHODS[method].searches) - set(profile.hparams) - {"lr_fc"}
    trials = [r for r in collected.trials if r["method"] == method]
    assert bool(trials) == METHODS[method].trains
    rows = [line for line in (smoke / "out" / "smoke" / "hparams.tex").read_text().splitlines() if f"& {display_name(method)} &" in line]
    assert len(rows) == (2 * 2 if METHODS[method].trains else 0)
    for name in names:
        assert len({json.dumps(r["hparams"][name]) for r in trials}) > 1, f"{name} never varies across {method}'s trials"
        assert all(name.replace("_", "\\_") + "=" in row for row in rows), f"{name} missing from hparams.tex"


def test_selection_takes_each_seeds_lowest_validation_cross_entropy_and_the_lowest_trial_among_ties():
    def trial(dataset, t, loss, seed=0, accuracy=0.5, diverged=None):
        return {"dataset": dataset, "method": "joint", "level": 67, "trial": t, "val_loss": loss, "val_accuracy": accuracy,
                "hparams": {"t": t}, "inputs": {"seed": seed}, "best_epoch": 2 + t, "diverged": diverged}

    records = [trial("A", 2, 0.3), trial("A", 0, 0.6), trial("A", 1, 0.3), trial("A", 3, 0.45), trial("B", 0, 0.2), trial("B", 1, 0.8)]
    chosen = select(records)
    assert chosen[("A", "joint", 67, 0)]["trial"] == 1 and chosen[("B", "joint", 67, 0)]["trial"] == 0
    assert chosen[("A", "joint", 67, 0)]["epochs"] == 3  # the refit's epoch count: the selected trial's kept epoch
    # each seed selects on its own validation part: seed 1 keeps another trial
    seeds = [trial("C", 0, 0.1), trial("C", 1, 0.4), trial("C", 0, 0.9, seed=1), trial("C", 1, 0.4, seed=1)]
    assert select(seeds)[("C", "joint", 67, 0)]["trial"] == 0 and select(seeds)[("C", "joint", 67, 1)]["trial"] == 1
    # the cross-entropy decides, not the accuracy; a diverged trial never wins
    acc = [trial("D", 0, 0.5, accuracy=0.9), trial("D", 1, 0.4, accuracy=0.8), trial("D", 2, None, diverged="nan")]
    assert select(acc)[("D", "joint", 67, 0)]["trial"] == 1


def test_the_sweep_selects_on_validation_and_never_on_test(smoke):
    collected = records_of(smoke / "runs")
    profile = load_profile("smoke")
    for (dataset, method, level, seed), chosen in collected.selection.items():
        key = (dataset, method, level, seed)
        rivals = [r for r in collected.trials if (r["dataset"], r["method"], r["level"], r["inputs"]["seed"]) == key]
        assert sorted(r["trial"] for r in rivals) == list(range(len(rivals)))  # each trial once, on the seed's own draw
        assert chosen["val_loss"] == pytest.approx(min(r["val_loss"] for r in rivals), abs=1e-12)
        (refit,) = [r for r in collected.seeds if (r["dataset"], r["method"], r["level"], r["seed"]) == (dataset, method, level, seed)]
        # the seed refits its own selected configuration for the selected epoch count, on every labelled image, no validation
        assert refit["hparams"] == {**chosen["hparams"], "epochs": chosen["epochs"]}
        assert refit["best_epoch"] == chosen["epochs"] and refit["val_loss"] is None and refit["val_curve"] == []
        # the trials trained on the seed's draw (its training part), and saw none of its test images
        assert {r["draw"] for r in rivals} == {refit["draw"]}
        assert all(r["stopped_epoch"] <= r["hparams"]["epochs"] for r in rivals)
        assert all(r["stopped_epoch"] == r["hparams"]["epochs"] or r["stopped_epoch"] - r["best_epoch"] == profile.search.patience
                   for r in rivals)  # early stopping: a trial stops only after `patience` epochs without a lower loss
        if method == "target_only":  # every labelled image trains the refit: its steps cover training and validation images
            labelled = refit["table1"]["target_train_images"]
            assert refit["n_steps"] == refit["hparams"]["epochs"] * math.ceil(labelled / refit["hparams"]["batch_size_target"])
    for r in collected.trials:  # trials are never tested
        assert "accuracy" not in r and "predictions" not in r and r["inputs"]["role"] == TRIAL
    configurations = {(r["dataset"], r["method"], r["level"], r["inputs"]["seed"]): r["hparams"] for r in collected.trials
                      if r["trial"] == 1 and r["method"] == "joint"}
    assert len({json.dumps(h, sort_keys=True) for h in configurations.values()}) == len(configurations)  # each seed draws its own


def test_methods_with_one_seed_see_the_same_data_and_seeds_redraw_it(smoke):
    seeds = records_of(smoke / "runs").seeds
    for level in (5, 10):
        for dataset in ("Tops", "Footwear"):
            by_seed = {}
            for r in seeds:
                if r["level"] == level and r["dataset"] == dataset:
                    by_seed.setdefault(r["seed"], set()).add(r["draw"])
            assert all(len(draws) == 1 for draws in by_seed.values()), by_seed  # every method, the same draw
            assert len({next(iter(d)) for d in by_seed.values()}) == len(by_seed)  # each seed its own


def test_a_new_trial_or_method_changes_no_other_trials_configuration(tmp_path):
    smoke = load_profile("smoke")
    bigger = tmp_path / "bigger.toml"
    text = Path(smoke.path).read_text().replace("n_trials = 2", "n_trials = 4")
    text = text.replace("[run]\n", '[run]\nmethods = ["jtln_ot", "joint"]\n')
    bigger.write_text(text)

    def configs(profile):
        return {(j.dataset, j.method, j.level, j.seed, j.index): j.hparams for j in plan_trials(profile, tmp_path)}

    small, large = configs(smoke), configs(load_profile(bigger))
    common = set(small) & set(large)
    assert len(common) == 2 * 2 * 2 * 3 * 2 and all(small[k] == large[k] for k in common)  # datasets levels methods seeds trials
    for cell in {k[:4] for k in large}:  # within a seed's search every trial tries another configuration (trial 0: the defaults)
        trials = [large[k] for k in large if k[:4] == cell]
        assert len(set(trials)) == len(trials) == 4
    assert large[("Tops", "joint", 5, 0, 1)] != large[("Footwear", "joint", 5, 0, 1)]  # and the cells draw independently
    assert large[("Tops", "joint", 5, 0, 1)] != large[("Tops", "joint", 5, 1, 1)]  # and so do the seeds


def test_a_changed_hyper_parameter_or_a_copied_record_is_not_reused(smoke, tmp_path, monkeypatch):
    runs = smoke / "runs"
    changed = tmp_path / "smoke.toml"
    changed.write_text(Path(load_profile("smoke").path).read_text().replace("epochs = 2", "epochs = 3"))
    assert collect(load_profile(changed), runs).seeds == []  # nothing of the old sweep counts
    # nor does a record of another training protocol (its inputs name the protocol that made it)
    import reproduce.plan

    monkeypatch.setattr(reproduce.plan, "PROTOCOL", reproduce.plan.PROTOCOL + 1)
    assert collect(load_profile("smoke"), runs).seeds == []
    monkeypatch.undo()
    # a record copied into another run's folder is refused: it was made by other inputs
    collected = records_of(runs)
    a, b = collected.seeds[0], collected.seeds[1]
    folder = next((runs / b["dataset"] / b["method"]).glob(b["id"]))
    copy = tmp_path / "copy"
    save_record(copy, a)
    assert load_record(copy) is not None
    with pytest.warns(RuntimeWarning, match="is refused and will be redone: it lies in another run's folder"):
        assert load_record(copy, b["inputs"]) is None
    assert load_record(folder, b["inputs"]) == b


def test_the_same_records_give_byte_identical_outputs(smoke, tmp_path):
    """Tables, figures (no creation date, fixed jitter and bootstrap) and the executed report, regenerated from the records."""
    first, again = smoke / "out" / "smoke", tmp_path / "smoke"
    again.mkdir()
    for name in ("table1.tex", "table1.json"):  # from the data, not the records: the report shows them
        (again / name).write_bytes((first / name).read_bytes())
    assert main(["tables", "--profile", "smoke", "--runs", str(smoke / "runs"), "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in again.iterdir() if p.is_file())
    assert {"accuracy.png", "accuracy.pdf", "table2.tex", "report.ipynb", "report.html"} <= set(names)
    assert [n for n in names if (first / n).read_bytes() != (again / n).read_bytes()] == []

def make_record(dataset, method, seed, accuracy, predictions=None, labels=None, n_test=20_000):
    """A seed record whose predictions of ``n_test`` images are right ``round(accuracy * n_test)`` times (unless given)."""
    if labels is None:
        correct = round(accuracy * n_test)
        labels, predictions = [0] * n_test, [0] * correct + [1] * (n_test - correct)
        accuracy = correct / n_test
    return {"profile": "t", "role": SEED, "dataset": dataset, "method": method, "seed": seed, "level": 67, "accuracy": accuracy,
            "predictions": predictions or labels, "labels": labels, "hparams": {}, "versions": {}}


GOLDEN_TABLE2 = r"""\begin{table}[t]
\centering
\caption{toy}
\begin{tabular}{lccc}
\toprule
Methods & Boeing & Boeing (paper) & Airbus \\
\midrule
Joint finetuning on source+target & 0.5000 $\pm$ 0.1414 & 0.5395 & \textbf{0.7000 $\pm$ 0.0000} \\
JTLN (fc7OT) & 0.6000 $\pm$ 0.0000 & 0.5436 & 0.6000 $\pm$ 0.0000 \\
\midrule
Linear probe (outside the paper) & 0.7000 $\pm$ 0.0000 & -- & 0.5000 \\
\bottomrule
\end{tabular}
\end{table}
"""


def test_table2_golden():
    records = [make_record("Boeing", "joint", 0, 0.4), make_record("Boeing", "joint", 1, 0.6),
               make_record("Boeing", "jtln_ot", 0, 0.6), make_record("Boeing", "jtln_ot", 1, 0.6),
               make_record("Airbus", "joint", 0, 0.7), make_record("Airbus", "joint", 1, 0.7),
               make_record("Airbus", "jtln_ot", 0, 0.6), make_record("Airbus", "jtln_ot", 1, 0.6),
               make_record("Boeing", "linear_probe", 0, 0.7), make_record("Boeing", "linear_probe", 1, 0.7),
               make_record("Airbus", "linear_probe", 0, 0.5)]  # one seed: no spread to show
    paper = {"Boeing": {"joint": 0.5395, "jtln_ot": 0.5436}}
    assert table2_latex(records, ["Boeing", "Airbus"], "toy", paper) == GOLDEN_TABLE2


def test_paired_against_scipy_and_by_hand():
    a, b = [0.61, 0.58, 0.64, 0.60, 0.63], [0.55, 0.57, 0.60, 0.58, 0.59]
    r = paired(a, b)
    t = sps.ttest_rel(a, b)
    np.testing.assert_allclose([r["t"], r["p_t"]], [t.statistic, t.pvalue], rtol=1e-12)
    d = np.subtract(a, b)  # 0.06 0.01 0.04 0.02 0.04: mean 0.034, sd 0.01949
    half = 2.7764451051977987 * d.std(ddof=1) / np.sqrt(5)  # t_{0.975, 4}
    np.testing.assert_allclose(r["mean_diff"], 0.034, rtol=1e-12)
    np.testing.assert_allclose(r["ci95"], [0.034 - half, 0.034 + half], rtol=1e-9)
    assert r["p_improvement"] == 1.0
    assert paired([0.5, 0.5], [0.5, 0.5])["p_t"] == 1.0


def test_mcnemar_exact():
    # a right and b wrong on 1 image, the reverse on 4: two-sided binomial p = 2 * P(X <= 1 | n=5) = 0.375
    labels = [0] * 10
    pred_a = [0] * 5 + [1] * 4 + [0]
    pred_b = [0] * 5 + [0] * 4 + [1]
    r = mcnemar(pred_a, pred_b, labels)
    assert (r["only_a_correct"], r["only_b_correct"]) == (1, 4)
    np.testing.assert_allclose(r["p"], 0.375, rtol=1e-12)


def deterministic(record):
    return {k: record.get(k) for k in ("dataset", "method", "role", "seed", "trial", "level", "id", "accuracy", "predictions",
                                       "per_class_accuracy", "best_epoch", "val_curve", "val_loss_curve")}


def finished(runs):
    return {p.parent: p.stat().st_mtime_ns for p in Path(runs).glob("*/*/*/done")}


def start_sweep(profile, runs, *options, **popen):
    command = [sys.executable, "-m", "reproduce", "sweep", "--profile", str(profile), "--runs", str(runs), *options]
    return subprocess.Popen(command, cwd=ROOT, **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen})


def prepared_as(small, runs, datasets=None):
    """``runs`` holding the small profile's preparation of ``datasets`` (default: all; a copy of the uninterrupted
    sweep's), for a test that interrupts its runs: the preparation is tested where it is made (tests/test_prepare.py),
    not again at every start."""
    import shutil

    from reproduce.prepare import stored_files

    profile = load_profile(small.profile)
    for dataset in profile.data.groups if datasets is None else datasets:
        for path in stored_files(profile, dataset, small.runs):
            copy = Path(runs) / path.relative_to(small.runs)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
    return runs


def wait_until_finished(runs, count, process, timeout=180):
    """Wait until ``count`` runs of ``runs`` finished, while ``process`` runs; what finished, by folder."""
    deadline = time.time() + timeout
    while len(finished(runs)) < count and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    return finished(runs)


def test_a_killed_sweep_resumed_by_two_sweeps_at_once_repeats_and_loses_no_run_and_writes_each_record_once(small, tmp_path):
    """SIGKILL mid-sweep, a record corrupted on disk, then two sweeps of the same command at once: they share the work
    (each run under its lock), redo the corrupt record, rerun nothing that finished, and give the uninterrupted sweep's
    records (predictions, accuracies and loss curves: one process each, the same thread count)."""
    runs = prepared_as(small, tmp_path / "runs")
    process = start_sweep(small.profile, runs)
    wait_until_finished(runs, 12, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = finished(runs)
    total = len(finished(small.runs))  # 42 runs
    assert 12 <= len(before) < total, len(before)
    # a record corrupted on disk (as a crash mid-write on another filesystem could leave) is detected and redone
    victim = sorted(before)[0]
    (victim / "record.json").write_text('{"accuracy": 0.5')
    assert load_record(victim) is None
    resumers = [start_sweep(small.profile, runs) for _ in range(2)]
    assert [p.wait(timeout=600) for p in resumers] == [0, 0]
    for folder, mtime in before.items():
        if folder != victim:
            assert (folder / "done").stat().st_mtime_ns == mtime, f"{folder} was run again"
    assert (victim / "done").stat().st_mtime_ns != before[victim]
    for folder in finished(runs):  # one record per run, complete
        assert len(list(folder.glob("record*.json"))) == 1 and not list(folder.glob("*.tmp*")), folder
    resumed = records_of(runs, small.profile)
    assert resumed.missing == [] and len(finished(runs)) == total
    new = [r for r in resumed.seeds + resumed.trials if r["id"] not in {f.name for f in before} or r["id"] == victim.name]
    assert {r["run_by"].split(":")[1] for r in new} <= {str(p.pid) for p in resumers}  # written by the two sweeps, once each
    assert sweep_records(small.profile, runs, None) == sweep_records(small.profile, small.runs, None)


def sweep_records(profile, runs, *options):
    """Sweep ``profile`` into ``runs`` (unless ``options`` is None: only read what is there); its records, by id."""
    if options != (None,):
        assert main(["sweep", "--profile", str(profile), "--runs", str(runs), *options]) == 0
    collected = collect(load_profile(profile), runs)
    return sorted(map(deterministic, collected.seeds + collected.trials), key=lambda r: r["id"])


def session_alive(pgid, within=15):
    """Whether a process of the group is still there after ``within`` seconds (init reaps a zombie soon after its parent exits)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def test_a_parallel_sweep_stops_promptly_on_sigterm_and_ctrl_c_leaves_no_process_and_resumes_to_the_sequential_records(small,
                                                                                                                       tmp_path):
    """Workers stopped by SIGTERM to the driver (as a scheduler sends it), then by SIGINT to the whole group (as Ctrl-C
    does): exit 143 and 130 within seconds, no process left, nothing finished rerun; the parallel resumption then gives the
    sequential sweep's predictions and accuracies, and its cross-entropies to float32 rounding (a worker runs torch with
    one intra-op thread, the sequential sweep with the machine's cores: another order of summation)."""
    runs, kept = prepared_as(small, tmp_path / "runs"), {}
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        # SIGINT as a terminal delivers it: not ignored, even where the tests run in the background (a shell's `&` ignores it)
        process = start_sweep(small.profile, runs, "--workers", "2", stderr=subprocess.PIPE, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_until_finished(runs, len(kept) + 4, process)
        assert process.poll() is None, process.stderr.read().decode()
        os.killpg(process.pid, sig) if sig == signal.SIGINT else process.send_signal(sig)
        stopped = time.time()
        assert process.wait(timeout=60) == code, sig
        assert time.time() - stopped < 30, sig
        assert not session_alive(process.pid), f"a worker process outlived the sweep stopped by {sig!r}"
        assert all((folder / "done").stat().st_mtime_ns == mtime for folder, mtime in kept.items()), sig
        kept = finished(runs)
    assert 8 <= len(kept) < len(finished(small.runs))

    def split(records):
        return ([{k: v for k, v in r.items() if k != "val_loss_curve"} for r in records],
                np.array([x for r in records for x in r["val_loss_curve"]]))

    parallel, parallel_losses = split(sweep_records(small.profile, runs, "--workers", "2"))
    assert all((folder / "done").stat().st_mtime_ns == mtime for folder, mtime in kept.items())
    resumed = collect(load_profile(small.profile), runs)  # the seed runs ran in the search's two workers, not in two new ones
    run_by = {r["run_by"] for r in resumed.trials + resumed.seeds if r["id"] not in {folder.name for folder in kept}}
    assert len(run_by) <= 2, run_by
    sequential, sequential_losses = split(sweep_records(small.profile, small.runs, None))
    assert len(sequential) == 18 + 2 * 2 * 3 * 2 and len(sequential_losses) == 2 * 2 * 3 * 2  # the trials' curves, one epoch
    assert parallel == sequential
    np.testing.assert_allclose(parallel_losses, sequential_losses, rtol=1e-5, atol=1e-6)  # float32 sums of losses near 0.02


def test_paper_pipeline_on_a_miniature_fgvc_tree(tmp_path):
    """The paper's path (FGVC images, AlexNet cut after conv3, fc7 costs) end to end, every method, with random weights,
    on one group (a sweep of several datasets is the smoke and small profiles')."""
    from tests.fake_data import make_mini_fgvc

    root = make_mini_fgvc(tmp_path / "data", n_trainval=4, n_test=2)
    profile = tmp_path / "paper_mini.toml"
    profile.write_text('name = "paper_mini"\n[data]\ndataset = "fgvc_aircraft"\ngroups = ["Boeing"]\n'
                       'levels = ["all"]\nvalidation_fraction = 0.25\n'
                       '[model]\nbackbone = "alexnet"\npretrained = false\nimage_size = 64\n'
                       '[search]\nn_trials = 1\n'
                       '[run]\nmethods = ["joint", "jtln_mmd", "jtln_ot", "jtln_dynamic", "jtln_learned_cost", "co_tuning", '
                       '"linear_probe"]\nseeds = [0]\n'
                       '[hparams]\nepochs = 1\nbatch_size_target = 4\nbatch_size_source = 4\n'
                       'mmd_kernel_weights = "uniform"\n')  # 3 images per class: too few for optimal weights (>= 4)
    out = tmp_path / "out"
    args = ["--profile", str(profile), "--data-root", str(root), "--runs", str(tmp_path / "runs"), "--out", str(out)]
    assert main(["all", *args, "--no-report"]) == 0
    collected = collect(load_profile(profile), tmp_path / "runs")
    records = collected.seeds
    # datasets x methods x seeds; datasets x trained methods x seeds x trials (the methods beyond the paper too)
    run = load_profile(profile).run
    assert len(records) == 1 * len(run.methods) * 1 and not collected.missing
    assert len(collected.trials) == 1 * len([m for m in run.methods if METHODS[m].trains]) * 1 * 1
    assert {r["dataset"] for r in records} == {"Boeing"}
    # the validation split comes from the trainval images: 4 per variant, 1 for validation (a quarter)
    assert all(r["table1"]["target_train_images"] == 4 * r["table1"]["target_categories"] for r in records)
    assert {k for r in collected.trials for k in r["hparams"]} >= {"lr_fc"}  # AlexNet's fc6-fc7 group is searched
    assert all(len(r["cost_matrix"]) == 3 and len(r["cost_matrix"][0]) == 3 for r in records
               if r["cost_matrix"])  # 3 source variants x 3 Boeing variants
    table2 = (out / "paper_mini" / "table2.tex").read_text()
    assert "(paper)" in table2 and "Beyond the paper" in table2  # FGVC profiles show the published values


def test_records_are_checked_by_content_and_a_bad_one_is_reported_and_redone(smoke, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(smoke / "runs", runs)
    collected = records_of(runs)
    record = next(r for r in collected.seeds if r["method"] == "joint")
    folder = runs / record["dataset"] / record["method"] / record["id"]
    assert load_record(folder, record["inputs"]) == record
    for change, message in (({"accuracy": 1.7}, r"accuracy = 1.7 is not an accuracy in \[0, 1\]"),
                            ({"accuracy": 0.0 if record["accuracy"] else 1.0}, "disagrees with its predictions"),
                            ({"predictions": record["predictions"][:-1]}, "same, non-zero length"),
                            ):
        save_record(folder, {**record, **change})
        with pytest.warns(RuntimeWarning, match=message):
            assert load_record(folder, record["inputs"]) is None
    trial = collected.trials[0]
    trial_folder = runs / trial["dataset"] / trial["method"] / trial["id"]
    save_record(trial_folder, {**trial, "val_loss": float("nan")})
    with pytest.warns(RuntimeWarning, match="val_loss = nan is not a finite cross-entropy"):
        assert load_record(trial_folder, trial["inputs"]) is None
    save_record(trial_folder, trial)
    # a target_only record copied into joint's folder under its own id is refused as lying in another run's folder
    other = next(r for r in collected.seeds if r["method"] == "target_only")
    intruder = runs / record["dataset"] / "joint" / other["id"]
    save_record(intruder, other)
    with pytest.warns(RuntimeWarning, match="another run's folder"):
        assert load_record(intruder, other["inputs"]) is None
    save_record(folder, {**record, "accuracy": 1.7})
    with pytest.warns(RuntimeWarning, match="refused and will be redone"):
        assert main(["sweep", "--profile", "smoke", "--runs", str(runs)]) == 0  # the bad record is redone ...
    assert load_record(folder, record["inputs"])["accuracy"] == record["accuracy"]  # ... to the same result


def test_a_run_locked_by_another_process_is_skipped_then_waited_for(tmp_path):
    import fcntl

    from reproduce.execute import execute
    from reproduce.prepare import Workspace

    profile = tmp_path / "mini.toml"
    profile.write_text(MINI_PROFILE)
    loaded = load_profile(profile)
    job = plan_trials(loaded, tmp_path / "runs")[0]
    job.folder.mkdir(parents=True)
    workspace = Workspace()
    with open(job.folder / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another sweep training this run would
        assert execute(job, workspace) is None and not (job.folder / "done").exists()
    record = execute(job, workspace)
    assert record is not None and load_record(job.folder, job.inputs) == record


def test_only_the_cost_matrices_the_methods_can_ask_for_are_prepared(tmp_path):
    from reproduce.prepare import cost_keys

    smoke = load_profile("smoke")
    assert cost_keys(smoke) == ["mmd", "mmd-optimal", "ot"]  # jtln_mmd searches the kernel weights
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(Path(smoke.path).read_text().replace("[hparams]\n", '[hparams]\nmmd_kernel_weights = "uniform"\n'))
    assert cost_keys(load_profile(fixed)) == ["mmd", "ot"]
    joint = tmp_path / "joint.toml"
    joint.write_text(Path(fixed).read_text().replace("[run]\n", '[run]\nmethods = ["joint", "co_tuning"]\n'))
    assert list(load_profile(joint).run.methods) == ["joint", "co_tuning"] and cost_keys(load_profile(joint)) == []
