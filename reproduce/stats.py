"""Paired statistics over seeds, and the paper's claims tested against the paper's own effect sizes.

Pure functions of records.  Runs of two methods are paired by seed (every
method of a seed sees the same drawn images), so each comparison is paired.

* :func:`compare_all` — every unordered pair of methods once per dataset
  (exploratory: Holm within each dataset), with the mean difference and its
  95% interval, the paired t-test, one exact McNemar test pooling the seeds
  (:func:`pooled_mcnemar`), the probability of improvement with an exact
  binomial interval, and the smallest difference the seeds could detect.
  (No Wilcoxon signed-rank test: with 6 seeds its smallest two-sided p is
  0.031, which no Holm correction over several pairs lets reject.)
* :func:`claims` — the paper's claims (:data:`CLAIMS`), each with the
  paper's effect carried to this benchmark as a margin on the scale of
  errors removed (:func:`relative_margin`; the log-odds scale as a
  sensitivity check): *supported*, *contradicted*, *paper's effect ruled
  out* or *inconclusive* (:func:`verdict`) — or none, *too few seeds* or
  *at chance* (:func:`unsupported`) —, and the power of the test that
  decides, at the level Holm's first step tests it.  Both tests of every
  claim on every dataset form one Holm family, so a verdict's family-wise
  error is at most ``ALPHA``.

Accuracies are compared as counts of correct test images
(:func:`seed_accuracy`), so that two runs with the same count tie exactly.
The tests come from statsmodels (``multipletests``, ``DescrStatsW.ttest_mean``,
``TTestPower``) and scipy; the probability of improvement is the
rliable-style share of paired seeds where ``a`` beats ``b`` (ties count one half).
"""

from itertools import combinations

import numpy as np
from scipy import stats

from jtln.methods import METHODS, method_order
from reproduce.paper import CLAIMS, DEFAULT_PLAYS, PAPER_TABLE2, roles  # noqa: F401 -- the paper's facts, read here
from reproduce.records import correct_count

#: the tests' level and the power the seeds are planned for
ALPHA = 0.05
POWER = 0.8
#: fewer seeds than this support no verdict (a paired t-test on 2 seeds has 1 degree of freedom)
MIN_SEEDS = 3


def seed_accuracy(record):
    """A seed record's test accuracy from its count of correct test images: equal counts give equal floats (ties are exact)."""
    return correct_count(record["predictions"], record["labels"]) / len(record["labels"])


def comparisons(methods):
    """Each unordered pair of ``methods`` once, in the tables' row order (``a`` above ``b``)."""
    return list(combinations(method_order(set(methods)), 2))


def holm(p_values):
    """Holm-Bonferroni adjusted p-values; None stays None.

    Holm's step-down: the i-th smallest of m p-values times m - i (from 0),
    made non-decreasing, at most 1.  The arithmetic of statsmodels'
    ``multipletests(method="holm")``, which tests/test_stats.py holds it to
    bit for bit; not that function, which runs ``gc.collect()`` at every
    call (statsmodels 0.15: 0.3 s in a process holding a network, seconds
    per table).
    """
    present = [i for i, p in enumerate(p_values) if p is not None]
    adjusted = [None] * len(p_values)
    if present:
        p = np.array([p_values[i] for i in present], dtype=float)
        order = np.argsort(p)
        stepped = np.minimum(np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)), 1.0)
        for i, value in zip(np.asarray(present)[order], stepped):
            adjusted[i] = float(value)
    return adjusted


def probability_of_improvement(a, b, confidence=0.95):
    """P(A > B) over paired seeds (ties count 1/2), and an exact binomial (Clopper-Pearson) interval.

    Each seed is a Bernoulli trial "A wins".  The interval's lower end treats
    ties as losses and its upper end as wins, so it covers either reading; with
    6 wins of 6 it is [0.54, 1], not the [1, 1] a bootstrap of the seeds gives.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n, wins, ties = len(a), int(np.sum(a > b)), int(np.sum(a == b))
    low = stats.binomtest(wins, n).proportion_ci(confidence, method="exact").low
    high = stats.binomtest(wins + ties, n).proportion_ci(confidence, method="exact").high
    return (wins + ties / 2) / n, [float(low), float(high)]


def detectable_difference(sd, n, alpha=ALPHA, power=POWER):
    """The smallest mean paired difference a two-sided paired t-test over ``n`` seeds detects with ``power`` (statsmodels)."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not sd > 0:
        return None
    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided") * sd)


def power_to_detect(effect, sd, n, alpha=ALPHA):
    """The power of the two-sided paired t-test over ``n`` seeds against a true mean difference ``effect``.

    With :math:`t \\sim` noncentral t(n - 1, |effect| / sd * sqrt(n)) and
    critical value c, the power is :math:`P(t > c) + P(t < -c)`, both written
    as upper tails (scipy's ``nct.sf``, the second with the noncentrality
    negated).  statsmodels' ``TTestPower.power`` and scipy's ``nct.cdf`` return
    NaN for some large effects (4.7 standard deviations with 6 seeds); the
    upper tails do not.  A non-finite result raises.
    """
    if n < 2 or sd is None or not sd > 0:  # one seed has no spread: nothing to say
        return None
    critical, shift = stats.t.ppf(1 - alpha / 2, n - 1), abs(effect) / sd * np.sqrt(n)
    power = float(stats.nct.sf(critical, n - 1, shift) + stats.nct.sf(critical, n - 1, -shift))
    if not np.isfinite(power):
        raise FloatingPointError(f"the power for effect {effect}, sd {sd} and {n} seeds is {power}")
    return min(power, 1.0)


def seeds_needed(effect, sd, alpha=ALPHA, power=POWER):
    """The fewest seeds (>= 2) for the two-sided paired t-test to detect ``effect`` with ``power`` at the observed spread ``sd``.

    statsmodels' ``solve_power`` rounded up; where it finds no solution (very
    large effects), the smallest n whose power (:func:`power_to_detect`) is enough.
    """
    import math
    import warnings

    from statsmodels.stats.power import TTestPower
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    if sd is None or not sd > 0 or effect == 0:  # one seed has no spread: nothing to say
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # no solution: handled below
        n = TTestPower().solve_power(effect_size=abs(effect) / sd, nobs=None, alpha=alpha, power=power, alternative="two-sided")
    n = max(2, math.ceil(float(n) - 1e-9)) if np.isfinite(n) else 2
    while power_to_detect(effect, sd, n, alpha) < power:
        n += 1
    while n > 2 and power_to_detect(effect, sd, n - 1, alpha) >= power:
        n -= 1
    return n


def t_interval(values, confidence=0.95, bounds=(-np.inf, np.inf)):
    """The mean of ``values`` and its two-sided Student-t interval at ``confidence``, clipped to ``bounds``:
    ``(mean, [low, high])``; the interval is ``[None, None]`` below two values (and the mean None for none)."""
    v = np.asarray(values, float)
    mean = float(v.mean()) if len(v) else None
    if len(v) < 2:
        return mean, [None, None]
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * float(v.std(ddof=1)) / np.sqrt(len(v)))
    low, high = np.clip([mean - half, mean + half], *bounds)
    return mean, [float(low), float(high)]


def paired(a, b, confidence=0.95):
    """Paired comparison of accuracies ``a`` and ``b`` (same seeds, same order)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    n = len(d)
    mean = float(d.mean()) if n else None
    result = {"n": n, "mean_diff": mean, "sd_diff": None, "ci95": [None, None], "t": None, "p_t": None,
              "p_improvement": None, "p_improvement_ci95": [None, None], "detectable": None}
    if n < 2:
        return result
    sd = float(d.std(ddof=1))
    if sd == 0:
        t, p_t = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        test = stats.ttest_rel(a, b)
        t, p_t = float(test.statistic), float(test.pvalue)
    p_improvement, interval = probability_of_improvement(a, b)
    result.update(sd_diff=sd, ci95=t_interval(d, confidence)[1], t=t, p_t=p_t,
                  p_improvement=p_improvement, p_improvement_ci95=interval, detectable=detectable_difference(sd, n))
    return result


def below_margin(a, b, margin):
    """One-sided paired t-test of H0: mean(a - b) >= ``margin`` against H1: it is smaller (statsmodels ``ttest_mean``).

    Rejecting it rules out an effect as large as ``margin`` (the one-sided
    half of a TOST equivalence test, at the paper's effect size).
    """
    from statsmodels.stats.weightstats import DescrStatsW

    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return None
    if d.std(ddof=1) == 0:
        return 0.0 if d.mean() < margin else 1.0
    return float(DescrStatsW(d).ttest_mean(margin, alternative="smaller")[1])


def mcnemar(pred_a, pred_b, labels):
    """Exact McNemar test on two classifiers' test predictions: binomial test on the discordant pairs."""
    a = np.asarray(pred_a) == np.asarray(labels)
    b = np.asarray(pred_b) == np.asarray(labels)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p": p}


def pooled_mcnemar(tables):
    """One exact test over seeds of McNemar's tables (``{"only_a_correct", "only_b_correct"}`` each): the stratified
    (Cochran-Mantel-Haenszel) McNemar test for matched pairs, exact.

    Given each seed's discordant count, "a alone correct" is binomial(n_s,
    1/2) under H0 in every seed, so their sum over seeds is binomial(sum
    n_s, 1/2): a two-sided exact binomial test of the pooled counts.
    """
    only_a = sum(t["only_a_correct"] for t in tables)
    discordant = only_a + sum(t["only_b_correct"] for t in tables)
    p = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    return {"only_a_correct": only_a, "only_b_correct": discordant - only_a, "p": p}


def by_cell(records):
    """``{dataset: {method: {seed: record}}}``."""
    cells = {}
    for r in records:
        cells.setdefault(r["dataset"], {}).setdefault(r["method"], {})[r["seed"]] = r
    return cells


def compare(methods, a, b, dataset):
    """Methods ``a`` and ``b`` paired over their common seeds: their accuracies, the differences, :func:`paired`, McNemar per seed."""
    seeds = sorted(set(methods[a]) & set(methods[b]))
    acc_a, acc_b = [seed_accuracy(methods[a][s]) for s in seeds], [seed_accuracy(methods[b][s]) for s in seeds]
    row = {"dataset": dataset, "a": a, "b": b, "seeds": seeds, "accuracies_a": acc_a, "accuracies_b": acc_b,
           "differences": [x - y for x, y in zip(acc_a, acc_b)], **paired(acc_a, acc_b)}
    row["mcnemar"] = {s: mcnemar(methods[a][s]["predictions"], methods[b][s]["predictions"], methods[a][s]["labels"])
                      for s in seeds if methods[a][s]["labels"] == methods[b][s]["labels"]}
    row["mcnemar_pooled"] = pooled_mcnemar(list(row["mcnemar"].values()))
    return row


def compare_all(records):
    """Every unordered pair of methods once per dataset, Holm-corrected within each dataset (an exploratory family)."""
    results = []
    for dataset, methods in by_cell(records).items():
        rows = [compare(methods, a, b, dataset) for a, b in comparisons(methods)]
        for row, adjusted in zip(rows, holm([r["p_t"] for r in rows])):
            row["p_holm"] = adjusted
        results += rows
    return results


def relative_margin(paper_better, paper_worse, worse):
    """The paper's effect carried to a benchmark where the worse method reaches accuracy ``worse``: the share of the worse
    method's errors that the better removes in the paper's columns, ``(paper_better - paper_worse) / (1 - paper_worse)``,
    times this benchmark's errors ``1 - worse`` (a difference in accuracy)."""
    return (paper_better - paper_worse) / (1 - paper_worse) * (1 - worse)


def log_odds_margin(paper_better, paper_worse, worse):
    """The paper's effect as a difference of log-odds, added to ``worse``'s: the accuracy difference it gives here (the
    sensitivity check of :func:`relative_margin`)."""
    from scipy.special import expit, logit

    return float(expit(logit(worse) + logit(paper_better) - logit(paper_worse)) - worse)


def above_chance(records, alpha=ALPHA):
    """Whether a method's test predictions over its seeds are right more often than chance (one over its target classes):
    a one-sided exact binomial test of the pooled correct counts (scipy's ``binomtest``)."""
    correct = sum(correct_count(r["predictions"], r["labels"]) for r in records)
    total = sum(len(r["labels"]) for r in records)
    chance = 1 / len(records[0]["target_classes"]) if records and records[0].get("target_classes") else None
    if chance is None or total == 0:
        return True  # nothing to say: no class count recorded
    return bool(stats.binomtest(correct, total, chance, alternative="greater").pvalue < alpha)


def unsupported(methods, a, b, n):
    """Why the comparison of ``a`` and ``b`` over ``n`` seeds can carry no verdict, or None: "too few seeds" (below
    :data:`MIN_SEEDS`) or "at chance" (either method's predictions not above chance, :func:`above_chance`)."""
    if n < MIN_SEEDS:
        return "too few seeds"
    if not all(above_chance(list(methods[m].values())) for m in (a, b)):
        return "at chance"
    return None


def verdict(diff, p_holm, p_margin_holm, alpha=ALPHA):
    """The verdict on a claim "better beats worse" from our mean difference ``diff`` (better - worse) and Holm-adjusted p-values.

    *supported*: the two-sided paired t-test is significant and ``diff > 0``;
    *contradicted*: significant and ``diff < 0``; *paper's effect ruled out*:
    the one-sided test against the paper's effect (:func:`below_margin`)
    rejects it; *inconclusive*: none of these.
    """
    if p_holm is not None and p_holm < alpha and diff != 0:
        return "supported" if diff > 0 else "contradicted"
    if p_margin_holm is not None and p_margin_holm < alpha:
        return "paper's effect ruled out"
    return "inconclusive"


def claims(records, groups, plays=DEFAULT_PLAYS):
    """Every claim of :data:`CLAIMS` on each dataset that plays its paper column's role (:func:`roles`); its two tests, on
    every claim and dataset, one Holm family.

    The margin of each claim is the paper's effect on the scale of errors
    removed (:func:`relative_margin`, at our worse method's mean accuracy);
    the paper's absolute difference is kept as ``paper_diff``.  The same
    verdicts with the log-odds margin (:func:`log_odds_margin`, its own Holm
    family) are ``verdict_log_odds``.  ``power``: the two-sided paired
    t-test's power against the margin at Holm's first-step level
    ``ALPHA / m`` (conservative: ``m`` the family's tests), and
    ``seeds_needed`` for 80% of it at that level.  A claim about a method
    that was not run reads "not run".
    """
    cells = by_cell(records)
    out = []
    for text, better, worse, columns in CLAIMS:
        for dataset, column in roles(groups, plays):
            if column not in columns:
                continue
            paper_better, paper_worse = PAPER_TABLE2[column][better], PAPER_TABLE2[column][worse]
            entry = {"claim": text, "dataset": dataset, "paper_column": column, "better": better, "worse": worse,
                     "paper_diff": round(paper_better - paper_worse, 6),
                     "paper_error_reduction": (paper_better - paper_worse) / (1 - paper_worse)}
            methods = cells.get(dataset, {})
            if better not in methods or worse not in methods:
                out.append({**entry, "verdict": "not run"})
                continue
            row = compare(methods, better, worse, dataset)
            base = float(np.mean(row["accuracies_b"]))
            margin, margin_log_odds = relative_margin(paper_better, paper_worse, base), log_odds_margin(paper_better, paper_worse, base)
            out.append({**entry, **{k: row[k] for k in ("seeds", "accuracies_a", "accuracies_b", "differences", "n", "mean_diff",
                                                        "sd_diff", "ci95", "p_t", "p_improvement", "p_improvement_ci95",
                                                        "detectable")},
                        "margin": margin, "margin_log_odds": margin_log_odds,
                        "p_margin": below_margin(row["accuracies_a"], row["accuracies_b"], margin),
                        "p_margin_log_odds": below_margin(row["accuracies_a"], row["accuracies_b"], margin_log_odds)})
    tested = [c for c in out if "p_t" in c]
    # one family: the two-sided and the margin test of every claim, so that a verdict's family-wise error is <= ALPHA
    adjusted = holm([c["p_t"] for c in tested] + [c["p_margin"] for c in tested])
    sensitivity = holm([c["p_t"] for c in tested] + [c["p_margin_log_odds"] for c in tested])
    level = ALPHA / (2 * len(tested)) if tested else ALPHA  # Holm's first step: the level every test must first meet
    for i, c in enumerate(tested):
        c["p_t_holm"], c["p_margin_holm"] = adjusted[i], adjusted[len(tested) + i]
        c["p_margin_log_odds_holm"] = sensitivity[len(tested) + i]
        refused = unsupported(cells[c["dataset"]], c["better"], c["worse"], c["n"])
        c["verdict"] = refused or verdict(c["mean_diff"], c["p_t_holm"], c["p_margin_holm"])
        c["verdict_log_odds"] = refused or verdict(c["mean_diff"], sensitivity[i], c["p_margin_log_odds_holm"])
        c["power_level"] = level
        c["power"] = power_to_detect(c["margin"], c["sd_diff"], c["n"], alpha=level)
        c["seeds_needed"] = seeds_needed(c["margin"], c["sd_diff"], alpha=level)
    return out


def not_worse_than_best(records, dataset, candidates):
    """The best mean among ``candidates`` on ``dataset`` and every one not significantly worse (paired t-test, Holm over the rivals).

    Returns an empty set when every candidate is in it: nothing stands out.
    """
    methods = by_cell(records).get(dataset, {})
    present = [m for m in candidates if m in methods]
    if len(present) < 2:
        return set(present)
    means = {m: np.mean([seed_accuracy(r) for r in methods[m].values()]) for m in present}
    best = max(present, key=lambda m: (means[m], -present.index(m)))
    rivals = [m for m in present if m != best]
    p = holm([compare(methods, best, m, dataset)["p_t"] for m in rivals])
    kept = {best} | {m for m, q in zip(rivals, p) if q is None or q >= ALPHA}
    return set() if kept == set(present) else kept


def paper_methods(records):
    return [r for r in records if METHODS[r["method"]].paper]


#: what each method beyond the paper is compared with: the paper's two JTLN variants and joint fine-tuning
BEYOND_RIVALS = ("jtln_mmd", "jtln_ot", "joint")


def compare_beyond(records):
    """Each method beyond the paper against each of :data:`BEYOND_RIVALS`, per dataset, as the claim "A beats B".

    One family per dataset, Holm-corrected; a verdict each (:func:`verdict`
    without a paper margin: *supported*, *contradicted* or *inconclusive*).
    """
    results = []
    for dataset, methods in by_cell(records).items():
        pairs = [(a, b) for a in method_order(methods) if METHODS[a].block == "beyond" for b in BEYOND_RIVALS if b in methods]
        rows = [compare(methods, a, b, dataset) for a, b in pairs]
        for row, adjusted in zip(rows, holm([r["p_t"] for r in rows])):
            row["p_holm"] = adjusted
            row["verdict"] = unsupported(methods, row["a"], row["b"], row["n"]) or verdict(row["mean_diff"], adjusted, None)
        results += rows
    return results
