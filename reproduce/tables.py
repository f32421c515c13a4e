"""Table 2, the statistics and the claims as LaTeX: pure functions of records (and of the stats computed from them)."""

import statistics
from collections import Counter

import numpy as np

from jtln.methods import METHODS, display_name, method_order
from reproduce.stats import not_worse_than_best, seed_accuracy


def per_seed(records):
    """``{dataset: {method: {seed: test accuracy}}}`` (:func:`reproduce.stats.seed_accuracy`), seeds in increasing order."""
    cells = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        cells.setdefault(r["dataset"], {}).setdefault(r["method"], {})[r["seed"]] = seed_accuracy(r)
    return cells


def summary(records):
    """``{dataset: {method: (mean, std (ddof=1), n)}}`` of test accuracy over seeds."""
    return {d: {m: (float(np.mean(list(v.values()))), float(np.std(list(v.values()), ddof=1)) if len(v) > 1 else 0.0, len(v))
                for m, v in ms.items()} for d, ms in per_seed(records).items()}


def table2_rows(records, datasets, paper_values=None):
    """Table 2 as data: one row per method in the tables' order, a cell per dataset (mean, std, n, the accuracy of each seed,
    bold, the paper's value); the mean and std recompute exactly from the seeds' accuracies.

    Bold: among the paper's methods, the best mean and every method not
    significantly worse than it (paired t-test, Holm over the rivals), or
    nothing when no method stands out (:func:`reproduce.stats.not_worse_than_best`).
    The LaTeX table and the report's HTML table are both made from these rows.
    """
    s, seeds = summary(records), per_seed(records)
    methods = method_order({m for d in datasets for m in s.get(d, {})})
    bold = {d: not_worse_than_best(records, d, [m for m in methods if METHODS[m].paper]) for d in datasets}
    rows = []
    for m in methods:
        cells = {}
        for d in datasets:
            mean, std, n = s.get(d, {}).get(m, (None, None, 0))
            paper = (paper_values or {}).get(d, {}).get(m)
            cells[d] = {"mean": mean, "std": std, "n": n, "per_seed": seeds.get(d, {}).get(m, {}), "bold": m in bold[d], "paper": paper}
        rows.append({"method": m, "name": display_name(m), "paper_method": METHODS[m].paper, "block": METHODS[m].block,
                     "cells": cells})
    return rows


def mean_std(cell, pm="±"):
    """A Table 2 cell as text: "--" without runs, the mean alone from one seed, else mean ``pm`` std (four decimals)."""
    if not cell["n"]:
        return "--"
    return f"{cell['mean']:.4f}" if cell["n"] == 1 else f"{cell['mean']:.4f} {pm} {cell['std']:.4f}"


def latex_table(caption, columns, header, body, small=False):
    r"""A booktabs ``table`` float, one line each: ``caption``, the ``tabular`` column spec ``columns``, the ``header`` row
    and the ``body`` lines (rows ending in ``\\``, or rules), ending in a newline."""
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", *([r"\small"] if small else []),
                      rf"\begin{{tabular}}{{{columns}}}", r"\toprule", header, r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def table2_latex(records, datasets, caption, paper_values=None):
    """Rows block by block: the paper's methods with the paper's names; below a rule, "Beyond the paper"; below another, the references.

    Columns: ITL datasets (and the paper's published values beside them, where
    given); cells mean ± std over seeds, bold as :func:`table2_rows` says.
    """
    columns = []
    for d in datasets:
        columns.append(d)
        if paper_values and d in paper_values:
            columns.append(f"{d} (paper)")
    lines = []
    rows = table2_rows(records, datasets, paper_values)
    for i, row in enumerate(rows):
        if i and rows[i - 1]["block"] != row["block"]:
            lines.append(r"\midrule")
        if row["block"] == "beyond" and (i == 0 or rows[i - 1]["block"] != "beyond"):
            lines.append(rf"\multicolumn{{{len(columns) + 1}}}{{l}}{{\textit{{Beyond the paper}}}} \\")
        cells = []
        for d in datasets:
            cell = row["cells"][d]
            text = mean_std(cell, r"$\pm$")
            cells.append(rf"\textbf{{{text}}}" if cell["n"] and cell["bold"] else text)
            if paper_values and d in paper_values:
                cells.append("--" if cell["paper"] is None else f"{cell['paper']:.4f}")
        lines.append(f"{row['name']} & " + " & ".join(cells) + r" \\")
    return latex_table(caption, "l" + "c" * len(columns), "Methods & " + " & ".join(columns) + r" \\", lines)


def level_key(level):
    """Scarcity levels in increasing order, "all" last."""
    return (level == "all", level if level != "all" else 0)


def _spread(values):
    """A searched value over seeds: ``median [min, max]`` of numbers, ``value x count`` of choices."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, mid, high = min(values), statistics.median(values), max(values)
        fmt = (lambda v: f"{v:.3g}") if any(isinstance(v, float) for v in values) else (lambda v: f"{v:g}")
        return fmt(mid) if low == high else f"{fmt(mid)} [{fmt(low)}, {fmt(high)}]"
    return ", ".join(f"{v}$\\times${n}" for v, n in sorted(Counter(map(str, values)).items()))


def hparams_latex(selection, caption):
    """Each (dataset, method, level)'s selections over its seeds (every seed searches for itself): how often each trial won,
    the median validation cross-entropy, the refit's epochs and each searched value as median [min, max] over seeds.

    ``selection``: ``{(dataset, method, level, seed): selected trial}`` (:func:`reproduce.plan.select`), each naming what it
    searched.
    """
    lines = []
    cells = {}
    for (d, m, level, _), r in selection.items():
        cells.setdefault((d, m, level), []).append(r)
    order = {m: i for i, m in enumerate(method_order({m for _, m, _ in cells}))}
    for (d, m, level), chosen in sorted(cells.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], level_key(kv[0][2]))):
        won = ", ".join(f"{t}$\\times${n}" for t, n in sorted(Counter(r["trial"] for r in chosen).items()))
        values = ", ".join(f"{name.replace('_', chr(92) + '_')}={_spread([r['hparams'][name] for r in chosen])}"
                           for name in chosen[0]["searched"]) or "--"
        lines.append(f"{d} & {display_name(m)} & {level} & {len(chosen)} & {won} & "
                     f"{statistics.median(r['val_loss'] for r in chosen):.4f} & {_spread([r['epochs'] for r in chosen])} & "
                     f"{values} \\\\")
    header = r"Dataset & Method & Level & Seeds & Trials won & Val. CE & Refit epochs & Selected hyper-parameters \\"
    return latex_table(caption, "lllrlrll", header, lines, small=True)


def _p(x, alpha=None):
    """A p-value in fixed notation: three decimals, "$<$0.001" below; four where three would round it onto ``alpha`` (a p
    above the level never prints as the level)."""
    if x is None:
        return "--"
    if x < 1e-3:
        return "$<$0.001"
    from reproduce.stats import ALPHA

    alpha = ALPHA if alpha is None else alpha
    return f"{x:.4f}" if round(x, 3) == alpha and x != alpha else f"{x:.3f}"


def _signed(x, digits=4):
    """A signed number with no negative zero: what rounds to zero prints as 0."""
    if x is None:
        return "--"
    text = f"{x:+.{digits}f}"
    return text.replace("-", "+") if float(text) == 0 else text


def _ci(interval, digits=4, sign="+"):
    lo, hi = interval
    if lo is None:
        return "--"
    if sign == "+":
        return f"[{_signed(lo, digits)}, {_signed(hi, digits)}]"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _num(x, fmt):
    return "--" if x is None else format(x, fmt)


def stats_latex(results, caption):
    """Every pair of methods once per dataset: difference, interval, t-test (Holm over the dataset's pairs), the pooled
    McNemar test, probability of improvement, detectable difference."""
    header = (r"Dataset & Comparison (A vs B) & $\Delta$ acc. & 95\% CI & $p_t$ & $p_t$ (Holm, dataset's pairs) & "
              r"$P(A>B)$ [95\% CI] & MDE & $p$ McNemar (seeds pooled) \\")
    lines = []
    for r in results:
        improvement = "--" if r["p_improvement"] is None else f"{r['p_improvement']:.2f} {_ci(r['p_improvement_ci95'], 2, '')}"
        lines.append(f"{r['dataset']} & {display_name(r['a'])} vs {display_name(r['b'])} & {_signed(r['mean_diff'])} & "
                     f"{_ci(r['ci95'])} & {_p(r['p_t'])} & {_p(r.get('p_holm'))} & {improvement} & "
                     f"{_num(r['detectable'], '.4f')} & {_p(r['mcnemar_pooled']['p'])} \\\\")
    return latex_table(caption, "llrcrrcrr", header, lines, small=True)


def beyond_latex(results, caption):
    """Each method beyond the paper against the paper's JTLN and joint fine-tuning: difference, interval, Holm p, verdict."""
    header = (r"Dataset & Comparison (A vs B) & $\Delta$ acc. & 95\% CI & $p_t$ & $p_t$ (Holm, dataset's comparisons) & "
              r"Verdict on ``A beats B'' \\")
    lines = [f"{r['dataset']} & {display_name(r['a'])} vs {display_name(r['b'])} & {_signed(r['mean_diff'])} & "
             f"{_ci(r['ci95'])} & {_p(r['p_t'])} & {_p(r.get('p_holm'))} & {r['verdict']} \\\\" for r in results]
    return latex_table(caption, "llrcrrl", header, lines, small=True)


def claims_latex(claims, caption):
    """Per claim: the paper's difference and the share of errors it removed, the margin it gives here, ours with its 95%
    interval, both tests' p (Holm over all claims), the deciding test's power against the margin, verdict."""
    header = (r"Claim (from the paper's Table 2) & Dataset (role) & Paper $\Delta$ & Paper's errors removed & Margin here & "
              r"Our $\Delta$ & 95\% CI & $p_t$ (Holm, all claims) & $p^{\mathrm{margin}}$ (Holm, all claims) & Power & Verdict \\")
    lines = [f"{c['claim']} & {c['dataset']} ({c['paper_column']}) & {_signed(c['paper_diff'])} & "
             f"{c['paper_error_reduction'] * 100:.1f}\\% & {_signed(c.get('margin'))} & {_signed(c.get('mean_diff'))} & "
             f"{_ci(c.get('ci95', [None, None]))} & {_p(c.get('p_t_holm'))} & {_p(c.get('p_margin_holm'))} & "
             f"{_num(c.get('power'), '.2f')} & {c['verdict']} \\\\" for c in claims]
    return latex_table(caption, "llrrrrcrrrl", header, lines, small=True)


def findings_markdown(table2, claims, beyond, profile_name):
    """``findings.md``: Table 2 and the verdicts in a few lines of Markdown, from the same rows as the LaTeX (nothing typed by hand).

    ``table2``: :func:`table2_rows`; ``claims`` and ``beyond``: :func:`reproduce.stats.claims` and
    :func:`reproduce.stats.compare_beyond`.
    """
    datasets = list(table2[0]["cells"]) if table2 else []
    lines = [f"# What the `{profile_name}` profile found", "",
             "Generated by `python -m reproduce tables` from the run records, as the LaTeX tables beside it.", "",
             "| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for row in table2:
        cells = []
        for d in datasets:
            c = row["cells"][d]
            text = mean_std(c)
            cells.append(f"**{text}**" if c["bold"] else text)
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    tested = [c for c in claims if c["verdict"] != "not run"]
    counts = {v: sum(c["verdict"] == v for c in tested) for v in dict.fromkeys(c["verdict"] for c in tested)}
    if not claims:
        lines += ["", "**The paper's claims**: none tested; no dataset plays one of the paper's columns (`[data] plays`)."]
    else:
        lines += ["", f"**The paper's claims** ({len(tested)} claims on datasets, {2 * len(tested)} tests in one Holm family, "
                  "`claims.tex`): " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + "."]
    for c in tested:
        if c["verdict"] != "inconclusive":
            lines.append(f"- {c['claim']} on {c['dataset']}: {c['verdict']}, {_signed(c['mean_diff'])} "
                         f"{_ci(c['ci95'])} against a margin of {_signed(c['margin'])} (the paper's "
                         f"{c['paper_error_reduction'] * 100:.1f}% of errors removed; {_signed(c['paper_diff'])} there).")
    if beyond:
        counts = {v: sum(r["verdict"] == v for r in beyond) for v in dict.fromkeys(r["verdict"] for r in beyond)}
        lines += ["", f"**Beyond the paper** ({len(beyond)} comparisons, `beyond.tex`): "
                  + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + "."]
        for r in beyond:
            if r["verdict"] != "inconclusive":
                lines.append(f"- {display_name(r['a'])} vs {display_name(r['b'])} on {r['dataset']}: {r['verdict']}, "
                             f"{_signed(r['mean_diff'])} {_ci(r['ci95'])}.")
    return "\n".join(lines) + "\n"
