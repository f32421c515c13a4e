"""The recovery and gain tables (``recovery.tex``, ``gain.tex``) and their lines in ``findings.md``: pure functions of
what :mod:`reproduce.recovery` computes."""

from jtln.methods import display_name
from reproduce.recovery import COSTS
from reproduce.tables import latex_table


def _fmt(cell, scale=1.0):
    """``mean [low, high]``; where every seed gave the same value, says so instead of printing a zero-width interval."""
    if cell["mean"] is None:
        return "--"
    low, high = cell["ci95"]
    if low is None:
        interval = " (one seed)"
    elif low == high:
        interval = " (every seed)"
    else:
        interval = f" [{low * scale:.2f}, {high * scale:.2f}]"
    return f"{cell['mean'] * scale:.2f}{interval}"


def recovery_latex(found, caption):
    """Two blocks per dataset: each cost kind (cheapest class = parent; plan mass on parents), each OT method's heads' plan."""
    lines = []
    for d, part in found.items():
        if lines:
            lines.append(r"\midrule")
        for key, c in part["costs"].items():
            ch = c["cheapest"]
            lines.append(f"{d} & {COSTS[key]} & {ch['hits']}/{ch['n']} = {ch['share']:.2f} [{ch['ci95'][0]:.2f}, {ch['ci95'][1]:.2f}]"
                         f" & {_fmt(c['plan_mass'])} \\\\")
        for m, cell in part["heads"].items():
            lines.append(f"{d} & heads' plan, {display_name(m)} & -- & {_fmt(cell)} \\\\")
        lines.append(rf"{d} & chance & {part['chance']:.2f} & {part['chance']:.2f} \\")
    return latex_table(caption, "llcc", r"setting & cost matrix & cheapest = parent & plan mass on parents \\", lines)


def gain_latex(gained, datasets, caption):
    """One row per method, a column per dataset: the mean paired gain over target-only fine-tuning in points, with its interval."""
    lines = [display_name(m) + " & " + " & ".join(_fmt(cells[d], 100) if d in cells else "--" for d in datasets) + r" \\"
             for m, cells in gained.items()]
    return latex_table(caption, "l" + "c" * len(datasets), "method & " + " & ".join(datasets) + r" \\", lines)


def findings_lines(found, gained, datasets, trends=None):
    """Markdown for ``findings.md``: each cost kind's recovery per setting, and each method's gain per setting."""
    plain = {k: v.replace("$\\beta$", "β") for k, v in COSTS.items()}
    lines = ["", "**Recovery of the true parents** (`recovery.tex`, with its intervals; cheapest = parent: hits over source classes "
             "and seeds; plan mass: mean over seeds):", "",
             "| setting | cost matrix | cheapest = parent | plan mass on parents |", "|---|---|---|---|"]
    for d, part in found.items():
        for key, c in part["costs"].items():
            ch = c["cheapest"]
            lines.append(f"| {d} | {plain[key]} | {ch['hits']}/{ch['n']} | {_fmt(c['plan_mass'])} |")
        for m, cell in part["heads"].items():
            lines.append(f"| {d} | heads' plan, {display_name(m)} | -- | {_fmt(cell)} |")
        lines.append(f"| {d} | chance | {part['chance']:.2f} | {part['chance']:.2f} |")
    lines += ["", "**Gain over target-only fine-tuning** (`gain.tex`, points, mean [95% CI] over seeds):", "",
              "| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for m, cells in gained.items():
        lines.append(f"| {display_name(m)} | " + " | ".join(_fmt(cells[d], 100) if d in cells else "--" for d in datasets) + " |")
    if trends:
        from reproduce.stats import ALPHA

        rising = [m for m, t in trends.items() if t["p_holm"] is not None and t["p_holm"] < ALPHA and t["mean"] > 0]
        falling = [m for m, t in trends.items() if t["p_holm"] is not None and t["p_holm"] < ALPHA and t["mean"] < 0]
        first, last = datasets[0], datasets[-1]
        lines += ["", f"**Gain, {first} minus {last}** (paired over seeds, t-test Holm-corrected over the {len(trends)} methods, "
                  f"`relatedness.json`): "
                  + (f"significantly larger where the source is related for {', '.join(map(display_name, rising))}; "
                     if rising else f"no method's gain is significantly larger on {first} than on {last}; ")
                  + (f"significantly smaller for {', '.join(map(display_name, falling))}." if falling
                     else "none is significantly smaller.")]
    return lines
