"""Subtitle markup to plain text: ASS override tags and drawings, SRT/WebVTT HTML-ish tags.

:func:`clean` returns the visible lines plus what the markup said (override tags, whether the
event draws, WebVTT voice names), which the sign/song rules and speaker hints use.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_BLOCK = re.compile(r"\{([^{}]*)\}")
_DRAWING = re.compile(r"p(\d+)")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^<>]+)>")
_RUBY_TEXT = re.compile(r"<(rt|rp)\b[^<>]*>[^<]*</\1\s*>")
_TAG = re.compile(r"</?\s*[A-Za-z][^<>]*>|<\d[\d:.]*>")
_CUE_END = re.compile(r"\\N[ \t]*\\N")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Cleaned:
    """Visible text of one event (non-empty lines) and what its markup said."""

    lines: tuple[str, ...]
    tags: tuple[str, ...]  # override tags without the backslash, e.g. "pos(10,20)", "an8"
    drawing: bool  # some of the event was a drawing (``\\p1`` ... ``\\p0``)
    voices: tuple[str, ...]  # WebVTT ``<v Name>`` voices, in order


def clean(raw: str, fmt: str) -> Cleaned:
    """Plain lines of an event's text in format ``fmt`` (``ass``, ``ssa``, ``srt`` or ``vtt``).

    In ASS/SSA every ``{...}`` block is markup (one without a backslash is a comment); in
    SRT/WebVTT only blocks that start with a backslash (``{\\an8}``) are, and HTML-ish tags
    are removed too, keeping WebVTT voice names and dropping ruby text.
    """
    html_like = fmt in ("srt", "vtt")
    if fmt == "vtt":
        raw = _CUE_END.split(raw, maxsplit=1)[0]  # a blank line ends a cue (NOTE blocks follow)
    visible, tags, drawing = _strip_overrides(raw, only_tags=html_like)
    voices: tuple[str, ...] = ()
    if html_like:
        names = (_SPACES.sub(" ", m).strip() for m in _VOICE.findall(visible))
        voices = tuple(v for v in names if v)
        visible = _TAG.sub("", _RUBY_TEXT.sub("", visible))
        if fmt == "vtt":
            visible = html.unescape(visible)
    visible = visible.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    lines = tuple(s for s in (_SPACES.sub(" ", ln).strip() for ln in visible.split("\n")) if s)
    return Cleaned(lines, tuple(tags), drawing, voices)


def _strip_overrides(raw: str, only_tags: bool) -> tuple[str, list[str], bool]:
    """Text outside override blocks and drawings, the tags found, and whether it drew."""
    parts: list[str] = []
    tags: list[str] = []
    drawing = drew = False
    pos = 0
    for m in _BLOCK.finditer(raw):
        body = m.group(1)
        if only_tags and not body.lstrip().startswith("\\"):
            continue  # literal braces in SRT/WebVTT text stay text
        if not drawing:
            parts.append(raw[pos : m.start()])
        pos = m.end()
        for tag in (t.strip() for t in body.split("\\")[1:]):
            if not tag:
                continue
            tags.append(tag)
            scale = _DRAWING.fullmatch(tag)
            if scale:
                drawing = int(scale.group(1)) > 0
                drew = drew or drawing
    if not drawing:
        parts.append(raw[pos:])
    return "".join(parts), tags, drew
