"""Paired statistics over seeds: t-test, Wilcoxon, Holm, confidence intervals, McNemar; and the paper's claims.

Pure functions of records.  Runs of two methods are paired by seed (same
split, same data order seed), so each comparison is a paired test.
"""

import numpy as np
from scipy import stats

BASELINES = ("target_only", "consecutive", "joint")
JTLN = ("jtln_mmd", "jtln_ot")
ALPHA = 0.05


def comparisons(methods):
    """Each method against joint fine-tuning; each JTLN variant against each baseline; the two JTLN costs."""
    pairs = [(m, "joint") for m in methods if m != "joint"]
    pairs += [(j, b) for j in JTLN for b in BASELINES if j in methods and b in methods]
    pairs += [("joint", "consecutive"), ("consecutive", "target_only"), ("jtln_mmd", "jtln_ot")]
    present = [p for p in pairs if p[0] in methods and p[1] in methods]
    return list(dict.fromkeys(present))


def holm(p_values):
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def paired(a, b, confidence=0.95):
    """Paired comparison of accuracies ``a`` and ``b`` (same seeds, same order)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return {"n": n, "mean_diff": mean, "ci95": [None, None], "t": None, "p_t": None, "p_wilcoxon": None}
    se = d.std(ddof=1) / np.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * se)
    if se == 0:
        t, p_t = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        result = stats.ttest_rel(a, b)
        t, p_t = float(result.statistic), float(result.pvalue)
    p_w = 1.0 if np.all(d == 0) else float(stats.wilcoxon(a, b).pvalue)
    return {"n": n, "mean_diff": mean, "ci95": [mean - half, mean + half], "t": t, "p_t": p_t, "p_wilcoxon": p_w}


def mcnemar(pred_a, pred_b, labels):
    """Exact McNemar test on two classifiers' test predictions: binomial test on the discordant pairs."""
    a = np.asarray(pred_a) == np.asarray(labels)
    b = np.asarray(pred_b) == np.asarray(labels)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p": p}


def by_cell(records):
    """``{dataset: {method: {seed: record}}}``."""
    cells = {}
    for r in records:
        cells.setdefault(r["dataset"], {}).setdefault(r["method"], {})[r["seed"]] = r
    return cells


def compare_all(records):
    """Every comparison of :func:`comparisons` on every dataset, Holm-corrected within each dataset."""
    results = []
    for dataset, methods in by_cell(records).items():
        rows = []
        for a, b in comparisons(list(methods)):
            seeds = sorted(set(methods[a]) & set(methods[b]))
            row = {"dataset": dataset, "a": a, "b": b, "seeds": seeds,
                   **paired([methods[a][s]["accuracy"] for s in seeds], [methods[b][s]["accuracy"] for s in seeds])}
            row["mcnemar"] = {
                s: mcnemar(methods[a][s]["predictions"], methods[b][s]["predictions"], methods[a][s]["labels"])
                for s in seeds if methods[a][s]["labels"] == methods[b][s]["labels"]
            }
            rows.append(row)
        p = [r["p_t"] if r["p_t"] is not None else 1.0 for r in rows]
        for row, adjusted in zip(rows, holm(p) if rows else []):
            row["p_holm"] = adjusted
        results += rows
    return results


def verdict(row, better):
    """'supported' if ``better`` wins significantly (Holm-corrected t-test), 'contradicted' if it loses significantly."""
    if row is None or row.get("p_holm") is None:
        return "inconclusive"
    sign = 1 if row["a"] == better else -1
    if row["p_holm"] < ALPHA:
        return "supported" if sign * row["mean_diff"] > 0 else "contradicted"
    return "inconclusive"


def claims(results, groups):
    """The paper's claims from Table 2, each with a verdict at alpha = 0.05 after Holm correction.

    ``groups[0]`` plays Boeing's role and ``groups[1]`` Airbus's (the paper's column order).
    """
    index = {(r["dataset"], frozenset((r["a"], r["b"]))): r for r in results}

    def row(dataset, a, b):
        return index.get((dataset, frozenset((a, b))))

    out = []
    for dataset in groups:
        for j, name in (("jtln_mmd", "JTLN (fc7MKMMD)"), ("jtln_ot", "JTLN (fc7OT)")):
            out.append({"claim": f"{name} beats joint fine-tuning", "dataset": dataset,
                        "verdict": verdict(row(dataset, j, "joint"), j), "comparison": [j, "joint"]})
        out.append({"claim": "joint beats consecutive fine-tuning", "dataset": dataset,
                    "verdict": verdict(row(dataset, "joint", "consecutive"), "joint"), "comparison": ["joint", "consecutive"]})
        out.append({"claim": "consecutive beats target-only fine-tuning", "dataset": dataset,
                    "verdict": verdict(row(dataset, "consecutive", "target_only"), "consecutive"),
                    "comparison": ["consecutive", "target_only"]})
    roles = [(groups[0], "jtln_ot", "the OT cost beats the MK-MMD cost (paper: on Boeing)")]
    if len(groups) > 1:
        roles.append((groups[1], "jtln_mmd", "the MK-MMD cost beats the OT cost (paper: on Airbus)"))
    for dataset, better, text in roles:
        out.append({"claim": text, "dataset": dataset, "verdict": verdict(row(dataset, "jtln_mmd", "jtln_ot"), better),
                    "comparison": ["jtln_mmd", "jtln_ot"]})
    return out
