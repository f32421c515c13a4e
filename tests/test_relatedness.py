"""The relatedness benchmark: its construction (true parents, disjoint images, one target for every setting), the recovery
measures against known answers and POT, and its profile end to end on tiny generated data."""

import json
from pathlib import Path

import numpy as np
import ot
import pytest

from jtln.data import draw, load_itl
from jtln.data.fashion_mnist import fashion_mnist_itl, synthetic_arrays
from jtln.data.relatedness import SETTINGS, TARGET, UNRELATED, relatedness_itl
from reproduce.__main__ import main
from reproduce.profile import PROFILES_DIR
from reproduce.recovery import cheapest_is_parent, gains, parent_mass, uniform_plan


@pytest.fixture(scope="module")
def settings():
    arrays = synthetic_arrays(per_class_train=40)
    return arrays, {s: relatedness_itl(s, arrays=arrays) for s in SETTINGS}


def test_every_child_has_one_parent_and_no_image_of_a_child_is_a_target_image(settings):
    ((x_train, _), _), itls = settings
    related = itls["related"]
    assert related.source_classes == [f"{t} ({k})" for t in TARGET for k in ("light", "heavy")]
    assert related.parents == (0, 0, 1, 1, 2, 2, 3, 3)
    target_keys = {k for k, _ in related.target_train} | {k for k, _ in related.target_test}
    assert target_keys.isdisjoint(k for k, _ in related.source)
    ink = {k: x_train[k[1]].mean() for k, _ in related.source}
    for t in range(4):  # the median split: every light child's image has no more ink than any heavy child's
        light = [ink[k] for k, c in related.source if c == 2 * t]
        heavy = [ink[k] for k, c in related.source if c == 2 * t + 1]
        assert max(light) <= min(heavy) and abs(len(light) - len(heavy)) <= 1


def test_the_dial_keeps_the_target_and_changes_only_the_source(settings):
    arrays, itls = settings
    for name, itl in itls.items():
        assert itl.target_classes == TARGET and itl.target_train == itls["related"].target_train, name
        assert itl.target_test == itls["related"].target_test, name
        a, b = draw(itl, 6, 3, 0.2, 4), draw(itls["related"], 6, 3, 0.2, 4)
        assert (a.target_train, a.target_val) == (b.target_train, b.target_val), name  # a seed draws the same labelled images
    mixed = itls["mixed"]
    assert mixed.source_classes == [f"{t} (light)" for t in TARGET] + UNRELATED[:4]
    assert mixed.parents == (0, 1, 2, 3, None, None, None, None)
    unrelated = itls["unrelated"]
    assert sorted(unrelated.source_classes) == fashion_mnist_itl("Tops", arrays=arrays).source_classes and set(unrelated.parents) == {None}
    assert {k for k, _ in unrelated.source} == {k for k, _ in fashion_mnist_itl("Tops", arrays=arrays).source}
    with pytest.raises(ValueError, match="unknown setting 'close'.*known: \\['mixed', 'related', 'unrelated'\\]"):
        relatedness_itl("close", arrays=arrays)
    assert load_itl("synthetic_relatedness", "mixed").parents == mixed.parents[:8]


def test_cheapest_is_parent_and_parent_mass_on_known_answers():
    parents = (0, 0, 1, None)
    C = np.array([[0.0, 1.0], [0.2, 0.1], [1.0, 0.0], [0.0, 0.0]])
    assert cheapest_is_parent(C, parents) == (2, 3)  # row 1's cheapest is 1, not its parent 0; row 3 has no parent
    plan = np.array([[0.3, 0.1], [0.0, 0.2], [0.1, 0.1], [5.0, 5.0]])
    assert parent_mass(plan, parents) == pytest.approx((0.3 + 0.0 + 0.1) / 0.8, abs=1e-12)
    with pytest.raises(ValueError, match="parent_mass needs a source class with a parent"):
        parent_mass(plan, (None,) * 4)


def test_the_uniform_plan_is_pots_sinkhorn_plan():
    rng = np.random.default_rng(0)
    C = rng.random((8, 4))
    for lam in (2.0, 10.0):
        expected = ot.sinkhorn(np.full(8, 1 / 8), np.full(4, 1 / 4), C, reg=1 / lam, stopThr=1e-12, numItermax=100_000)
        np.testing.assert_allclose(uniform_plan(C, lam), expected, rtol=0, atol=1e-7)


def test_gains_are_paired_over_common_seeds():
    records = [{"dataset": "related", "method": m, "seed": s, "accuracy": a, "labels": [0] * 100,
                "predictions": [0] * round(100 * a) + [1] * (100 - round(100 * a))}
               for m, accs in (("target_only", (0.50, 0.60, 0.70)), ("jtln_ot", (0.55, 0.62, 0.70))) for s, a in enumerate(accs)]
    gain = gains(records, ["related"])["jtln_ot"]["related"]
    assert gain["n"] == 3 and gain["mean"] == pytest.approx((0.05 + 0.02 + 0.0) / 3, abs=1e-12)
    assert gain["ci95"][0] < gain["mean"] < gain["ci95"][1]


def test_the_relatedness_profile_end_to_end_on_tiny_generated_data(tmp_path):
    text = (PROFILES_DIR / "relatedness.toml").read_text()
    for real, tiny in (('name = "relatedness"', 'name = "relatedness_tiny"'), ('"fashion_mnist_relatedness"', '"synthetic_relatedness"'),
                       ("levels = [67]", "levels = [5]"), ("source_per_class = 100", "source_per_class = 6"),
                       ("image_size = 64", "image_size = 32"), ("n_trials = 3", "n_trials = 1"),
                       ("seeds = [0, 1, 2, 3, 4, 5]", "seeds = [0, 1]"), ("workers = 2", "workers = 1")):
        assert real in text, real
        text = text.replace(real, tiny)
    text = text.replace("[run]\n", '[run]\nmethods = ["target_only", "jtln_mmd", "jtln_learned_cost"]\n')
    text += "\n[hparams]\nepochs = 1\nsource_epochs = 1\nbatch_size_target = 8\nbatch_size_source = 8\ncost_samples_per_class = 6\n"
    profile = tmp_path / "relatedness_tiny.toml"
    profile.write_text(text)
    assert main(["all", "--profile", str(profile), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--no-report"]) == 0
    out = tmp_path / "relatedness_tiny"
    for name in ("table2.tex", "claims.tex", "recovery.tex", "gain.tex", "gain_vs_relatedness.png", "costs_true_pairs_related.png",
                 "costs_true_pairs_mixed.pdf"):
        assert (out / name).is_file(), name
    assert not (out / "costs_true_pairs_unrelated.png").exists()  # no relatives, nothing to recover
    found = json.loads((out / "relatedness.json").read_text())
    assert set(found["recovery"]) == {"related", "mixed"}
    related = found["recovery"]["related"]
    assert set(related["costs"]) == {"mmd", "mmd-optimal", "ot", "learned_cost_matrix"} and set(related["heads"]) == {"jtln_mmd",
                                                                                                             "jtln_learned_cost"}
    assert related["costs"]["mmd"]["cheapest"]["n"] == 2 * 8 and related["chance"] == 0.25
    # every interval recomputes from the file: source classes resampled for the cheapest class, seeds for the plan masses
    import scipy.stats as sps

    for cost in related["costs"].values():
        shares = [np.mean(v) for v in cost["cheapest"]["per_class"].values()]
        assert len(shares) == 8 and cost["cheapest"]["share"] == pytest.approx(np.mean(shares), abs=1e-12)
        if len(set(shares)) > 1:
            again = sps.bootstrap((np.array(shares),), np.mean, n_resamples=9999, method="percentile", rng=np.random.default_rng(0))
            assert cost["cheapest"]["ci95"] == pytest.approx([again.confidence_interval.low, again.confidence_interval.high], abs=1e-12)
        masses = cost["plan_mass"]["per_seed"]
        assert len(masses) == 2 and cost["plan_mass"]["mean"] == pytest.approx(np.mean(masses), abs=1e-12)
        half = sps.t.ppf(0.975, 1) * np.std(masses, ddof=1) / np.sqrt(2)
        assert cost["plan_mass"]["ci95"] == pytest.approx(list(np.clip([np.mean(masses) - half, np.mean(masses) + half], 0, 1)), abs=1e-12)
        assert all(len(per_class) == 8 for per_class in cost["plan_mass"]["per_seed_class"])
    assert set(found["gain"]) == {"jtln_mmd", "jtln_learned_cost"} and set(found["gain"]["jtln_mmd"]) == {"related", "mixed", "unrelated"}
    claims = (out / "claims.tex").read_text()
    assert "related plays Boeing's role, mixed plays Boeing's role, unrelated plays Boeing's role" in claims
    stats = json.loads((out / "stats.json").read_text())
    assert {c["dataset"] for c in stats["claims"]} == {"related", "mixed", "unrelated"}
    # one target pool: each setting searches the same configurations with the same seeds, so target-only fine-tuning, which
    # ignores the source, is the same run in each (the dial's reference does not move)
    target_only = {d: c["per_seed"] for d, c in next(r for r in stats["table2"] if r["method"] == "target_only")["cells"].items()}
    assert target_only["related"] == target_only["mixed"] == target_only["unrelated"]
    losses = {}
    for record in (tmp_path / "runs").rglob("record.json"):
        r = json.loads(record.read_text())
        if r["method"] == "target_only":
            losses.setdefault((r["role"], r.get("trial", r.get("seed")), r["draw_key"]), set()).add(r["val_loss"])
    assert losses and all(len(v) == 1 for v in losses.values()), losses
    assert "nan" not in (out / "recovery.tex").read_text().lower() and Path(out / "gain.tex").read_text().count("&") > 0


def test_the_relatedness_trend_is_a_paired_test_of_the_gains_difference():
    """The gain over target-only fine-tuning on "related" minus that on "unrelated", paired over seeds; Holm over methods."""
    import scipy.stats as sps

    from reproduce.recovery import trend
    from tests.test_reproduce import make_record

    base = [0.60, 0.62, 0.61, 0.63]
    acc = {("related", "jtln_ot"): [0.63, 0.66, 0.64, 0.67], ("unrelated", "jtln_ot"): [0.61, 0.62, 0.62, 0.63],
           ("related", "joint"): [0.61, 0.62, 0.62, 0.64], ("unrelated", "joint"): [0.62, 0.61, 0.62, 0.63]}
    records = [make_record(d, "target_only", s, x) for d in ("related", "unrelated") for s, x in enumerate(base)]
    records += [make_record(d, m, s, x) for (d, m), xs in acc.items() for s, x in enumerate(xs)]
    found = trend(records, "related", "unrelated")
    assert set(found) == {"joint", "jtln_ot"}
    for m in found:
        diff = np.subtract(acc[("related", m)], acc[("unrelated", m)])  # the reference cancels: the same runs in both
        assert found[m]["mean"] == pytest.approx(diff.mean(), abs=1e-9)
        assert found[m]["p_t"] == pytest.approx(sps.ttest_1samp(diff, 0).pvalue, rel=1e-6)
    p = sorted(found[m]["p_t"] for m in found)
    assert sorted(found[m]["p_holm"] for m in found) == pytest.approx([2 * p[0], max(2 * p[0], p[1])])
