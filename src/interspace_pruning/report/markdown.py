"""Text from a run folder's files, made safe to write into Markdown.

A received folder's names and fields are data: a newline in an ``error`` field must not
start a heading, and ``![x](http://...)`` must not become a remote image in ``report.md``.
"""

from __future__ import annotations

import re

#: Characters that start Markdown syntax mid-line (links, emphasis, code, tables, HTML),
#: escaped with a backslash; a newline never reaches the output (it could start a heading).
#: An underscore inside a word (``wall_time``) starts no emphasis and is left as it is.
_SPECIAL = re.compile(r"([\\`*{}\[\]<>#|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def md(value: object, limit: int = 300) -> str:
    """``value`` as one line of plain Markdown text: control characters and newlines become
    spaces, Markdown's special characters are escaped, and text past ``limit`` characters is
    cut with an ellipsis."""
    text = _CONTROL.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _SPECIAL.sub(r"\\\1", text)


def md_code(value: object, limit: int = 120) -> str:
    """``value`` as inline code: one line, cut at ``limit``, backticks replaced."""
    text = _CONTROL.sub(" ", str(value)).strip().replace("`", "'")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"`{text}`"
