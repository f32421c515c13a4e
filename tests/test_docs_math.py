"""The docs' math renderer (docs/_ext/mathml.py): TeX becomes MathML at build time, and TeX it cannot convert fails the
build (``-W``) with the formula and its place, instead of reaching a reader raw."""

import shutil
import subprocess
import sys
from pathlib import Path

EXT = Path(__file__).parents[1] / "docs" / "_ext"
CONF = 'import sys, os\nsys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))\nextensions = ["mathml"]\n' \
       'html_math_renderer = "mathml"\nexclude_patterns = ["_ext", "_build"]\n'


def build(tmp_path, math):
    shutil.copytree(EXT, tmp_path / "_ext")
    (tmp_path / "conf.py").write_text(CONF)
    (tmp_path / "index.rst").write_text(f"Title\n=====\n\n:math:`{math}`\n\n.. math:: {math}\n")
    return subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "-q", "-b", "html", str(tmp_path), str(tmp_path / "_build")],
                          capture_output=True, text=True)


def test_tex_becomes_mathml_inline_and_displayed(tmp_path):
    result = build(tmp_path, r"\frac{1}{\lambda} \log u_i")
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "_build" / "index.html").read_text()
    assert html.count("<math") == 2 and 'display="block"' in html and "<mfrac>" in html and "<mi>λ</mi>" in html
    assert "mathjax" not in html.lower() and "\\frac" not in html


def test_tex_that_cannot_be_converted_fails_the_build_naming_it(tmp_path):
    result = build(tmp_path, r"\frac{1}{2} \unknowncommand{x}")
    assert result.returncode != 0
    assert "index.rst:4: WARNING: math '\\\\frac{1}{2} \\\\unknowncommand{x}' cannot be converted to MathML" in result.stderr, \
        result.stderr
    assert 'Unknown LaTeX command "\\unknowncommand"' in result.stderr
