"""The committed Table 2 against an independent linear probe on the same labelled images (slow; needs a finished sweep).

The independent probe is scikit-learn's logistic regression with a fixed
C = 1 on standardised frozen features of each seed's labelled images
(training and validation together, as the refit sees them), written here
without the project's probe code.  Run after ``tox -e reproduce``:
``tox -e test -- -m slow tests/test_probe_check.py -s``.
"""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_linear_probe_row_is_within_two_points_of_an_independent_probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from reproduce.prepare import Workspace
    from reproduce.profile import load_profile

    profile, runs = load_profile("fashion_mnist"), ROOT / "runs" / "fashion_mnist"
    stats = ROOT / "paper_tables" / "fashion_mnist" / "stats.json"
    if not (runs / "cache").is_dir():
        pytest.skip(f"no finished sweep in {runs}: run `tox -e reproduce` first")
    rows = {r["method"]: r["cells"] for r in json.loads(stats.read_text())["table2"]}
    workspace, level = Workspace(), profile.data.table2_level
    for dataset in profile.data.groups:
        prep = workspace.prepared(profile, dataset, runs)
        P, y = prep.cached.P["target_train"].numpy(), prep.cached.y["target_train"].numpy()
        P_test, y_test = prep.cached.P["target_test"].numpy(), prep.cached.y["target_test"].numpy()
        accuracies = []
        for seed in profile.run.seeds:
            d = prep.draws[(level, seed)]
            labelled = list(d.target_train + d.target_val)
            scaler = StandardScaler().fit(P[labelled])
            clf = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(P[labelled]), y[labelled])
            accuracies.append(float((clf.predict(scaler.transform(P_test)) == y_test).mean()))
        ours, tuned = rows["linear_probe"][dataset], rows["target_only"][dataset]
        print(f"{dataset}: independent probe {np.mean(accuracies):.4f} ± {np.std(accuracies, ddof=1):.4f}; Table 2's probe "
              f"{ours['mean']:.4f} ± {ours['std']:.4f}; target-only fine-tuning {tuned['mean']:.4f} ± {tuned['std']:.4f}")
        assert abs(ours["mean"] - np.mean(accuracies)) <= 0.02
