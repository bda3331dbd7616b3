"""Reading subtitle files into cleaned, classified lines.

:func:`read_subtitles` takes the bytes of an ASS, SSA, SRT or WebVTT file and returns
:class:`Subtitles`: the text encoding and format found, the lines in time order, and what was
left out. Any problem with the input raises :class:`~rolecast.errors.ParseError`; an event
that cannot be used (negative time, ending before it starts, after the media's end) is dropped
and reported instead. ``pysubs2`` parses; ``charset-normalizer`` helps with legacy encodings.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from ..errors import InputError, MissingDependencyError, ParseError
from .encoding import decode
from .kinds import DIALOGUE, classify
from .languages import language_of, normalize_language, split_bilingual
from .markup import clean
from .speakers import split_prefix, split_prefixes

MAX_BYTES = 32 * 1024 * 1024
FORMATS = {".ass": "ass", ".ssa": "ssa", ".srt": "srt", ".vtt": "vtt"}
BILINGUAL_SHARE = 0.3  # with primary_language="auto", split only when this share of dialogue is


@dataclass(frozen=True)
class SubLine:
    """One subtitle event, cleaned. Times in seconds; ``index`` is the 1-based event number.

    ``text`` is in the primary language, ``alt_text`` the other language of a bilingual event
    (else None). ``kind`` is ``dialogue``, ``sign`` or ``song``; ``reason`` names the rule that
    made it a sign or song (``""`` for dialogue). ``style`` is the ASS style name.
    """

    index: int
    start: float
    end: float
    text: str
    alt_text: str | None
    speaker_hint: str | None
    kind: str
    reason: str
    style: str


@dataclass(frozen=True)
class Subtitles:
    """A read subtitle file: its lines in time order, and what was found or left out.

    ``dropped`` says which events were left out and why; ``clipped`` counts events whose end
    was cut to the media duration; ``primary_language`` is the language kept as ``text`` in
    bilingual events: the one asked for, or the one found with ``"auto"`` (None when the file
    was found not to be bilingual); ``notes`` are the parser's warnings.
    """

    lines: tuple[SubLine, ...]
    encoding: str
    format: str
    dropped: tuple[str, ...]
    clipped: int
    primary_language: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def dialogue(self) -> tuple[SubLine, ...]:
        return tuple(ln for ln in self.lines if ln.kind == DIALOGUE)


@dataclass
class _Event:
    index: int
    start: float
    end: float
    lines: list[str]
    languages: list[str | None]
    speaker: str | None  # from the ASS Name field or a WebVTT voice
    kind: str
    reason: str
    style: str


def read_subtitles(
    data: bytes,
    name: str,
    *,
    duration: float | None = None,
    primary_language: str = "auto",
    encoding: str | None = None,
    max_bytes: int = MAX_BYTES,
) -> Subtitles:
    """Read the subtitle file ``name`` (used for its extension and in messages) from ``data``.

    The format comes from the extension (``.ass``, ``.ssa``, ``.srt``, ``.vtt``), unless the
    content plainly is another of these four; without a known extension, from the content.
    ``duration`` (seconds) is the media's length: events ending after it are clipped, events
    starting at or after it dropped. ``primary_language`` is ``"auto"`` (the language most
    bilingual events have first; no split unless at least 30% of the dialogue is bilingual) or
    a code like ``"zh"``, ``"ja"``, ``"en"``. ``encoding`` forces a text encoding instead of
    detecting it; files over ``max_bytes`` are refused.
    """
    primary = normalize_language(primary_language)
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"the media duration must be a positive number of seconds: {duration}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ParseError(f"too large for a subtitle file ({len(data)} bytes > {max_bytes})", name)
    if not data.strip():
        raise ParseError("empty file", name)
    text, used = decode(data, name, encoding)
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ParseError("empty file", name)
    fmt = _format_of(text, name)
    subs, notes = _parse(text, fmt, name)
    if not subs.events:
        raise ParseError(f"no subtitle events found (read as {fmt.upper()}, {used})", name)
    events, dropped, clipped = _events(subs, fmt, duration)
    events = _merge_same_times(events)
    chosen = _primary(events, primary)
    lines = sorted((_line(ev, chosen) for ev in events), key=lambda ln: (ln.start, ln.index))
    return Subtitles(tuple(lines), used, fmt, tuple(dropped), clipped, chosen, tuple(notes))


def _pysubs2() -> Any:
    try:
        import pysubs2
    except ImportError:
        raise MissingDependencyError("reading subtitles", "pysubs2", "ingest") from None
    return pysubs2


def _format_of(text: str, name: str) -> str:
    """The pysubs2 format: from the extension, unless the content plainly is another of ours.

    pysubs2's detection names one format only when a single one fits (``[V4+ Styles]`` for
    ASS, ``[V4 Styles]`` for SSA, a leading ``WEBVTT``, SRT time lines), so a WebVTT file
    named ``.srt`` or an SSA file named ``.ass`` is read as what it is.
    """
    by_name = FORMATS.get(PurePath(name).suffix.lower())
    try:
        found = _pysubs2().formats.autodetect_format(text[:10000])
    except Exception as exc:  # pysubs2 raises its own errors for unknown or ambiguous content
        if by_name:
            return by_name
        raise ParseError(f"not a subtitle file pysubs2 recognises ({_short(exc)})", name) from None
    if found in FORMATS.values():
        return str(found)
    if by_name:
        return by_name
    raise ParseError(f"unsupported format {found!r}: use ASS, SSA, SRT or WebVTT", name)


def _parse(text: str, fmt: str, name: str) -> tuple[Any, list[str]]:
    """pysubs2's SSAFile and its warnings; any failure becomes a ParseError."""
    pysubs2 = _pysubs2()
    options = {"keep_html_tags": True} if fmt in ("srt", "vtt") else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            subs = pysubs2.SSAFile.from_string(text, format_=fmt, **options)
        except Exception as exc:  # malformed input makes pysubs2 raise many kinds of errors
            raise ParseError(f"malformed {fmt.upper()} file: {_short(exc)}", name) from None
    return subs, [str(w.message) for w in caught]


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _events(subs: Any, fmt: str, duration: float | None) -> tuple[list[_Event], list[str], int]:
    """Usable events (timed, cleaned, classified), what was dropped, and how many clipped."""
    events: list[_Event] = []
    dropped: list[str] = []
    clipped = 0
    for index, ev in enumerate(subs.events, 1):
        if ev.is_comment:
            continue
        start, end = ev.start / 1000, ev.end / 1000
        problem = _timing_problem(start, end, duration)
        if problem:
            dropped.append(f"event {index}: {problem}")
            continue
        if duration is not None and end > duration:
            end, clipped = duration, clipped + 1
        cleaned = clean(ev.text, fmt)
        if not cleaned.lines:
            continue  # nothing visible: a drawing, an empty event
        style = subs.styles.get(ev.style)
        alignment = int(style.alignment) if style is not None else None
        kind, reason = classify(
            ev.style, alignment, cleaned.tags, cleaned.drawing, ev.effect, cleaned.lines
        )
        speaker = ev.name.strip() or _one_voice(cleaned.voices)
        languages = [language_of(split_prefix(ln)[1]) for ln in cleaned.lines]
        lines = list(cleaned.lines)
        events.append(_Event(index, start, end, lines, languages, speaker, kind, reason, ev.style))
    return events, dropped, clipped


def _timing_problem(start: float, end: float, duration: float | None) -> str | None:
    if start < 0 or end < 0:
        return f"negative time ({_clock(start)} to {_clock(end)})"
    if end < start:
        return f"ends before it starts ({_clock(end)} < {_clock(start)})"
    if duration is not None and start >= duration:
        return f"starts after the end of the media ({_clock(start)} >= {_clock(duration)})"
    return None


def _clock(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    ms = round(abs(seconds) * 1000)
    return f"{sign}{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _one_voice(voices: tuple[str, ...]) -> str | None:
    """The WebVTT voice of a cue, or None when it has none or several different ones."""
    return voices[0] if voices and len(set(voices)) == 1 else None


def _merge_same_times(events: list[_Event]) -> list[_Event]:
    """Join dialogue events with identical times whose lines are each in a different language.

    Some bilingual files give each language its own event; this makes them one event, in file
    order, keeping the first event's number and style.
    """
    groups: dict[tuple[float, float], list[_Event]] = {}
    for ev in events:
        if ev.kind == DIALOGUE:
            groups.setdefault((ev.start, ev.end), []).append(ev)
    gone: set[int] = set()
    for group in groups.values():
        langs = [{lang for lang in ev.languages if lang} for ev in group]
        if len(group) < 2 or any(len(s) != 1 for s in langs):
            continue
        if len(set().union(*langs)) != len(group):
            continue  # two events in one language: two speakers talking at once
        first = group[0]
        for other in group[1:]:
            first.lines += other.lines
            first.languages += other.languages
            first.speaker = first.speaker or other.speaker
            gone.add(id(other))
    return [ev for ev in events if id(ev) not in gone]


def _primary(events: list[_Event], primary: str) -> str | None:
    """The language kept as ``text`` in bilingual events; None when nothing is to be split."""
    dialogue = [ev for ev in events if ev.kind == DIALOGUE]
    firsts = [
        next(lang for lang in ev.languages if lang)
        for ev in dialogue
        if len({lang for lang in ev.languages if lang}) >= 2
    ]
    if primary != "auto":
        return primary
    if not firsts or len(firsts) < BILINGUAL_SHARE * len(dialogue):
        return None
    return Counter(firsts).most_common(1)[0][0]


def _line(ev: _Event, primary: str | None) -> SubLine:
    """The event's final line; speaker prefixes are looked for in dialogue only."""
    text, alt = split_bilingual(ev.lines, ev.languages, primary)
    hint = alt_hint = None
    if ev.kind == DIALOGUE:
        hint, text = split_prefixes(text)
        alt_hint, alt = split_prefixes(alt) if alt else (None, alt)
    return SubLine(
        index=ev.index,
        start=ev.start,
        end=ev.end,
        text="\n".join(text),
        alt_text="\n".join(alt) if alt else None,
        speaker_hint=ev.speaker or hint or alt_hint,
        kind=ev.kind,
        reason=ev.reason,
        style=ev.style,
    )
