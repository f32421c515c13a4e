"""What the report's notebook shows: HTML tables and figures read from the files beside it (``stats.json``,
``table1.json``, ``relatedness.json``, the PNG figures), the same data the LaTeX tables are made from.

The notebook (``reproduce.report``) calls these functions with its own folder; they display with IPython, so they are
meant to run inside a kernel.
"""

import json
import math
from pathlib import Path

import numpy as np

from reproduce.tables import mean_std

#: the comparisons' columns the report leaves to ``stats.json`` (per-seed lists and the McNemar counts)
_PER_SEED = ["mcnemar", "mcnemar_pooled", "seeds", "accuracies_a", "accuracies_b", "differences"]
_CLAIM_COLUMNS = ["claim", "dataset", "paper_column", "paper_diff", "paper_error_reduction", "margin", "mean_diff", "ci95",
                  "p_t_holm", "p_margin_holm", "power", "seeds_needed", "verdict", "verdict_log_odds"]
_SELECTION_COLUMNS = ("dataset", "method", "level", "seed", "trial", "val_loss", "val_accuracy", "refit_epochs")


def fmt(value):
    """A number as the LaTeX tables write it: four decimals, never NaN or exponent notation; an interval as [low, high]."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float, type(None))) for v in value):
        return f"[{fmt(value[0])}, {fmt(value[1])}]"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:  # three significant digits, written out
            return np.format_float_positional(value, precision=3, unique=True, fractional=False, trim="-")
        return f"{value:.4f}"
    return value


def _show(frame):
    from IPython.display import HTML, display

    display(HTML(frame.map(fmt).to_html(na_rep="--")))


def _caption(text):
    from IPython.display import Markdown, display

    display(Markdown(text))


def _stats(out):
    return json.loads((Path(out) / "stats.json").read_text())


def table2_frame(rows):
    """Table 2 as a DataFrame of "mean ± std" strings (the paper's column beside each dataset it reports), and which cells
    are bold, column by column."""
    import pandas as pd

    datasets = list(rows[0]["cells"]) if rows else []
    columns, bold = {}, {}
    for d in datasets:
        columns[d] = [mean_std(r["cells"][d]) for r in rows]
        bold[d] = [r["cells"][d]["bold"] for r in rows]
        if any(r["cells"][d]["paper"] is not None for r in rows):
            columns[f"{d} (paper)"] = ["--" if r["cells"][d]["paper"] is None else f"{r['cells'][d]['paper']:.4f}"
                                       for r in rows]
            bold[f"{d} (paper)"] = [False] * len(rows)
    return pd.DataFrame(columns, index=[r["name"] for r in rows]), bold


def tables(out):
    """Table 1, Table 2 (bold as in ``table2.tex``) and each seed's selected hyper-parameters."""
    import pandas as pd
    from IPython.display import HTML, display

    out, stats = Path(out), _stats(out)
    _caption("**Table 1**: the ITL datasets")
    _show(pd.DataFrame(json.loads((out / "table1.json").read_text())))
    table2, bold = table2_frame(stats["table2"])
    _caption("**Table 2**: target test accuracy, mean ± std over seeds; in bold among the paper's methods, the best and "
             "every method not significantly worse (none if no method stands out); below the rules, methods beyond the "
             "paper, then the linear probe (outside the paper)")
    styled = table2.style.set_uuid("table2").apply(lambda column: ["font-weight: bold" if b else "" for b in bold[column.name]])
    display(HTML(styled.to_html()))  # the HTML alone: a Styler's text form holds its memory address
    _caption("**Selected hyper-parameters**, one row per seed (each seed searches for itself: the lowest validation "
             "cross-entropy on its validation part, its accuracy beside; it refits on every labelled image for the "
             "selected epoch count)")
    _show(pd.DataFrame([{**{k: s[k] for k in _SELECTION_COLUMNS}, **s["hparams"]} for s in stats["selection"]]))


def claims(out):
    """The paper's claims, the methods beyond the paper, every pair of the paper's methods, and (where the datasets'
    true parents are known) the recovery of the parents and the gains."""
    import pandas as pd

    out, stats = Path(out), _stats(out)
    frame = pd.DataFrame(stats["claims"])
    _caption("**The paper's claims**: both tests of every claim, on every dataset, one Holm family")
    _show(frame[[c for c in _CLAIM_COLUMNS if c in frame]])
    if stats.get("beyond"):
        _caption("**Beyond the paper**: each new method against JTLN and joint fine-tuning (Holm within each dataset)")
        _show(pd.DataFrame(stats["beyond"])[["dataset", "a", "b", "mean_diff", "ci95", "p_t", "p_holm", "verdict"]])
    _caption("**Every pair of the paper's methods** (exploratory; Holm within each dataset)")
    _show(pd.DataFrame(stats["comparisons"]).drop(columns=_PER_SEED))
    if (out / "relatedness.json").is_file():
        related = json.loads((out / "relatedness.json").read_text())
        _caption("**Recovery of the true parents** (as `recovery.tex`: cheapest class = parent pooled over seeds; "
                 "plan mass on parents, mean and 95% CI over seeds; chance = 1 / target classes)")
        _show(pd.DataFrame([{"setting": d, "cost": k, "cheapest = parent": f"{c['cheapest']['hits']}/{c['cheapest']['n']}",
                             "plan mass": c["plan_mass"]["mean"], "CI": c["plan_mass"]["ci95"], "chance": part["chance"]}
                            for d, part in related["recovery"].items() for k, c in part["costs"].items()]))
        _caption("**Gain over target-only fine-tuning** (accuracy, mean and 95% CI over seeds, as `gain.tex`)")
        _show(pd.DataFrame([{"method": m, "setting": d, "gain": g["mean"], "CI": g["ci95"]}
                            for m, cells in related["gain"].items() for d, g in cells.items()]))


def figures(out):
    """Every PNG figure beside the report, embedded in the notebook (so the HTML needs no file beside it)."""
    from IPython.display import Image, display

    for png in sorted(Path(out).glob("*.png")):
        _caption(f"**{png.stem}**")
        display(Image(str(png), width=960))


def environment(out):
    """The versions and devices the records were made with."""
    print(json.dumps(_stats(out)["environment"], indent=1))
