"""MkDocs hook: render the pages' TeX to MathML at build time (no JavaScript, no CDN).

``pymdownx.arithmatex`` (``generic: true``) leaves each formula in
``<span class="arithmatex">\\(...\\)</span>`` or ``<div class="arithmatex">\\[...\\]</div>``;
this hook replaces them by MathML from ``latex2mathml``, which every current browser
renders natively, so the site's formulas work offline. A formula that does not convert
is logged as a warning, which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import html
import logging
import re

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.mathml")

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\]|\$\$(?P<dollars>.*?)\$\$)"
    r"\s*</(?P=tag)>",
    re.DOTALL,
)


def on_page_content(html_text: str, page, **kwargs) -> str:
    def render(m: re.Match) -> str:
        inline = m.group("inline") is not None
        tex = html.unescape(
            m.group("inline") if inline else (m.group("block") or m.group("dollars"))
        )
        try:
            out = convert(tex.strip(), display="inline" if inline else "block")
        except Exception as e:  # noqa: BLE001 - any converter failure is a page problem
            log.warning("%s: cannot render formula %r: %s", page.file.src_path, tex, e)
            return m.group(0)
        return out if inline else f'<div class="math-block">{out}</div>'

    return _MATH.sub(render, html_text)
