"""What early stopping saved a sweep: ``python .ci/search_budget.py runs/fashion_mnist``.

Sums over a runs folder's trial records: epochs trained against their epoch caps, and the trials' training time against
an estimate of it at their full epoch counts (each trial's time after its setup scaled by cap / epochs trained); and
the dynamic cost's recomputations per run.  The figures of BENCHMARKS.md's "Each seed searches for itself".
"""

import json
import sys
from pathlib import Path


def main(runs):
    trials, seeds = [], []
    for path in Path(runs).rglob("record.json"):
        r = json.loads(path.read_text())
        (trials if r["role"] == "trial" else seeds).append(r)
    stopped = [r for r in trials if r.get("stopped_epoch")]
    trained, cap = sum(r["stopped_epoch"] for r in stopped), sum(r["hparams"]["epochs"] for r in stopped)
    spent = sum(r["timings"].get("train_s", 0) for r in trials)
    full = sum(r["timings"].get("train_s", 0) if not r.get("stopped_epoch") else
               r["timings"]["setup_s"] + (r["timings"]["train_s"] - r["timings"]["setup_s"]) * r["hparams"]["epochs"] / r["stopped_epoch"]
               for r in trials)
    print(f"{len(trials)} trials, {len(seeds)} refits; epochs trained {trained} of {cap} ({trained / cap:.1%}); trials' training "
          f"{spent:.0f} s, about {full:.0f} s at their full epoch counts (early stopping saved ~{1 - spent / full:.0%})")
    updates = [r["cost_updates"] for r in trials + seeds if r["method"] == "jtln_dynamic"]
    if updates:
        print(f"jtln_dynamic: C recomputed {min(updates)} to {max(updates)} times per run, over {len(updates)} runs")


if __name__ == "__main__":
    main(sys.argv[1])
