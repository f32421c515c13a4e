"""The documentation and the report read offline: opened in headless Chromium with the network cut, no request leaves
the machine, equations are typeset (MathML laid out by the browser: fractions stacked, subscripts lowered) and no raw
TeX is left in the text; the report's figures are embedded and its tables present."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.headless import chromium, render

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(chromium() is None, reason="no Chromium (apt-get install chromium, or set $CHROMIUM)")

#: what the page shows, measured after layout: the math elements, whether each fraction's numerator sits above its
#: denominator and each subscript smaller than its base and not above it, the text left outside math and code, and every image's size
MEASURE = """JSON.stringify({
  math: document.querySelectorAll('math').length,
  unconverted: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('math')).length,
  fractions: [...document.querySelectorAll('mfrac')].map(f =>
      f.children[0].getBoundingClientRect().bottom <= f.children[1].getBoundingClientRect().top + 0.5),
  subscripts: [...document.querySelectorAll('msub')].map(s =>
      parseFloat(getComputedStyle(s.children[1]).fontSize) < parseFloat(getComputedStyle(s.children[0]).fontSize)
      && s.children[1].getBoundingClientRect().bottom >= s.children[0].getBoundingClientRect().bottom),
  text: (() => { const body = document.body.cloneNode(true);
                 body.querySelectorAll('math, pre, code, script, style').forEach(e => e.remove());
                 return body.innerText; })(),
  images: [...document.images].map(i => [i.src.slice(0, 30), i.naturalWidth]),
  tables: document.querySelectorAll('table').length,
})"""
RAW_TEX = re.compile(r"\\(frac|lambda|sum|mathbf|langle|log|left|right|alpha|mu)\b|\$\$|\\\(")


def measured(path):
    import json

    rendered = render(path, MEASURE)
    return json.loads(rendered.value), rendered


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """The documentation as `tox -e docs` builds it (warnings are errors)."""
    html = tmp_path_factory.mktemp("docs")
    subprocess.run([sys.executable, "-m", "sphinx", "-E", "-a", "-W", "-q", "-b", "html", str(ROOT / "docs"), str(html)],
                   check=True)
    return html


def test_the_api_page_typesets_its_equations_with_no_network(docs):
    page, rendered = measured(docs / "api.html")
    assert rendered.left == [], f"requests that left the machine: {rendered.left}"
    assert page["math"] >= 40 and page["unconverted"] == 0  # the OT loss's and the costs' equations, all converted
    assert page["fractions"] and all(page["fractions"]), "a fraction is not stacked"
    assert page["subscripts"] and all(page["subscripts"]), "a subscript is not set as one"
    assert not RAW_TEX.search(page["text"]), RAW_TEX.search(page["text"])
    # the OT loss's own equation, Eq. 11 of the paper, is among them
    assert "Eq. 11" in page["text"]


def test_the_docs_say_how_to_install_what_exists(docs):
    page, rendered = measured(docs / "index.html")
    assert rendered.left == [] and "reproducible companion" in page["text"]
    text = re.sub(r"<[^>]+>", "", (docs / "index.html").read_text())
    assert "pip install ." in text and "pip install jtln" not in text


@pytest.mark.parametrize("profile", ["fashion_mnist", "relatedness"])
def test_the_committed_report_is_self_contained(profile):
    page, rendered = measured(ROOT / "paper_tables" / profile / "report.html")
    assert rendered.left == [], f"requests that left the machine: {rendered.left}"
    assert rendered.requests == [(ROOT / "paper_tables" / profile / "report.html").resolve().as_uri()]
    figures = len(list((ROOT / "paper_tables" / profile).glob("*.png")))
    assert len(page["images"]) == figures and all(src.startswith("data:image/png") and width > 0
                                                 for src, width in page["images"])
    assert page["tables"] >= 5 and "Table 2" in page["text"]


def test_a_fresh_report_is_self_contained(smoke):
    page, rendered = measured(smoke / "out" / "report.html")
    assert rendered.left == [] and len(rendered.requests) == 1
    assert page["images"] and all(width > 0 for _, width in page["images"])
