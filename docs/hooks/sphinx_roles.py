"""MkDocs hook: render the Sphinx roles of the docstrings (``:func:`x```) as plain code.

The docstrings are written for ``help()`` and editors, which show ``:func:`prune``` as
is; in the generated reference the role name is dropped and ``~a.b.c`` shortened to ``c``.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|exc|obj):(<code>)~?(?:[\w.]*\.)?([\w]+)")


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(r"\1\2", html)
