"""Table 2, the statistics and the claims as LaTeX: pure functions of records (and of the stats computed from them)."""

import numpy as np

from jtln.hparams import SEARCH_SPACE
from jtln.methods import METHODS, display_name, method_order

#: Table 2 of the paper, as published (multi-class accuracy), shown beside ours for the paper profile.
PAPER_TABLE2 = {
    "Boeing": {"target_only": 0.4796, "consecutive": 0.5286, "joint": 0.5395, "jtln_mmd": 0.5422, "jtln_ot": 0.5436},
    "Airbus": {"target_only": 0.4965, "consecutive": 0.545, "joint": 0.5497, "jtln_mmd": 0.5982, "jtln_ot": 0.5704},
}


def summary(records):
    """``{dataset: {method: (mean, std (ddof=1), n)}}`` of test accuracy over seeds."""
    cells = {}
    for r in records:
        cells.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r["accuracy"])
    return {d: {m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for m, v in ms.items()}
            for d, ms in cells.items()}


def table2_latex(records, datasets, caption, paper_values=None):
    """Rows: the paper's methods with the paper's names, then (below a rule) the reference rows outside the paper.

    Columns: ITL datasets (and the paper's published values beside them, where
    given); cells mean ± std over seeds, the best of the paper's methods in bold.
    """
    s = summary(records)
    methods = method_order({m for d in datasets for m in s.get(d, {})})
    columns = []
    for d in datasets:
        columns.append(d)
        if paper_values and d in paper_values:
            columns.append(f"{d} (paper)")
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}",
             r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             "Methods & " + " & ".join(columns) + r" \\", r"\midrule"]
    best = {d: max((s[d][m][0] for m in methods if m in s.get(d, {}) and METHODS[m].paper), default=None) for d in datasets}
    for i, m in enumerate(methods):
        if i and METHODS[methods[i - 1]].paper and not METHODS[m].paper:
            lines.append(r"\midrule")
        cells = []
        for d in datasets:
            if m in s.get(d, {}):
                mean, std, n = s[d][m]
                text = f"{mean:.4f}" if n == 1 else f"{mean:.4f} $\\pm$ {std:.4f}"
                cells.append(rf"\textbf{{{text}}}" if METHODS[m].paper and mean == best[d] else text)
            else:
                cells.append("--")
            if paper_values and d in paper_values:
                cells.append(f"{paper_values[d][m]:.4f}" if m in paper_values[d] else "--")
        lines.append(f"{display_name(m)} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def level_key(level):
    """Scarcity levels in increasing order, "all" last."""
    return (level == "all", level if level != "all" else 0)


def _value(name, value):
    if name in SEARCH_SPACE and isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def hparams_latex(selection, searched, caption):
    """The selected configuration of each (dataset, method, level): its searched values, trial and validation accuracy.

    ``selection``: ``{(dataset, method, level): trial record}``;
    ``searched``: ``{method: [names]}``, what each method was tuned on.
    """
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", r"\small", r"\begin{tabular}{lllrrl}", r"\toprule",
             r"Dataset & Method & Level & Trial & Val. acc. & Selected hyper-parameters \\", r"\midrule"]
    order = {m: i for i, m in enumerate(method_order({m for _, m, _ in selection}))}
    for (d, m, level), r in sorted(selection.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], level_key(kv[0][2]))):
        values = ", ".join(f"{name.replace('_', chr(92) + '_')}={_value(name, r['hparams'][name])}" for name in searched[m])
        lines.append(f"{d} & {display_name(m)} & {level} & {r['trial']} & {r['val_accuracy']:.4f} & {values} \\\\")
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
        lines.append(f"{r['dataset']} & {display_name(r['a'])} vs {display_name(r['b'])} & {r['mean_diff']:+.4f} & {ci} & "
                     f"{_p(r['p_t'])} & {_p(r.get('p_holm'))} & {_p(r['p_wilcoxon'])} & {significant}/{len(r['mcnemar'])} seeds \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def claims_latex(claims, caption):
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", r"\begin{tabular}{llc}", r"\toprule",
             r"Claim (from the paper's Table 2) & Dataset & Verdict \\", r"\midrule"]
    lines += [f"{c['claim']} & {c['dataset']} & {c['verdict']} \\\\" for c in claims]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
