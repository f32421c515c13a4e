"""The README's code runs as printed, and the README stays short."""

import re
from pathlib import Path

import torch

README = Path(__file__).parents[1] / "README.md"


def test_the_quick_start_runs_as_printed():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1 and len(blocks[0].splitlines()) <= 20
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 -- the README's own example
    loss, logits_s = scope["loss"], scope["logits_s"]
    assert loss.dim() == 0 and torch.isfinite(loss) and logits_s.grad is not None and torch.isfinite(logits_s.grad).all()


def test_the_readme_is_at_most_160_lines():
    assert len(README.read_text().splitlines()) <= 160


#: words that state a result: in the README's findings sections only inside a quote of a committed findings.md
VERDICT_WORDS = ("supported", "contradicted", "ruled out", "inconclusive", "significant", "unstable", "level with", "gains more",
                 "beats", "better", "worse")


def test_the_readme_states_results_only_by_quoting_the_committed_findings():
    """Each findings section quotes lines of a committed ``findings.md`` (generated from the records) verbatim, and says
    nothing of a result outside the quote: the verdict words and counts a reader sees are the tables'."""
    text = README.read_text()
    sections = re.findall(r"\n## (What the default profile found|When does it help\?.*?)\n(.*?)(?=\n## )", text, flags=re.S)
    assert len(sections) == 2
    for _, body in sections:
        quotes = re.findall(r"<!-- quoted from (\S+) -->\n(.*?)\n<!-- end of quote -->", body, flags=re.S)
        assert quotes, "a findings section without a quote of its findings.md"
        for path, quoted in quotes:
            committed = set((README.parent / path).read_text().splitlines())
            lines = [line for line in quoted.splitlines() if line.strip()]
            assert lines and all(line in committed for line in lines), f"not in {path}: {set(lines) - committed}"
        prose = re.sub(r"<!-- quoted from .*?<!-- end of quote -->", "", body, flags=re.S).lower()
        assert not [w for w in VERDICT_WORDS if w in prose], [w for w in VERDICT_WORDS if w in prose]
