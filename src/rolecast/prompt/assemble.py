"""Assemble the chat messages of one turn under token budgets.

    classic order: system = persona + canon;  history ...;  user = the new line
    split order:   system = persona + pinned canon;  history ...;
                   system = retrieved canon;  user = the new line
    cache order:   system = persona + pinned canon;  history ...;
                   user = retrieved canon + the new line
The split and cache orders keep what is stable first and what changes each turn last, so
a local backend can reuse its KV cache across turns (the kept history moves in steps).
The split order keeps the canon and its instructions out of the user's turn: a small
model answers whatever the user turn holds, and in the cache order it answered the
instructions.

Budget rules: a scene that does not fit is skipped and filling goes on with the
next; history is taken newest first, the newest turn is shortened rather than
dropped, and filling stops at the first older turn that does not fit; the whole,
counted as the sum of message contents plus a per-message overhead, never exceeds
``Budget.total``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from string import Template
from typing import Literal

from ..character.dialogue import format_line
from ..character.model import Character, Line, Scene, cjk_language
from ..character.personality import dial_text
from .tokens import TokenCounter, truncate

Order = Literal["classic", "split", "cache"]
ORDERS: tuple[Order, ...] = ("classic", "split", "cache")
MESSAGE_OVERHEAD = 4  # tokens a chat template adds around each message (role markers, separators)
# of the prompt budget, when the context window is known
CANON_SHARE, HISTORY_SHARE, MEMORY_SHARE = 0.42, 0.33, 0.09
SCENE_SEP = "\n\n"
FOLLOWUP_CANON = 3  # cache order: after the first turn, new canon gets a third of its budget
HISTORY_STEP = 4  # cache order: the kept history starts at a multiple of this many messages
MIN_TOTAL = 2 * MESSAGE_OVERHEAD + 8  # a system and a user message with a few tokens of line
BARE_USER_LINES = True  # the user role's lines without the "名字:「」" dress (see render_turn)


_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str
    canon: str = ""  # cache order: the canon block sent with this line, kept with it in history
    scene_ids: tuple[str, ...] = ()  # the scenes in that block


@dataclass(frozen=True)
class MemoryView:
    """What a conversation remembers beyond its history window, as assembly takes it: a
    running summary of its first ``folded`` turns (which are then not sent as history), the
    facts the user pinned, and earlier turns recalled for this line, best first, each with
    its index in the history (one inside the history sent is left out: it is there already)."""

    summary: str = ""
    pins: tuple[str, ...] = ()
    recalled: tuple[tuple[int, Turn], ...] = ()
    folded: int = 0

    def __bool__(self) -> bool:
        return bool(self.summary or self.pins or self.recalled or self.folded)


@dataclass(frozen=True)
class Budget:
    canon: int = 1500
    history: int = 1200
    total: int | None = None  # everything sent; None when the model's context is unknown
    memory: int = 300  # the summary, the pinned facts and the recalled turns together

    def __post_init__(self) -> None:
        if min(self.canon, self.history, self.memory) < 0 or (
            self.total is not None and self.total < 0
        ):
            raise ValueError(f"token budgets must not be negative: {self}")

    @classmethod
    def for_context(
        cls, context_window: int, reply_tokens: int = 512, canon_cap: int | None = None
    ) -> Budget:
        """Budgets derived from a model's context window, leaving room for the reply; the
        canon's share is at most ``canon_cap`` tokens when one is given."""
        total = max(context_window - reply_tokens, 0)
        canon = int(total * CANON_SHARE)
        if canon_cap is not None:
            canon = min(canon, canon_cap)
        return cls(canon, int(total * HISTORY_SHARE), total, int(total * MEMORY_SHARE))


@dataclass
class Assembly:
    messages: list[dict[str, str]]
    parts: dict[str, int]  # tokens: persona, canon, history, line, overhead, total
    scene_ids: list[str]  # scenes included, in prompt order
    skipped_ids: list[str] = field(default_factory=list)  # candidates that did not fit
    history_turns: int = 0  # how many of the newest turns were included
    line_truncated: bool = False
    turn_canon: str = ""  # cache order: the canon block sent with the line (kept with it)
    turn_scene_ids: tuple[str, ...] = ()
    memory_ids: list[int] = field(default_factory=list)  # recalled turns sent (history indexes)


@cache
def template_language(language: str) -> str:
    """The language of the templates a character gets: "zh" for a Chinese or Japanese
    character, "en" otherwise."""
    return "zh" if cjk_language(language) else "en"


def template(kind: str, language: str) -> Template:
    """The package's prompt template ``templates/<kind>_<zh|en>.txt`` (see
    :func:`template_language`)."""
    lang = template_language(language)
    path = resources.files("rolecast.prompt").joinpath("templates", f"{kind}_{lang}.txt")
    return Template(path.read_text("utf-8"))


def reply_rules(character: Character) -> str:
    """The standing instruction after the persona: speak only as the character."""
    return (
        template("reply", character.language)
        .substitute(name=character.name, user=character.user_role)
        .strip()
    )


def persona_text(character: Character) -> str:
    """The persona as the model sees it: without HTML comments (a draft's marker is for
    the person who edits the file, not for the model), followed by the text of the
    character's Big Five dials when it has any (in the system message's stable prefix, so a
    dial costs no KV-cache reuse)."""
    persona = _COMMENT.sub("", character.persona).strip()
    dials = dial_text(character.personality, character.language)
    return f"{persona}\n\n{dials}" if dials and persona else persona or dials


def render_scene(scene: Scene, character: Character) -> str:
    return "\n".join(format_line(ln, character.narrators) for ln in scene.lines)


def render_turn(turn: Turn, character: Character) -> dict[str, str]:
    """A turn as a chat message: the character's own as the assistant's, anyone else's as
    the user's. The user role's lines go as they were said (a line in the canon's
    ``名字:「台词」`` form read to a small model as a script to go on with, and it said
    the line back); narration and other roles keep their names."""
    if character.is_self(turn.speaker):
        return {"role": "assistant", "content": turn.text}
    if BARE_USER_LINES and turn.speaker.strip() == character.user_role:
        line = turn.text
    else:
        line = format_line(Line(turn.speaker, turn.text), character.narrators)
    return {"role": "user", "content": f"{turn.canon}\n\n{line}" if turn.canon else line}


def fixed_texts(character: Character) -> list[str]:
    """The prompt's text that is the same every turn, as the model sees it: the persona,
    the standing rules and the canon block's instructions (what a reply must not recite)."""
    header = canon_block(character, ["\0"]).split("\0")[0]
    return [persona_text(character), reply_rules(character), header]


def memory_block(character: Character, summary: str, pins: Sequence[str]) -> str:
    """The stable part of a conversation's memory: its summary and the pinned facts. It
    changes only when the summary grows or a fact is pinned, so it sits in the system
    message with the persona."""
    parts = []
    if summary.strip():
        parts.append(template("memory", character.language).substitute(summary=summary.strip()))
    if pins:
        listed = "\n".join(f"- {p.strip()}" for p in pins if p.strip())
        parts.append(
            template("pins", character.language).substitute(user=character.user_role, pins=listed)
        )
    return "\n\n".join(p.strip() for p in parts)


def recall_block(character: Character, turns: Sequence[Turn]) -> str:
    """Earlier turns of this conversation recalled for the line, in the order they were said."""
    if not turns:
        return ""
    lines = "\n".join(format_line(Line(t.speaker, t.text), character.narrators) for t in turns)
    return template("recall", character.language).substitute(lines=lines).strip()


def canon_block(character: Character, blocks: Sequence[str]) -> str:
    if not blocks:
        return ""
    return (
        template("canon", character.language)
        .substitute(
            name=character.name,
            source=character.source
            or ("原作" if cjk_language(character.language) else "the original work"),
            scenes=SCENE_SEP.join(blocks),
        )
        .strip()
    )


def _fill_scenes(
    scenes: Sequence[Scene], character: Character, counter: TokenCounter, cap: int
) -> tuple[list[Scene], list[str], list[Scene]]:
    """Scenes that fit in ``cap`` tokens, in order, skipping those that don't."""
    taken: list[Scene] = []
    blocks: list[str] = []
    skipped: list[Scene] = []
    used = counter.count(canon_block(character, ["x"])) if scenes else 0  # header cost
    for scene in scenes:
        block = render_scene(scene, character)
        cost = counter.count(block) + counter.count(SCENE_SEP)
        if block and used + cost <= cap:
            taken.append(scene)
            blocks.append(block)
            used += cost
        else:
            skipped.append(scene)
    while blocks and counter.count(canon_block(character, blocks)) > cap:  # joins can merge tokens
        skipped.append(taken.pop())
        blocks.pop()
    return taken, blocks, skipped


def _shortened_turn(
    turn: Turn, character: Character, counter: TokenCounter, room: int
) -> dict[str, str] | None:
    """The turn rendered with the longest tail of its text that fits in ``room`` tokens."""
    lo, hi = 0, len(turn.text)
    while lo < hi:  # binary search on characters: the speaker prefix costs tokens too
        mid = (lo + hi + 1) // 2
        msg = render_turn(Turn(turn.speaker, turn.text[len(turn.text) - mid :]), character)
        if counter.count(msg["content"]) <= room:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    return render_turn(Turn(turn.speaker, turn.text[len(turn.text) - lo :]), character)


def _fill_history(
    history: Sequence[Turn], character: Character, counter: TokenCounter, cap: int, step: int = 1
) -> list[dict[str, str]]:
    """Newest turns first within ``cap``; the newest is shortened rather than dropped.

    With ``step`` > 1 the kept part starts at a multiple of ``step`` messages, so it stays
    the same (a stable prefix for the KV cache) for several turns between moves. Only the
    turns that may be kept are rendered and counted: a long conversation costs what its
    window costs.
    """
    if step > 1 and history:
        kept: list[tuple[dict[str, str], int]] = []  # newest first
        used = 0
        for turn in reversed(history):
            rendered = render_turn(turn, character)
            cost = counter.count(rendered["content"]) + MESSAGE_OVERHEAD
            if used + cost > cap:
                break
            kept.append((rendered, cost))
            used += cost
        start = len(history) - len(kept)
        aligned = -(-start // step) * step
        if aligned < len(history):
            return [m for m, _ in reversed(kept[: len(history) - aligned])]
    picked: list[dict[str, str]] = []
    used = 0
    for turn in reversed(history):
        msg: dict[str, str] | None = render_turn(turn, character)
        assert msg is not None
        if used + counter.count(msg["content"]) + MESSAGE_OVERHEAD > cap:
            if picked:
                break
            msg = _shortened_turn(turn, character, counter, cap - MESSAGE_OVERHEAD)
            if msg is None:
                break
        picked.append(msg)
        used += counter.count(msg["content"]) + MESSAGE_OVERHEAD
    picked.reverse()
    return picked


def _rank(memory: MemoryView, index: int) -> int:
    """How far down the recall's order a recalled turn came: the worst goes first."""
    return -next(k for k, (i, _) in enumerate(memory.recalled) if i == index)


def history_window(
    character: Character,
    history: Sequence[Turn],
    budget: Budget,
    counter: TokenCounter,
    order: Order = "classic",
) -> int:
    """Where the history an assembly sends starts (an index into ``history``), by the
    history budget alone: what a tight total takes besides is not foreseen."""
    step = 1 if order == "classic" else HISTORY_STEP
    return len(history) - len(_fill_history(history, character, counter, budget.history, step))


def _count(messages: Sequence[dict[str, str]], counter: TokenCounter) -> int:
    return sum(counter.count(m["content"]) + MESSAGE_OVERHEAD for m in messages)


def assemble(
    character: Character,
    scenes: Sequence[Scene],
    history: Sequence[Turn],
    line: Turn,
    budget: Budget,
    counter: TokenCounter,
    order: Order = "classic",
    pinned: Sequence[Scene] = (),
    memory: MemoryView | None = None,
) -> Assembly:
    """The messages for one turn. ``scenes`` are retrieval candidates, best first;
    ``pinned`` scenes go first (and, in cache order, into the stable system message).
    ``memory``: the summary and pinned facts go after the persona (in the split and cache
    orders as a system message of their own, so the persona's message is the same every
    turn), the recalled turns with the turn's canon; both within ``budget.memory``."""
    if order not in ORDERS:
        raise ValueError(f"unknown prompt order {order!r}; known orders: {', '.join(ORDERS)}")
    if budget.total is not None and budget.total < MIN_TOTAL:
        raise ValueError(
            f"a total budget of {budget.total} tokens is below the minimum {MIN_TOTAL}"
        )
    persona = "\n\n".join(p for p in (persona_text(character), reply_rules(character)) if p)
    memory = memory or MemoryView()
    history = history[memory.folded :]
    stable = memory_block(character, memory.summary, memory.pins)
    if stable and counter.count(stable) > budget.memory:
        stable = truncate(counter, stable, budget.memory)
    line_msg = render_turn(line, character)
    line_msg["role"] = "user"
    room = None if budget.total is None else budget.total - 2 * MESSAGE_OVERHEAD
    line_truncated = False
    if room is not None:
        if counter.count(persona) > room // 2:
            persona = truncate(counter, persona, max(room // 2, 0))
        left = room - counter.count(persona)
        if counter.count(line_msg["content"]) > left:
            line_msg = {"role": "user", "content": truncate(counter, line_msg["content"], left)}
            line_truncated = True
    fixed = counter.count(persona) + counter.count(stable) + counter.count(line_msg["content"])

    canon_cap = budget.canon
    pinned_ids = {s.id for s in pinned}
    shown: set[str] = set()
    if order == "cache":  # scenes already in the history stay there; add only new ones
        shown = {sid for t in history for sid in t.scene_ids}
        canon_cap = budget.canon // FOLLOWUP_CANON if shown else budget.canon
    if room is not None:
        canon_cap = max(min(canon_cap, room - fixed), 0)
    candidates = [*pinned, *(s for s in scenes if s.id not in pinned_ids | shown)]
    taken, blocks, skipped = _fill_scenes(candidates, character, counter, canon_cap)
    canon_used = counter.count(canon_block(character, blocks))

    if order == "cache":  # history carries the canon sent with each line: give it the rest
        hist_cap = budget.history + budget.canon - canon_used
        step = HISTORY_STEP
    elif order == "split":
        hist_cap, step = budget.history, HISTORY_STEP
    else:
        hist_cap, step = budget.history, 1
    if room is not None:
        hist_cap = min(hist_cap, room - fixed - canon_used)
    hist_msgs = _fill_history(history, character, counter, max(hist_cap, 0), step)

    # recalled turns older than the history sent, best first, within what the memory has left
    window = memory.folded + len(history) - len(hist_msgs)
    recall_cap = budget.memory - counter.count(stable)
    recalled: list[tuple[int, Turn]] = []
    for index, turn in memory.recalled:
        if index >= window or any(i == index for i, _ in recalled):
            continue
        trial = sorted([*recalled, (index, turn)], key=lambda it: it[0])
        if counter.count(recall_block(character, [t for _, t in trial])) <= recall_cap:
            recalled = trial

    def recall() -> str:
        return recall_block(character, [t for _, t in recalled])

    def build() -> list[dict[str, str]]:
        n_pinned = sum(1 for s in taken if s.id in pinned_ids)
        turn_part = "\n\n".join(
            p for p in (canon_block(character, blocks[n_pinned:]), recall()) if p
        )
        if order == "classic":
            system = "\n\n".join(
                p for p in (persona, stable, canon_block(character, blocks), recall()) if p
            )
            return [
                {"role": "system", "content": system},
                *hist_msgs,
                {"role": "user", "content": line_msg["content"]},
            ]
        # the persona's message stays as it is every turn (a backend keeps its KV state);
        # the memory's stable part follows in a message of its own, then the history
        system = "\n\n".join(p for p in (persona, canon_block(character, blocks[:n_pinned])) if p)
        head = [{"role": "system", "content": system}]
        if stable:
            head.append({"role": "system", "content": stable})
        if order == "split":
            return [
                *head,
                *hist_msgs,
                *([{"role": "system", "content": turn_part}] if turn_part else []),
                {"role": "user", "content": line_msg["content"]},
            ]
        last = "\n\n".join(p for p in (turn_part, line_msg["content"]) if p)
        return [*head, *hist_msgs, {"role": "user", "content": last}]

    messages = build()
    while budget.total is not None and _count(messages, counter) > budget.total:
        if blocks:  # separators and joins can cost a token or two more than counted apart
            skipped.append(taken.pop())
            blocks.pop()
        elif recalled:
            recalled.pop(min(range(len(recalled)), key=lambda k: _rank(memory, recalled[k][0])))
        elif stable:
            stable = ""
        elif hist_msgs:
            hist_msgs.pop(0)
        else:
            over = _count(messages, counter) - budget.total
            content = line_msg["content"]
            if content:
                keep = counter.count(content) - over
                line_msg = {"role": "user", "content": truncate(counter, content, keep)}
                line_truncated = True
            else:  # only the persona is left to give
                persona = truncate(counter, persona, counter.count(persona) - over)
        messages = build()

    parts = {
        "persona": counter.count(persona),
        "canon": counter.count(canon_block(character, blocks)),
        **({"memory": counter.count(stable) + counter.count(recall())} if memory else {}),
        "history": _count(hist_msgs, counter),
        "line": counter.count(line_msg["content"]),
    }
    total = _count(messages, counter)
    parts["overhead"] = MESSAGE_OVERHEAD * len(messages)
    parts["total"] = total
    n_pinned = sum(1 for s in taken if s.id in pinned_ids)
    turn_part = "\n\n".join(p for p in (canon_block(character, blocks[n_pinned:]), recall()) if p)
    return Assembly(
        turn_canon=turn_part if order == "cache" else "",
        memory_ids=[i for i, _ in recalled],
        turn_scene_ids=tuple(s.id for s in taken[n_pinned:]) if order == "cache" else (),
        messages=messages,
        parts=parts,
        scene_ids=[s.id for s in taken],
        skipped_ids=[s.id for s in skipped],
        history_turns=len(hist_msgs),
        line_truncated=line_truncated,
    )
