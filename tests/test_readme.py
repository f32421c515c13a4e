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


def test_every_name_file_and_command_the_readme_gives_exists():
    """What a reader copies from the README works: each dotted name in backticks (``jtln.ot.ot_loss``) imports, each file
    or folder it links or names is in the repository, and each ``python -m reproduce`` command parses with the real CLI."""
    import importlib
    import shlex

    from reproduce.__main__ import build_parser

    text = README.read_text()
    names = set(re.findall(r"`((?:jtln|reference|reproduce)(?:\.\w+)+)`", text))
    assert len(names) >= 15
    for name in sorted(names):
        module, attribute = name, None
        while True:
            try:
                found = importlib.import_module(module)
                break
            except ModuleNotFoundError:
                module, _, last = module.rpartition(".")
                attribute = last if attribute is None else f"{last}.{attribute}"
        for part in (attribute or "").split(".") if attribute else ():
            assert hasattr(found, part), f"README names {name}, but {found.__name__} has no {part}"
            found = getattr(found, part)
    root = README.parent
    for link in re.findall(r"\]\(([^)#:]+)\)", text):  # relative links
        assert (root / link).exists(), f"README links {link}, which is not in the repository"
    for path in re.findall(r"`((?:examples|reproduce/profiles|paper_tables/\w+)/[\w./]+)`", text):
        assert (root / path).exists(), f"README names {path}, which is not in the repository"
    commands = re.findall(r"python -m reproduce ([^`\n]+?)(?:`|\n|$)", text)
    assert len(commands) >= 5
    for command in commands:
        argv = shlex.split(command.replace("{table1,sweep,tables,all,rehearse}", "all").strip().rstrip("\\"))
        build_parser().parse_args(argv)  # exits 2 on an unknown flag or command
