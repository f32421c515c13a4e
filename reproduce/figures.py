"""Figures (seaborn, PNG and PDF) as pure functions of records."""

from pathlib import Path

import numpy as np

from jtln.methods import METHODS, display_name, method_order
from reproduce.recovery import COSTS, seed_costs
from reproduce.stats import seed_accuracy
from reproduce.tables import level_key

#: no creation date in the files: the same records give byte-identical figures
_METADATA = {"png": {}, "pdf": {"CreationDate": None}}


def _save(fig, out, stem):
    """Write ``fig`` as ``<out>/<stem>.png`` and ``.pdf``, close it, and return the two paths."""
    import matplotlib.pyplot as plt

    paths = []
    for ext, metadata in _METADATA.items():
        path = Path(out) / f"{stem}.{ext}"
        fig.savefig(path, bbox_inches="tight", dpi=130, metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def accuracy_figure(records, datasets, out):
    """Test accuracy per method, one dot per seed, with the mean and its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame([{"dataset": r["dataset"], "method": display_name(r["method"]), "seed": r["seed"],
                           "accuracy": seed_accuracy(r)} for r in records])
    order = [display_name(m) for m in method_order({r["method"] for r in records})]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets) + 3, 4), squeeze=False, sharey=True)
    for ax, d in zip(axes[0], datasets):
        part = frame[frame["dataset"] == d]
        state = np.random.get_state()
        np.random.seed(0)  # seaborn draws the strip jitter from NumPy's global generator; put back below
        try:
            sns.stripplot(data=part, y="method", x="accuracy", order=order, ax=ax, color="0.3", size=5, jitter=0.15)
        finally:
            np.random.set_state(state)
        sns.pointplot(data=part, y="method", x="accuracy", order=order, ax=ax, color="C3", linestyle="none",
                      errorbar=("ci", 95), seed=0, markers="D")  # a fixed bootstrap
        ax.set_title(d)
        ax.set_ylabel("")
    fig.suptitle("Target test accuracy (dots: seeds; red: mean, 95% CI)")
    fig.tight_layout()
    return _save(fig, out, "accuracy")


def learning_curve_figure(records, datasets, out):
    """Test accuracy against labelled target images per class, one line per method, mean and 95% interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    levels = sorted({r["level"] for r in records}, key=level_key)
    if len(levels) < 2:
        return []
    frame = pd.DataFrame([{"dataset": r["dataset"], "method": display_name(r["method"]), "level": str(r["level"]),
                           "accuracy": seed_accuracy(r)} for r in records])
    order = [display_name(m) for m in method_order({r["method"] for r in records})]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets) + 3, 4), squeeze=False)
    for i, (ax, d) in enumerate(zip(axes[0], datasets)):
        sns.pointplot(data=frame[frame["dataset"] == d], x="level", y="accuracy", hue="method", hue_order=order,
                      order=[str(v) for v in levels], errorbar=("ci", 95), seed=0, dodge=0.3, ax=ax, legend=i == len(datasets) - 1)
        ax.set_title(d)
        ax.set_xlabel("labelled target images per class (training + validation)")
        ax.set_ylabel("target test accuracy" if i == 0 else "")
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=None, frameon=False)
    fig.suptitle("Learning curve: test accuracy by scarcity level (mean and 95% CI over seeds)")
    fig.tight_layout()
    return _save(fig, out, "learning_curve")


#: heatmaps per row of a figure: a report page shows each at a readable size
HEATMAPS_PER_ROW = 2


def _heatmap(fig, ax, matrix, **options):
    """``seaborn.heatmap`` on ``ax`` of ``fig``, the figure's other panels hidden meanwhile: seaborn draws the whole figure
    at each call (to see whether tick labels overlap), and a label's extent is its own, so hiding them changes nothing
    drawn and spares redrawing every earlier panel at each call (a figure of n panels: n draws of one, not n^2 / 2)."""
    import seaborn as sns

    others = [a for a in fig.axes if a is not ax and a.get_visible()]
    for other in others:
        other.set_visible(False)
    try:
        sns.heatmap(matrix, ax=ax, **options)
    finally:
        for other in others:
            other.set_visible(True)


def _heatmaps(matrices, titles, row_labels, col_labels, suptitle, out, stem):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(HEATMAPS_PER_ROW, len(matrices))
    nrows = -(-len(matrices) // ncols)
    cell_w, cell_h = 0.7 * len(col_labels) + 2.5, 0.35 * len(row_labels) + 2.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_w * ncols + 1.5, cell_h * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(matrices):
            ax.set_visible(False)
            continue
        first_column = i % ncols == 0
        _heatmap(fig, ax, np.asarray(matrices[i]), xticklabels=col_labels, yticklabels=row_labels if first_column else False,
                 cmap="viridis", annot=len(row_labels) * len(col_labels) <= 60, fmt=".2f")
        ax.set_title(titles[i])
        ax.set_xlabel("target class")
        ax.set_ylabel("source class" if first_column else "")
    fig.suptitle(suptitle, y=1.01)
    fig.tight_layout()
    return _save(fig, out, stem)


def cost_and_plan_figures(records, datasets, out):
    """Per dataset: the cost matrices (the learned and dynamic costs of seed 0 beside their initial ones), and the mean plans."""
    paths = []
    with_cost = [m for m in method_order(METHODS) if METHODS[m].cost]  # the OT methods; those that move C beside their initial one
    for d in datasets:
        runs = {m: sorted((r for r in records if r["dataset"] == d and r["method"] == m), key=lambda r: r["seed"])
                for m in with_cost}
        present = [m for m in runs if runs[m]]
        if not present:
            continue
        first = runs[present[0]][0]
        rows, cols = first["source_classes"], first["target_classes"]
        matrices, titles = [], []
        for m in present:
            field = METHODS[m].final_cost
            matrices.append(runs[m][0]["cost_matrix"])
            titles.append(f"C for {display_name(m)}" + (" (initial)" if field else ""))
            if field:
                matrices.append(runs[m][0][field])
                titles.append(f"{field.split('_')[0]} C, seed {runs[m][0]['seed']}")
        paths += _heatmaps(matrices, titles, rows, cols, f"{d}: cost matrices (min-max scaled; learned and dynamic: at the kept "
                           "epoch)", out, f"costs_{d}")
        plans = [np.mean([r["mean_plan"] for r in runs[m]], axis=0) for m in present]
        paths += _heatmaps(plans, [display_name(m) for m in present], rows, cols,
                           f"{d}: mean transport plan between the heads on target test images", out, f"plans_{d}")
    return paths


def gain_figure(gained, datasets, out):
    """Each method's gain over target-only fine-tuning (points, mean and 95% interval over seeds) against the dial's setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(datasets))
    for i, (m, cells) in enumerate(gained.items()):
        shift = (i - (len(gained) - 1) / 2) * 0.06
        present = [k for k, d in enumerate(datasets) if d in cells and cells[d]["ci95"][0] is not None]
        mean = [100 * cells[datasets[k]]["mean"] for k in present]
        err = np.array([[100 * (cells[datasets[k]]["mean"] - cells[datasets[k]]["ci95"][0]),
                         100 * (cells[datasets[k]]["ci95"][1] - cells[datasets[k]]["mean"])] for k in present]).T.reshape(2, -1)
        ax.errorbar(x[present] + shift, mean, yerr=err, marker="o", capsize=3, label=display_name(m))
    ax.axhline(0, color="0.4", linestyle="--", linewidth=1)
    ax.set_xticks(x, datasets)
    ax.set_xlabel("source classes (dial from related to unrelated)")
    ax.set_ylabel("gain over target-only fine-tuning (points)")
    ax.set_title("Gain over target-only fine-tuning, mean and 95% CI over seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.tight_layout()
    return _save(fig, out, "gain_vs_relatedness")


def cost_figure(records, datasets, out):
    """Per dataset, each cost kind's matrix averaged over seeds, with the true (child, parent) pairs outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for d in datasets:
        found = seed_costs(records, d)
        if not found:
            continue
        first = next(r for r in records if r["dataset"] == d)
        rows, cols, parents = first["source_classes"], first["target_classes"], first["parents"]
        keys = [k for k in COSTS if k in found]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 2.5, 0.35 * len(rows) + 2.2), squeeze=False)
        for i, (ax, key) in enumerate(zip(axes[0], keys)):
            mean = np.mean([np.asarray(C, float) for C, _ in found[key].values()], axis=0)
            _heatmap(fig, ax, mean, xticklabels=cols, yticklabels=rows if i == 0 else False, cmap="viridis", cbar=False,
                     annot=True, fmt=".2f", annot_kws={"size": 7})
            for row, parent in enumerate(parents):
                if parent is not None:
                    ax.add_patch(plt.Rectangle((parent, row), 1, 1, fill=False, edgecolor="red", linewidth=2))
            ax.set_title(COSTS[key].replace("$\\beta$", "β"), fontsize=9)
            ax.set_xlabel("target class")
        fig.suptitle(f"{d}: cost matrices, mean over seeds (red: each source class's true parent)", y=1.02)
        fig.tight_layout()
        paths += _save(fig, out, f"costs_true_pairs_{d}")
    return paths
