"""Who speaks next in a scene with several characters. Pure: no backend, no I/O.

    addressed(text, members)                 -> ids named or called in the line, in order
    parse_command(text, members)             -> Command | None   (/next NAME, /narrate ...)
    TurnTaker(members, policy, chime, seed)  .speakers(text, forced) -> ids to answer, in order

A line that names characters (by name or alias) is answered by them, in the order they
are named. Otherwise the policy decides:

- ``round``: the members take turns, starting after the last one who spoke;
- ``all``: every member answers, starting after the last one who spoke;
- ``natural``: the member whose canon the line is closest to (a score the caller gives,
  such as the best retrieval score; by default the last one who spoke, as a conversation
  goes on with whoever talked last), then each other member may chime in with the
  ``chime`` chance, drawn from a seeded generator (at most ``max_chime`` of them).

``/next NAME`` makes NAME answer whatever the line; a narrator's line (``/narrate ...``)
sets the scene and is answered by the policy like any line.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError

POLICIES = ("round", "natural", "all")


@dataclass(frozen=True)
class Member:
    """A character in the scene as turn-taking sees it: its id and the names it answers to."""

    id: str
    names: tuple[str, ...]  # name first, then aliases

    @property
    def name(self) -> str:
        return self.names[0]


def check_members(members: Sequence[Member]) -> None:
    """A scene needs two or more different characters, each once."""
    if len(members) < 2:
        raise InputError("a group scene needs at least two characters")
    seen: dict[str, str] = {}
    for m in members:
        if m.id in seen:
            raise InputError(f"{m.name} ({m.id}) is in the scene twice: name each character once")
        seen[m.id] = m.name


def addressed(text: str, members: Sequence[Member]) -> list[str]:
    """The ids of the members the line names, in the order it first names them. A name is
    matched whole: between letters or digits in Latin script it is part of another word."""
    found: list[tuple[int, str]] = []
    for m in members:
        first = None
        for name in m.names:
            if not name.strip():
                continue
            if re.fullmatch(r"[\w .'-]+", name, re.ASCII):  # Latin: whole words only
                hit = re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text, re.I)
            else:
                hit = re.search(re.escape(name), text)
            if hit and (first is None or hit.start() < first):
                first = hit.start()
        if first is not None:
            found.append((first, m.id))
    return [cid for _, cid in sorted(found)]


@dataclass(frozen=True)
class Command:
    """A slash command in the user's line: ``next`` (who answers) or ``narrate``."""

    kind: str
    target: str = ""  # next: the member's id
    text: str = ""  # the rest of the line


def find_member(name: str, members: Sequence[Member]) -> Member:
    wanted = name.strip().lower()
    for m in members:
        if wanted == m.id.lower() or wanted in (n.lower() for n in m.names):
            return m
    known = ", ".join(m.name for m in members)
    raise InputError(f"/next {name}: not in this scene; in it: {known}")


def parse_command(text: str, members: Sequence[Member]) -> Command | None:
    """``/next NAME [line]`` or ``/narrate TEXT``; None for an ordinary line. An unknown
    command or name is an InputError that says what there is."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    word, _, rest = stripped[1:].partition(" ")
    if word == "next":
        name, _, line = rest.strip().partition(" ")
        if not name:
            raise InputError("/next takes a name: /next NAME [what you say]")
        return Command("next", find_member(name, members).id, line.strip())
    if word == "narrate":
        if not rest.strip():
            raise InputError("/narrate takes the scene's text: /narrate 雨停了，门开了")
        return Command("narrate", text=rest.strip())
    raise InputError(f"unknown command /{word}; in a group scene: /next NAME, /narrate TEXT")


@dataclass
class TurnTaker:
    """Decides who answers each line; remembers who spoke last."""

    members: Sequence[Member]
    policy: str = "natural"
    chime: float = 0.3  # natural: the chance another member chimes in after the first
    max_chime: int = 1
    seed: int = 0
    last: str | None = None  # the member who spoke last
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_members(self.members)
        if self.policy not in POLICIES:
            raise InputError(f"unknown turn policy {self.policy!r}; known: {', '.join(POLICIES)}")
        if not 0 <= self.chime <= 1:
            raise InputError(f"the chime-in chance is from 0 to 1, not {self.chime}")
        self._rng = random.Random(self.seed)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.members]

    def _after_last(self) -> list[str]:
        """The members in scene order, starting after the last one who spoke."""
        ids = self.ids
        start = ids.index(self.last) + 1 if self.last in ids else 0
        return ids[start:] + ids[:start]

    def speakers(
        self,
        text: str,
        forced: str | None = None,
        closeness: Callable[[str], Mapping[str, float]] | None = None,
    ) -> list[str]:
        """The ids that answer ``text``, in order; records the last of them as the last
        speaker. ``forced`` (from /next) answers alone; ``closeness(text)`` gives the
        natural policy a score per member (higher: the line is more that member's)."""
        if forced is not None:
            chosen = [forced]
        elif named := addressed(text, self.members):
            chosen = named
        elif self.policy == "round":
            chosen = self._after_last()[:1]
        elif self.policy == "all":
            chosen = self._after_last()
        else:
            chosen = self._natural(text, closeness)
        self.last = chosen[-1]
        return chosen

    def _natural(
        self, text: str, closeness: Callable[[str], Mapping[str, float]] | None
    ) -> list[str]:
        order = self._after_last()
        if closeness is not None:
            scores = closeness(text)
            first = max(order, key=lambda cid: (scores.get(cid, float("-inf")), -order.index(cid)))
        else:
            first = self.last if self.last in order else order[0]
        chosen = [first]
        for cid in order:
            if len(chosen) > self.max_chime:
                break
            if cid != first and self._rng.random() < self.chime:
                chosen.append(cid)
        return chosen
