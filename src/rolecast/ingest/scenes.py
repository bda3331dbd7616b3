"""Dialogue lines grouped into scenes, and scenes turned into canon.

:func:`group_scenes` cuts at silences longer than ``gap`` and splits scenes that are too long
at their longest pause. :func:`make_scenes` turns the groups into
:class:`~rolecast.character.model.Scene` objects with ids ``ep<episode>-s<NNN>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from ..character.model import Line, Scene
from ..errors import InputError
from .kinds import DIALOGUE
from .subtitles import SubLine

UNKNOWN_SPEAKER = "?"  # speaker of a line nobody could attribute: visible, not narration
_EPISODE = re.compile(r"[A-Za-z0-9_.-]+")


def group_scenes(
    lines: Iterable[SubLine], gap: float = 6.0, max_lines: int = 40, max_seconds: float = 240.0
) -> list[list[SubLine]]:
    """The dialogue lines of ``lines``, in their order, cut into scenes.

    A scene ends before a line that starts more than ``gap`` seconds after every earlier line of
    the scene has ended. A scene of more than ``max_lines`` lines or longer than
    ``max_seconds`` is split at its longest pause (the middlemost of equal ones), again until
    every part fits; a single line is never split. Signs and songs are left out.
    """
    if gap < 0 or max_lines < 1 or not max_seconds > 0:
        raise InputError("group_scenes needs gap >= 0, max_lines >= 1 and max_seconds > 0")
    scenes: list[list[SubLine]] = []
    current: list[SubLine] = []
    last_end = 0.0
    for ln in lines:
        if ln.kind != DIALOGUE:
            continue
        if current and ln.start - last_end > gap:
            scenes.append(current)
            current = []
        last_end = max(last_end, ln.end) if current else ln.end
        current.append(ln)
    if current:
        scenes.append(current)
    out: list[list[SubLine]] = []
    for scene in scenes:
        out += _split_long(scene, max_lines, max_seconds)
    return out


def _split_long(scene: list[SubLine], max_lines: int, max_seconds: float) -> list[list[SubLine]]:
    """``scene`` split at longest pauses until each part fits (iterative: no recursion limit)."""
    out: list[list[SubLine]] = []
    todo = [scene]
    while todo:
        part = todo.pop()
        if len(part) == 1 or (len(part) <= max_lines and _span(part) <= max_seconds):
            out.append(part)
            continue
        cut = _longest_pause(part)
        todo += [part[cut:], part[:cut]]  # the first half is popped, hence emitted, first
    return out


def _span(part: Sequence[SubLine]) -> float:
    return max(ln.end for ln in part) - min(ln.start for ln in part)


def _longest_pause(part: Sequence[SubLine]) -> int:
    """Index ``i`` (1 <= i < len) of the line after the longest silence in ``part``."""
    best, best_key = 1, (float("-inf"), 0.0)
    last_end = part[0].end
    middle = len(part) / 2
    for i in range(1, len(part)):
        key = (part[i].start - last_end, -abs(i - middle))
        if key > best_key:
            best, best_key = i, key
        last_end = max(last_end, part[i].end)
    return best


def make_scenes(
    groups: Iterable[Sequence[SubLine]],
    episode: int | str,
    speaker_of: Callable[[SubLine], str | None] | None = None,
    title_of: Callable[[Sequence[SubLine]], str] | None = None,
) -> list[Scene]:
    """Canon scenes ``ep<episode>-s001``, ``-s002``... from groups of :func:`group_scenes`.

    ``speaker_of`` names each line's speaker (default: its ``speaker_hint``). When it returns
    None the line's speaker is :data:`UNKNOWN_SPEAKER` (``"?"``), so unattributed lines stay
    visible instead of passing for narration; return ``""`` to make a line narration on purpose.
    ``title_of`` gives a scene's title (default ``""``). Each ``Line`` keeps the primary text,
    its line breaks made spaces (a canon line is one line), and its start and end; empty groups
    are skipped.
    """
    ep = str(episode)
    if not _EPISODE.fullmatch(ep):
        raise InputError(f"an episode must be letters, digits, '_', '.' or '-': {ep!r}")
    name_of = speaker_of or (lambda ln: ln.speaker_hint)
    scenes: list[Scene] = []
    for group in groups:
        if not group:
            continue
        lines = tuple(
            Line(_speaker(name_of(ln)), " ".join(ln.text.split("\n")), start=ln.start, end=ln.end)
            for ln in group
        )
        title = title_of(group) if title_of else ""
        scenes.append(Scene(f"ep{ep}-s{len(scenes) + 1:03d}", title, lines))
    return scenes


def _speaker(name: str | None) -> str:
    return UNKNOWN_SPEAKER if name is None else name.strip()


MIN_SOLO = 0.6  # seconds: the shortest stretch of a line heard alone that is worth a clip


def solo_spans(
    lines: Sequence[SubLine], min_solo: float = MIN_SOLO
) -> dict[int, tuple[float, float]]:
    """For each dialogue line, the longest stretch of its time that no other dialogue line
    covers: the part of its audio that holds only its own speaker (line index -> start, end).

    A line that overlaps no other keeps its own times. A line whose longest lone stretch is
    shorter than ``min_solo`` seconds is left out: its audio is mixed with another voice.
    """
    talk = sorted((ln for ln in lines if ln.kind == DIALOGUE), key=lambda ln: (ln.start, ln.end))
    out: dict[int, tuple[float, float]] = {}
    for i, ln in enumerate(talk):
        # the other lines that cut into this one, as intervals clipped to it
        cuts = []
        for j, other in enumerate(talk):
            if other.start >= ln.end:
                break
            if j == i or other.end <= ln.start:
                continue
            cuts.append((max(other.start, ln.start), min(other.end, ln.end)))
        best, at = (ln.start, ln.end), ln.start
        if cuts:
            best = (ln.start, ln.start)
            for s, e in sorted(cuts):
                if s - at > best[1] - best[0]:
                    best = (at, s)
                at = max(at, e)
            if ln.end - at > best[1] - best[0]:
                best = (at, ln.end)
        if best[1] - best[0] >= min_solo or not cuts and best[1] > best[0]:
            out[ln.index] = best
    return out
