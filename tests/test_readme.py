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
