"""Sphinx math rendered to MathML at build time, so the pages typeset their equations with no script and no network.

Browsers lay out MathML themselves (Chromium since 109, Firefox, Safari); the TeX is converted by docutils' own
``tex2mathml`` (docutils is Sphinx's dependency, so nothing is added). TeX it cannot convert is a warning naming the
formula and the place it came from, which the docs build (``-W``) turns into an error.
"""

from docutils import nodes
from docutils.utils.math import MathError
from docutils.utils.math.latex2mathml import tex2mathml
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)


def _mathml(self, node, as_block):
    tex = node.astext()
    try:
        return tex2mathml(tex, as_block=as_block)
    except (MathError, SyntaxError) as error:  # docutils' message names the construct it does not know; -W makes this an error
        logger.warning("math %r cannot be converted to MathML: %s", tex, error, location=node)
        return self.encode(tex)


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
