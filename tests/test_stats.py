"""Statistics against the paper's claims: the four verdicts on synthetic records, checks against statsmodels and scipy."""

from itertools import combinations

import numpy as np
import pytest
from scipy import stats as sps

from reproduce.stats import (
    CLAIMS,
    PAPER_TABLE2,
    claims,
    compare_all,
    comparisons,
    detectable_difference,
    holm,
    not_worse_than_best,
    power_to_detect,
    probability_of_improvement,
    seeds_needed,
)
from tests.test_reproduce import make_record

PAPER = ["target_only", "consecutive", "joint", "jtln_mmd", "jtln_ot"]


def records(means, noise, n=6, seed=0, datasets=("Tops", "Footwear")):
    """Accuracies ``means[method] + N(0, noise)`` per seed, the same for both datasets."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.01, n)  # a seed effect shared by every method: pairing removes it
    return [make_record(d, m, s, 0.6 + base[s] + means.get(m, 0.0) + rng.normal(0, noise)) for d in datasets for m in PAPER
            for s in range(n)]


def verdicts(recs):
    return {(c["claim"], c["dataset"]): c["verdict"] for c in claims(recs, ["Tops", "Footwear"])}


def test_every_pair_once_in_every_family():
    assert comparisons(PAPER) == list(combinations(PAPER, 2)) and len(comparisons(PAPER)) == 10
    results = compare_all(records({}, 0.01))
    pairs = [(r["dataset"], frozenset((r["a"], r["b"]))) for r in results]
    assert len(pairs) == len(set(pairs)) == 20
    family = [(c["claim"], c["dataset"]) for c in claims(records({}, 0.01), ["Tops", "Footwear"])]
    assert len(family) == len(set(family)) == sum(len(cols) for *_, cols in CLAIMS)


def test_a_large_effect_in_the_claimed_direction_is_supported_and_the_opposite_contradicted():
    v = verdicts(records({"jtln_mmd": 0.08, "jtln_ot": -0.08}, 0.002))
    assert v[("JTLN (fc7MKMMD) beats joint fine-tuning", "Tops")] == "supported"
    assert v[("JTLN (fc7MKMMD) beats joint fine-tuning", "Footwear")] == "supported"
    assert v[("JTLN (fc7OT) beats joint fine-tuning", "Footwear")] == "contradicted"
    assert v[("the MK-MMD cost beats the OT cost", "Footwear")] == "supported"


def test_no_difference_with_tight_intervals_rules_out_the_papers_effect_and_noise_is_inconclusive():
    tight = verdicts(records({}, 0.0005))
    # Airbus's JTLN (fc7MKMMD) gain over joint fine-tuning was +4.85 points: ruled out by a difference of 0 +- 0.05 points
    assert PAPER_TABLE2["Airbus"]["jtln_mmd"] - PAPER_TABLE2["Airbus"]["joint"] == pytest.approx(0.0485)
    assert tight[("JTLN (fc7MKMMD) beats joint fine-tuning", "Footwear")] == "paper's effect ruled out"
    assert tight[("consecutive beats target-only fine-tuning", "Tops")] == "paper's effect ruled out"
    noisy = verdicts(records({"jtln_mmd": 0.005}, 0.03))
    assert set(noisy.values()) == {"inconclusive"}


def test_claims_of_methods_not_run_read_not_run():
    recs = [r for r in records({}, 0.01) if r["method"] != "consecutive"]
    v = verdicts(recs)
    assert v[("joint beats consecutive fine-tuning", "Tops")] == "not run"
    assert v[("JTLN (fc7OT) beats joint fine-tuning", "Tops")] != "not run"


def test_statistics_against_statsmodels_and_scipy():
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import DescrStatsW

    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    for p in ([0.5, 0.001], [0.01, 0.04, 0.03, 0.04, 0.2, 0.9, 0.011], np.random.default_rng(0).random(12) ** 3, [0.3] * 4):
        assert holm(list(p)) == list(multipletests(p, method="holm")[1])  # bit for bit, ties and the cap at 1 included
    assert holm([None, 0.02]) == [None, 0.02]
    a, b = [0.61, 0.58, 0.64, 0.60, 0.63, 0.62], [0.55, 0.57, 0.60, 0.58, 0.59, 0.63]
    recs = [make_record("Tops", "joint", s, x) for s, x in enumerate(b)] + [make_record("Tops", "jtln_ot", s, x) for s, x in enumerate(a)]
    claim = next(c for c in claims(recs, ["Tops"]) if c["claim"] == "JTLN (fc7OT) beats joint fine-tuning")
    d = np.subtract(a, b)
    assert claim["mean_diff"] == pytest.approx(d.mean(), rel=1e-12)
    assert claim["p_t"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)
    better, worse = PAPER_TABLE2["Boeing"]["jtln_ot"], PAPER_TABLE2["Boeing"]["joint"]
    # the paper's effect on the scale of errors removed: its share of joint's errors, applied to our joint's errors
    margin = (better - worse) / (1 - worse) * (1 - np.mean(b))
    assert claim["margin"] == pytest.approx(margin, rel=1e-12) and claim["paper_diff"] == pytest.approx(better - worse, abs=1e-6)
    odds = lambda p: np.log(p / (1 - p))  # noqa: E731
    shifted = 1 / (1 + np.exp(-(odds(np.mean(b)) + odds(better) - odds(worse))))
    assert claim["margin_log_odds"] == pytest.approx(shifted - np.mean(b), rel=1e-10)
    assert claim["p_margin"] == pytest.approx(sps.ttest_1samp(d - margin, 0, alternative="less").pvalue, rel=1e-10)
    assert claim["p_margin"] == pytest.approx(DescrStatsW(d).ttest_mean(margin, alternative="smaller")[1], rel=1e-12)
    sd = d.std(ddof=1)
    # the power of the rule that decides: the two-sided test at Holm's first-step level, alpha over the family's 2 x 8 tests
    m = 2 * sum("p_t" in c for c in claims(recs, ["Tops"]))
    assert claim["power_level"] == 0.05 / m
    assert claim["power"] == pytest.approx(TTestPower().power(margin / sd, 6, 0.05 / m), rel=1e-10)
    n = claim["seeds_needed"]
    assert power_to_detect(margin, sd, n, 0.05 / m) >= 0.8 > power_to_detect(margin, sd, n - 1, 0.05 / m)
    # the detectable difference is the one the test finds with 80% power
    mde = detectable_difference(sd, 6)
    assert power_to_detect(mde, sd, 6) == pytest.approx(0.8, abs=1e-6)
    n = seeds_needed(mde * 1.5, sd)
    assert power_to_detect(mde * 1.5, sd, n) >= 0.8 > power_to_detect(mde * 1.5, sd, n - 1)
    assert seeds_needed(100 * sd, sd) == 2  # statsmodels' solver finds no solution here


def test_pooled_mcnemar_is_the_exact_test_of_the_summed_discordant_pairs():
    """Stratified by seed: under the null each seed's "a alone right" is binomial(n_s, 1/2), so their sum is binomial(sum n_s,
    1/2); checked against scipy, and against the one-stratum McNemar test."""
    from reproduce.stats import mcnemar, pooled_mcnemar

    tables = [{"only_a_correct": 3, "only_b_correct": 1}, {"only_a_correct": 5, "only_b_correct": 2},
              {"only_a_correct": 0, "only_b_correct": 0}]
    pooled = pooled_mcnemar(tables)
    assert (pooled["only_a_correct"], pooled["only_b_correct"]) == (8, 3)
    assert pooled["p"] == pytest.approx(sps.binomtest(8, 11, 0.5).pvalue, rel=1e-12)
    one = mcnemar([1, 1, 0, 2], [0, 1, 1, 0], [1, 1, 1, 2])
    assert pooled_mcnemar([one])["p"] == one["p"] and pooled_mcnemar([])["p"] == 1.0


def test_p_values_and_differences_print_as_a_reader_trusts():
    from reproduce.tables import _ci, _p, _signed

    assert _p(7.4e-06) == "$<$0.001" and _p(0.049) == "0.049" and _p(0.0502) == "0.0502" and _p(0.05) == "0.050"
    assert _p(0.12345) == "0.123" and _p(None) == "--"
    assert _signed(-0.00001) == "+0.0000" and _signed(-0.0001) == "-0.0001" and _ci([-0.00002, 0.01]) == "[+0.0000, +0.0100]"


def test_probability_of_improvement_and_its_exact_interval():
    p, (low, high) = probability_of_improvement([0.6, 0.7, 0.5, 0.5], [0.5, 0.6, 0.6, 0.5])
    assert p == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    # Clopper-Pearson: the lower end with the tie as a loss (2 of 4), the upper with it as a win (3 of 4)
    assert low == pytest.approx(sps.beta.ppf(0.025, 2, 3), rel=1e-9) and high == pytest.approx(sps.beta.ppf(0.975, 4, 1), rel=1e-9)
    # six seeds that all go one way claim no certainty: 6 of 6 gives [0.025^(1/6), 1] = [0.54, 1], and 0 of 6 its mirror
    p, (low, high) = probability_of_improvement([1] * 6, [0] * 6)
    assert p == 1.0 and low == pytest.approx(0.025 ** (1 / 6), rel=1e-9) and high == 1.0
    p, (low, high) = probability_of_improvement([0] * 6, [1] * 6)
    assert p == 0.0 and low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 6), rel=1e-9)


@pytest.mark.parametrize("n", [2, 3, 6, 10, 30])
def test_power_and_seeds_needed_are_never_nan(n):
    """Effects of up to 1000 standard deviations (statsmodels and scipy's lower tail give NaN at 4.7 with 6 seeds)."""
    from statsmodels.stats.power import TTestPower

    for size in np.geomspace(1e-3, 1e3, 61):
        power = power_to_detect(size, 1.0, n)
        assert np.isfinite(power) and 0 < power <= 1, (size, n, power)
        expected = TTestPower().power(effect_size=size, nobs=n, alpha=0.05, alternative="two-sided")
        if np.isfinite(expected):
            assert power == pytest.approx(expected, abs=1e-9), (size, n)
        if size >= 0.05:
            needed = seeds_needed(size, 1.0)
            assert isinstance(needed, int) and needed >= 2 and power_to_detect(size, 1.0, needed) >= 0.8
    assert power_to_detect(4.7, 1.0, 6) == pytest.approx(1.0, abs=1e-9) and power_to_detect(5.4, 1.0, 6) == pytest.approx(1.0)


def test_equal_counts_of_correct_images_tie_exactly():
    """Accuracies come from counts, so that two runs with the same count tie (a float32 mean could break the tie)."""
    from reproduce.stats import compare, seed_accuracy

    labels = list(range(7)) * 13
    a = make_record("Tops", "joint", 0, None, predictions=labels[:-3] + [0, 0, 0], labels=labels)
    a["accuracy"] = float(np.float32(88 / 91))  # as torch's float32 mean stores it
    b = make_record("Tops", "jtln_ot", 0, 88 / 91, predictions=[0, 0, 0] + labels[3:-1] + [0], labels=labels)
    assert seed_accuracy(a) == seed_accuracy(b) == 88 / 91 and a["accuracy"] != b["accuracy"]
    row = compare({"joint": {0: a}, "jtln_ot": {0: b}}, "joint", "jtln_ot", "Tops")
    assert row["differences"] == [0.0]


def test_bold_marks_the_best_and_those_not_worse_or_nothing():
    clear = records({"jtln_mmd": 0.08, "jtln_ot": 0.079}, 0.002)
    assert not_worse_than_best(clear, "Tops", PAPER) == {"jtln_mmd", "jtln_ot"}
    assert not_worse_than_best(records({}, 0.03), "Tops", PAPER) == set()


GOLDEN_CLAIMS = "\n".join([
    r"\begin{table}[t]",
    r"\centering",
    r"\caption{toy}",
    r"\small",
    r"\begin{tabular}{llrrrrcrrrl}",
    r"\toprule",
    r"Claim (from the paper's Table 2) & Dataset (role) & Paper $\Delta$ & Paper's errors removed & Margin here & Our $\Delta$ & "
    r"95\% CI & $p_t$ (Holm, all claims) & $p^{\mathrm{margin}}$ (Holm, all claims) & Power & Verdict \\",
    r"\midrule",
    r"JTLN (fc7OT) beats joint fine-tuning & Tops (Boeing) & +0.0041 & 0.9\% & +0.0034 & +0.0075 & [-0.0005, +0.0155] & 0.115 & "
    r"0.899 & 0.09 & inconclusive \\",
    r"joint beats consecutive fine-tuning & Tops (Boeing) & +0.0109 & 2.3\% & -- & -- & -- & -- & -- & -- & not run \\",
    r"\bottomrule",
    r"\end{tabular}",
    r"\end{table}",
    r"",
])


def test_claims_latex_golden():
    """Differences 0.015, 0.005, 0.005, 0.005: mean 0.0075, sd 0.005, t = 3.0 on 3 df (p = 0.058), 95% CI 0.0075 +- 3.182 * 0.0025.
    The paper's +0.0041 removed 0.0041 / (1 - 0.5395) = 0.89% of joint's errors: here, with joint at 0.615, a margin of
    0.00343; power against it at Holm's first-step level 0.05 / 2: noncentral t with 3 df and shift 0.686 * 2 beyond
    +-t_{0.9875, 3}, 0.090 (scipy)."""
    from reproduce.tables import claims_latex

    joint = [0.60, 0.61, 0.62, 0.63]
    ot = [0.615, 0.615, 0.625, 0.635]
    recs = [make_record("Tops", m, s, x) for m, xs in (("joint", joint), ("jtln_ot", ot)) for s, x in enumerate(xs)]
    wanted = ("JTLN (fc7OT) beats joint fine-tuning", "joint beats consecutive fine-tuning")
    chosen = [c for c in claims(recs, ["Tops"]) if c["claim"] in wanted]
    margin = 0.0041 / (1 - 0.5395) * (1 - 0.615)
    # the only claim tested, with its two tests one family: Holm doubles the smaller p and keeps the larger
    p_margin = sps.t.cdf((0.0075 - margin) / 0.0025, 3)
    assert chosen[0]["p_t_holm"] == pytest.approx(2 * 2 * sps.t.sf(3.0, 3), rel=1e-9)
    assert chosen[0]["p_margin_holm"] == pytest.approx(p_margin, rel=1e-6) and p_margin > 2 * 2 * sps.t.sf(3.0, 3)
    c, shift = sps.t.ppf(1 - 0.025 / 2, 3), margin / 0.005 * 2
    assert chosen[0]["power"] == pytest.approx(sps.nct.sf(c, 3, shift) + sps.nct.sf(c, 3, -shift), rel=1e-9)
    assert claims_latex(chosen, "toy") == GOLDEN_CLAIMS


def test_one_seed_has_no_spread_and_so_no_power_nor_seeds_needed():
    """A profile with one seed reaches the claims table (tests/test_extending.py runs one): nothing to say, not a crash."""
    from reproduce.stats import paired, power_to_detect, seeds_needed

    one = paired([0.7], [0.6])
    assert one["sd_diff"] is None and one["n"] == 1
    assert seeds_needed(0.05, one["sd_diff"]) is None and power_to_detect(0.05, one["sd_diff"], one["n"]) is None


def test_no_verdict_from_too_few_seeds_or_from_predictions_at_chance():
    """Two seeds, or a method whose test predictions are not above chance (an exact binomial test of the pooled counts),
    read "too few seeds" / "at chance" in the claims and beyond the paper, whatever the tests say."""
    from reproduce.stats import above_chance, compare_beyond
    from tests.test_reproduce import make_record

    def recs(accuracies, seeds):
        out = [make_record("Tops", m, s, accuracies[m] + 0.01 * s, n_test=400) for m in accuracies for s in seeds]
        for r in out:
            r["target_classes"] = ["a", "b", "c", "d"]  # chance: 0.25
        return out

    good = {"joint": 0.60, "jtln_ot": 0.70, "jtln_mmd": 0.70, "jtln_dynamic": 0.75}
    assert {c["verdict"] for c in claims(recs(good, [0, 1]), ["Tops"]) if "p_t" in c} == {"too few seeds"}
    assert "too few seeds" not in {c["verdict"] for c in claims(recs(good, [0, 1, 2]), ["Tops"])}
    chance = {**good, "joint": 0.24}
    verdicts = {(c["better"], c["worse"]): c["verdict"] for c in claims(recs(chance, [0, 1, 2]), ["Tops"]) if "p_t" in c}
    assert verdicts[("jtln_ot", "joint")] == "at chance" and verdicts[("jtln_ot", "jtln_mmd")] != "at chance"
    assert {r["verdict"] for r in compare_beyond(recs(chance, [0, 1, 2])) if r["b"] == "joint"} == {"at chance"}
    # 26% of 1,200 pooled predictions: not significantly above a chance of 25% (one-sided p 0.21); 28%: above it (p 0.008)
    assert not above_chance(recs({"joint": 0.25}, [0, 1, 2])) and above_chance(recs({"joint": 0.27}, [0, 1, 2]))
