"""Table 1 as LaTeX/JSON: a golden test, the CLI on a miniature tree and on the real annotations."""

import json

from reproduce.__main__ import main
from reproduce.table1 import table1_latex
from tests.fake_data import make_mini_fgvc
from tests.test_data import PAPER_TABLE1

GOLDEN = r"""\begin{table}[t]
\centering
\caption{ITL datasets}
\begin{tabular}{lrr}
\toprule
Dataset properties & Boeing & Airbus \\
\midrule
No.\ of target categories & 22 & 13 \\
No.\ of target training images & 1466 & 867 \\
No.\ of target testing images & 734 & 433 \\
No.\ of source categories & 78 & 87 \\
No.\ of source images & 7800 & 8700 \\
\bottomrule
\end{tabular}
\end{table}
"""


def test_table1_latex_golden():
    assert table1_latex(PAPER_TABLE1, "ITL datasets") == GOLDEN


def test_cli_on_the_real_annotations(fgvc_root, tmp_path):
    assert main(["table1", "--profile", "paper", "--data-root", str(fgvc_root), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "paper" / "table1.json").read_text()) == PAPER_TABLE1
    assert "1466 & 867" in (tmp_path / "paper" / "table1.tex").read_text()


def test_cli_on_a_miniature_tree_and_on_missing_data(tmp_path, capsys):
    root = make_mini_fgvc(tmp_path / "data")
    profile = tmp_path / "mini.toml"
    profile.write_text('name = "mini"\n[data]\ndataset = "fgvc_aircraft"\ngroups = ["Boeing", "Airbus"]\nlevels = ["all"]\n')
    assert main(["table1", "--profile", str(profile), "--data-root", str(root), "--out", str(tmp_path / "out")]) == 0
    columns = json.loads((tmp_path / "out" / "mini" / "table1.json").read_text())
    assert columns["Airbus"] == {"target_categories": 2, "target_train_images": 6, "target_test_images": 4,
                                 "source_categories": 4, "source_images": 20}
    assert main(["table1", "--profile", str(profile), "--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "FGVC-Aircraft not found: looked for" in capsys.readouterr().err


def test_committed_table1_matches_the_paper():
    from pathlib import Path

    committed = Path(__file__).parents[1] / "paper_tables" / "paper" / "table1.json"
    assert json.loads(committed.read_text()) == PAPER_TABLE1
