"""Sphinx math rendered to MathML at build time, so the pages typeset their equations with no script and no network.

Browsers lay out MathML themselves (Chromium since 109, Firefox, Safari); the TeX is converted by docutils' own
``tex2mathml`` (docutils is Sphinx's dependency, so nothing is added). TeX it cannot convert fails the build with the
formula and the place it came from, instead of showing raw TeX to a reader.
"""

from docutils import nodes
from docutils.utils.math.latex2mathml import tex2mathml
from sphinx.util.math import get_node_equation_number


def _mathml(self, node, as_block):
    tex = node.astext()
    try:
        return tex2mathml(tex, as_block=as_block)
    except SyntaxError as error:  # docutils' message names the construct it does not know
        raise self.document.reporter.severe(f"math {tex!r} cannot be converted to MathML: {error}", base_node=node) from error


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math") + _mathml(self, node, as_block=False) + "</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math"))
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, "Link to this equation")
        self.body.append("</span>")
    self.body.append(_mathml(self, node, as_block=True) + "</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
