"""Table 2, the statistics and the claims as LaTeX: pure functions of records (and of the stats computed from them)."""

import numpy as np

from jtln.methods import PAPER_NAMES

#: Table 2 of the paper, as published (multi-class accuracy), shown beside ours for the paper profile.
PAPER_TABLE2 = {
    "Boeing": {"target_only": 0.4796, "consecutive": 0.5286, "joint": 0.5395, "jtln_mmd": 0.5422, "jtln_ot": 0.5436},
    "Airbus": {"target_only": 0.4965, "consecutive": 0.545, "joint": 0.5497, "jtln_mmd": 0.5982, "jtln_ot": 0.5704},
}
METHOD_ORDER = ["target_only", "consecutive", "joint", "jtln_mmd", "jtln_ot"]


def summary(records):
    """``{dataset: {method: (mean, std (ddof=1), n)}}`` of test accuracy over seeds."""
    cells = {}
    for r in records:
        cells.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r["accuracy"])
    return {d: {m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for m, v in ms.items()}
            for d, ms in cells.items()}


def table2_latex(records, datasets, caption, paper_values=None):
    """Rows: the five methods with the paper's names; columns: ITL datasets; cells mean ± std over seeds, best in bold."""
    s = summary(records)
    methods = [m for m in METHOD_ORDER if any(m in s.get(d, {}) for d in datasets)]
    columns = []
    for d in datasets:
        columns.append(d)
        if paper_values and d in paper_values:
            columns.append(f"{d} (paper)")
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}",
             r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             "Methods & " + " & ".join(columns) + r" \\", r"\midrule"]
    best = {d: max((s[d][m][0] for m in methods if m in s.get(d, {})), default=None) for d in datasets}
    for m in methods:
        cells = []
        for d in datasets:
            if m in s.get(d, {}):
                mean, std, _ = s[d][m]
                text = f"{mean:.4f} $\\pm$ {std:.4f}"
                cells.append(rf"\textbf{{{text}}}" if mean == best[d] else text)
            else:
                cells.append("--")
            if paper_values and d in paper_values:
                cells.append(f"{paper_values[d][m]:.4f}")
        lines.append(f"{PAPER_NAMES[m]} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _p(x):
    return "--" if x is None else (f"{x:.2g}" if x >= 1e-3 else f"{x:.1e}")


def stats_latex(results, caption):
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", r"\small", r"\begin{tabular}{llrcrrrr}", r"\toprule",
             r"Dataset & Comparison & $\Delta$ acc. & 95\% CI & $p_t$ & $p_{\mathrm{Holm}}$ & $p_W$ & McNemar $p<0.05$ \\",
             r"\midrule"]
    for r in results:
        lo, hi = r["ci95"]
        ci = "--" if lo is None else f"[{lo:+.4f}, {hi:+.4f}]"
        significant = sum(m["p"] < 0.05 for m in r["mcnemar"].values())
        lines.append(f"{r['dataset']} & {PAPER_NAMES[r['a']]} vs {PAPER_NAMES[r['b']]} & {r['mean_diff']:+.4f} & {ci} & "
                     f"{_p(r['p_t'])} & {_p(r.get('p_holm'))} & {_p(r['p_wilcoxon'])} & {significant}/{len(r['mcnemar'])} seeds \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def claims_latex(claims, caption):
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", r"\begin{tabular}{llc}", r"\toprule",
             r"Claim (from the paper's Table 2) & Dataset & Verdict \\", r"\midrule"]
    lines += [f"{c['claim']} & {c['dataset']} & {c['verdict']} \\\\" for c in claims]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
