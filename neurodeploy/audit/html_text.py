"""Keep words and numbers whole in the rendered HTML reports (audit and compare).

A browser may break a line inside a token at a hyphen, a slash, a colon or an en dash
(``FC64-FC10``, ``auto-demo``, ``12.8/255``, ``0–100``) and at the space between a number and
its unit (``64.0 %``), its sign (``≤ 64.0``) or its name (``p = 0.03``).
:func:`keep_words_whole` rewrites the text of an HTML document so that it cannot: tokens
holding such a character are wrapped in ``<span class="nw">`` (``white-space: nowrap``, see
:data:`NOWRAP_CSS`); the space before ``%``, after ``≤``/``≥``/``±`` and around ``=`` before a
number becomes a no-break space; a bracketed interval ``[lo, hi]`` stays on one line. Text
inside tags (attributes, embedded images), ``<style>``, ``<script>`` and ``<title>`` is left
as it is.
"""

from __future__ import annotations

import re

#: the CSS rule the wrapped tokens need (added to each report's style sheet)
NOWRAP_CSS = ".nw{white-space:nowrap}"

_TAG = re.compile(r"(<[^>]*>)")
_RAW = re.compile(r"<(style|script|title)\b", re.I)
_TOKEN = re.compile(r"[^\s<>]*[-‐–/:][^\s<>]*")
_INTERVAL = re.compile(r"\[[^\]\s<>]*,\s[^\]\s<>]*\]")
_UNIT = re.compile(r"(?<=[\d)\]]) (?=%)")
_SIGN = re.compile(r"(?<=[≤≥±]) (?=[\d−+-])")
_EQUALS = re.compile(r"(?<=\S) = (?=[\d−+-])")


def _text(t: str) -> str:
    """One text run (already HTML-escaped): no-break spaces, then nowrap spans."""
    t = _SIGN.sub("\u00a0", _UNIT.sub("\u00a0", t))
    t = _EQUALS.sub("\u00a0=\u00a0", t)  # "p = 0.03", "ε = 0.1" stay on one line
    spans: list[str] = []

    def keep(m: re.Match[str]) -> str:
        spans.append(f"<span class='nw'>{m.group(0)}</span>")
        return f"\x00{len(spans) - 1}\x00"

    t = _INTERVAL.sub(keep, t)
    t = _TOKEN.sub(lambda m: keep(m) if "\x00" not in m.group(0) else m.group(0), t)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], t)


def keep_words_whole(doc: str) -> str:
    """``doc`` with every text run passed through the rules of the module docstring."""
    out: list[str] = []
    raw = None  # the element whose content is copied as it is
    for part in _TAG.split(doc):
        if part.startswith("<"):
            m = _RAW.match(part)
            if m:
                raw = m.group(1).lower()
            elif raw and part.lower().startswith(f"</{raw}"):
                raw = None
            out.append(part)
        else:
            out.append(part if raw else _text(part))
    return "".join(out)
