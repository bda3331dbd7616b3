"""A conversation with several characters: one Session per character, one shared history.

    scene = GroupScene.of([session_a, session_b, ...], policy="natural")
    for who, piece in scene.say("春日，今天去哪？"):   # who: the character id answering
        ...

Each character answers through its own Session, so its prompt holds its own persona, its own
canon and its own rules, assembled as in a one-to-one chat; the shared history goes in as that
session's history, every line under its speaker's name (another character's line reads to it
as someone else speaking, the user's as the user's). What a character is sent with its lines
(the canon of the cache order) stays its own: the shared history keeps the words only. When a
second character answers in the same turn, it answers the line before it. Each character's
retrieved scenes where another member of the scene speaks come first: the canon has them
together.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from ..backends.base import GenerationParams
from ..errors import InputError, RolecastError
from ..memory import Memory, transcript
from ..prompt.assemble import Turn, template
from ..session import Session
from .turns import Member, TurnTaker, addressed, parse_command

WHO = ("auto", "ask", "rule")


def member_of(session: Session) -> Member:
    c = session.character
    return Member(c.id, (c.name, *c.aliases))


@dataclass
class GroupScene:
    sessions: dict[str, Session]  # by character id, in the scene's order
    taker: TurnTaker
    user_role: str = "user"
    narrator: str = "旁白"
    history: list[Turn] = field(default_factory=list)
    # natural turns: ask the backend who speaks next ("ask"), or take the character whose
    # canon the line is closest to ("rule", cheap); "auto" asks any backend but a small local
    # model, which names whoever the example names
    who: str = "auto"

    @classmethod
    def of(
        cls,
        sessions: Sequence[Session],
        policy: str = "natural",
        chime: float = 0.3,
        seed: int = 0,
        user_role: str | None = None,
        who: str = "auto",
    ) -> GroupScene:
        """A scene of these sessions' characters (two or more, each once); the user speaks as
        ``user_role`` (default: the first character's user role)."""
        if who not in WHO:
            raise InputError(f"unknown way to pick who speaks {who!r}; known: {', '.join(WHO)}")
        members = [member_of(s) for s in sessions]
        taker = TurnTaker(members, policy, chime, seed=seed)  # checks the members
        for s, me in zip(sessions, members, strict=True):  # canon with the others in it first
            s.together = frozenset(n for m in members if m is not me for n in m.names)
        first = sessions[0].character
        narrator = first.narrators[0] if first.narrators else "旁白"
        return cls(
            {s.character.id: s for s in sessions},
            taker,
            user_role or first.user_role,
            narrator,
            who=who,
        )

    @property
    def members(self) -> list[Member]:
        return list(self.taker.members)

    @property
    def memory(self) -> Memory | None:
        return next(iter(self.sessions.values())).memory

    def remember_with(self, memory: Memory) -> None:
        """One memory for the scene: every character recalls from the shared history."""
        for s in self.sessions.values():
            s.memory = memory

    def resume(self, history: Sequence[Turn]) -> None:
        """Go on from a saved scene: its history, and whoever spoke last speaks last."""
        self.history = list(history)
        names = {n: m.id for m in self.members for n in m.names}
        self.taker.last = next(
            (names[t.speaker] for t in reversed(self.history) if t.speaker in names), None
        )

    def remember(self) -> str:
        """Fold what has left the history window into the scene's summary (see
        ``Session.remember``), through the first character's session."""
        session = next(iter(self.sessions.values()))
        session.history = list(self.history)
        return session.remember()

    @property
    def asks(self) -> bool:
        """Whether natural turns ask the backend who speaks next."""
        if self.who != "auto":
            return self.who == "ask"
        return next(iter(self.sessions.values())).llm.name not in ("local", "scripted", "echo")

    def scores(self, text: str) -> dict[str, float]:
        """Per character, how much the line is theirs: 1 for the one the backend names (when
        the scene asks), else ``closeness``."""
        if self.asks:
            named = self.ask_who(text)
            if named is not None:
                return {cid: float(cid == named) for cid in self.sessions}
        return self.closeness(text)

    def ask_who(self, text: str, recent: int = 6) -> str | None:
        """The member the backend says would speak next after ``text``; None when its
        answer names nobody in the scene (or it fails): the rule decides then."""
        first = next(iter(self.sessions.values()))
        names = "、".join(m.name for m in self.members)
        system = template("who", first.character.language).substitute(names=names).strip()
        lines = transcript([*self.history[-recent:]], first.character)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": lines}]
        try:
            answer = "".join(
                first.llm.stream(messages, GenerationParams(max_tokens=12, temperature=0.0, seed=0))
            )
        except RolecastError:
            return None
        found = addressed(answer, self.members)
        return found[0] if found else None

    def closeness(self, text: str) -> dict[str, float]:
        """Per character, how close ``text`` comes to its canon: the best cosine between the
        line and a line of its best scene (comparable across characters, unlike fused ranks)."""
        out = {}
        for cid, s in self.sessions.items():
            hits = s.index.search(text, 1, "dense") if s.index is not None else []
            out[cid] = hits[0].dense if hits else 0.0
        return out

    def say(self, text: str, as_role: str | None = None) -> Generator[tuple[str, str], None, None]:
        """The user's line (or a /next or /narrate command) and the answers it gets, streamed
        as (character id, piece). The shared history gains each reply once it is complete."""
        command = parse_command(text, self.members)
        speaker, forced = as_role or self.user_role, None
        if command is not None and command.kind == "narrate":
            speaker, text = self.narrator, command.text
        elif command is not None:
            forced, text = command.target, command.text
        if not text.strip():
            if forced is None or not self.history:
                raise InputError("empty message: say something")
            line = self.history[-1]  # /next NAME alone: NAME answers the last line
            earlier = self.history[:-1]
        else:
            line = Turn(speaker, text.strip())
            earlier = list(self.history)
            self.history.append(line)
        for cid in self.taker.speakers(line.text, forced, self.scores):
            session = self.sessions[cid]
            session.history = list(earlier)
            yield from ((cid, piece) for piece in session.say(line.text, line.speaker))
            assert session.last is not None
            reply = Turn(session.character.name, session.last.reply)
            self.history.append(reply)
            earlier, line = self.history[:-1], reply  # the next one answers this reply
