"""Text from the data, made safe for where it is shown: every reader (menu, report, dashboards, demo, web
page) passes the data's text through one of these before showing it.

- ``visible``: characters that would act instead of being seen become visible marks. Control characters
  (C0, DEL, C1: ESC would start a terminal escape sequence, CR would overwrite the line) are written as
  Python escapes (``\\x1b``, ``\\r``, ``\\n``, ``\\t``); format characters (Unicode category Cf: bidi
  controls that reorder a line, zero-width characters that make two names look alike, the BOM) and the
  line/paragraph separators as ``<U+202E>``. Everything else, accents, scripts and emoji, is unchanged.
- ``for_terminal``: ``visible`` (the terminal then only ever receives printable text).
- ``for_markdown``: ``visible``, then HTML's ``& < >`` as entities and every Markdown special character
  backslash-escaped, so that a value is text in report.md: no tag, link, image, emphasis, heading,
  maths or table cell border comes from the data, and a value stays in its table cell.
- ``for_web``: ``visible``; the page's own renderer (Streamlit) escapes markup.
"""

from __future__ import annotations

import re
import unicodedata

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")  # controls, format, line/paragraph separators, lone surrogates
_NOT_PLAIN_ASCII = re.compile(r"[^\x20-\x7e]")  # candidates: each one's category is then looked up
# Markdown's special characters (CommonMark lets any ASCII punctuation be backslash-escaped), and the
# pipe of GFM tables; the backslash first.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|$~])")


def _mark(match: re.Match) -> str:
    ch = match.group(0)
    category = unicodedata.category(ch)
    if category not in _HIDDEN_CATEGORIES:
        return ch
    if ch in _SHORT:
        return _SHORT[ch]
    if category == "Cc":
        return f"\\x{ord(ch):02x}"
    return f"<U+{ord(ch):04X}>"


def visible(text: str) -> str:
    """``text`` with control, format (Cf) and separator characters replaced by visible marks."""
    return _NOT_PLAIN_ASCII.sub(_mark, text)


def for_terminal(text: str) -> str:
    """``text`` as it may be printed on a terminal: no control sequence, no reordering, nothing invisible."""
    return visible(text)


def for_markdown(text: str) -> str:
    """``text`` as literal text in Markdown (a paragraph or a table cell), HTML included."""
    shown = visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIALS.sub(r"\\\1", shown)


def for_web(text: str) -> str:
    """``text`` for the web page, whose renderer escapes markup: format characters made visible."""
    return visible(text)
