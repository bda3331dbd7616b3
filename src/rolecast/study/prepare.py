"""`rolecast study prepare`: every system's reply to every prompt, made once and frozen.

The prompts are the study's lines (said with no scene before them) and, per character, held-out
canon turns drawn as `eval canon` draws them (the scene before as context, the line the
character answers; the original line is the "original" system's reply). Each reply is made by a
fresh session of its system's condition (canon retrieval, persona only, bare model) with the
item's own seed, cached as it is made (an interrupted prepare goes on where it stopped), then
all are written to ``replies.json`` with the pairs to judge. A prepared study is frozen: every
rater sees the same texts, and preparing again needs ``force``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from ..backends.base import LLM, GenerationParams
from ..character.model import Character
from ..character.personality import parse_traits, with_dials
from ..errors import InputError, NoReplyError
from ..eval.canon import HeldOut, condition_session, generate, sample_turns
from ..eval.report import Cache, character_digest, reply_code_digest
from ..eval.runner import fresh_session, item_seed
from ..files import write_atomic
from ..retrieval.hybrid import CanonIndex
from .definition import ORIGINAL, Study, System

REPLIES = "replies.json"


@dataclass(frozen=True)
class Item:
    """One prompt: what the rater reads before the two replies."""

    id: str
    character: str
    kind: str  # "line" (a line a user says) or "canon" (a held-out canon turn)
    context: tuple[tuple[str, str], ...]  # (speaker, text) of the scene before, oldest first
    line: tuple[str, str]  # (speaker, text) the character answers
    original: str = ""  # canon: the character's real line


def study_items(study: Study, characters: Mapping[str, Character]) -> list[Item]:
    items = []
    for cid in study.characters:
        c = characters[cid]
        for k, text in enumerate(study.lines):
            items.append(Item(f"{cid}/line{k + 1}", cid, "line", (), (c.user_role, text)))
        if study.canon:
            for h in sample_turns(c, study.canon, study.seed):
                items.append(
                    Item(
                        f"{cid}/{h.scene_id}.{h.index}",
                        cid,
                        "canon",
                        tuple((ln.speaker, ln.text) for ln in h.context[:-1]),
                        (h.line.speaker, h.line.text),
                        h.target,
                    )
                )
    return items


def pair_id(study: Study, item: str, a: str, b: str) -> str:
    """A pair's id: a digest of the study, the item and the two systems, so a made-up or
    altered id names no pair."""
    blob = json.dumps([study.title, list(study.characters), item, a, b], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def study_digest(study: Study) -> str:
    blob = json.dumps(
        {
            "title": study.title,
            "characters": study.characters,
            "lines": study.lines,
            "canon": study.canon,
            "seed": study.seed,
            "systems": [s.settings() for s in study.systems],
        },
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _held_out(item: Item, character: Character) -> HeldOut:
    from ..character.model import Line

    scene, _, index = item.id.split("/", 1)[1].rpartition(".")
    lines = tuple(Line(s, t) for s, t in (*item.context, item.line))
    return HeldOut(scene, int(index), lines, item.original)


def _reply(prototype: Any, item: Item, character: Character, seed: int) -> str:
    if item.kind == "canon":
        return str(generate(prototype, _held_out(item, character), seed)["reply"])
    session = fresh_session(prototype, item_seed(seed, item.id, 0))
    try:
        return session.reply(item.line[1])
    except NoReplyError:
        return ""


def prepare_study(
    study: Study,
    out: Path,
    characters: Mapping[str, Character],
    indexes: Mapping[str, CanonIndex],
    open_llm: Callable[[System], LLM],
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Make (or read from the cache) every reply, write ``out/replies.json`` and return
    what it holds. Raises InputError when the study is prepared already and ``force`` is
    not given: its replies are frozen."""
    path = out / REPLIES
    if path.exists() and not force:
        raise InputError(
            f"{path} exists: the study is prepared and its replies are frozen (raters see "
            "these); --force makes them again"
        )
    missing = [c for c in study.characters if c not in characters]
    if missing:
        raise InputError(f"the study names {missing[0]!r}, which is not installed")
    items = study_items(study, characters)
    replies: dict[str, dict[str, str]] = {it.id: {} for it in items}
    cache = Cache(out / "cache", {"study": "replies", "code": reply_code_digest()})
    work = [(s, it) for s in study.systems if s.condition != ORIGINAL for it in items]
    done = 0
    for system in study.systems:
        if system.condition == ORIGINAL:
            for it in items:
                if it.kind == "canon":
                    replies[it.id][system.id] = it.original
            continue
        llm: LLM | None = None
        prototypes: dict[str, Any] = {}
        try:
            for it in items:
                c = characters[it.character]
                scope = {"system": system.settings(), "character": character_digest(c)}
                key = {"item": asdict(it), "seed": study.seed}
                got = cache.scoped(**scope).get(key)
                if got is None:
                    if llm is None:
                        llm = open_llm(system)
                    if it.character not in prototypes:
                        dialled = with_dials(c, parse_traits(list(system.traits)))
                        params = replace(
                            GenerationParams(),
                            max_tokens=system.max_tokens,
                            temperature=system.temperature,
                        )
                        prototypes[it.character] = condition_session(
                            system.condition,
                            dialled,
                            llm,
                            indexes.get(it.character),
                            params,
                            order=system.order,  # type: ignore[arg-type]
                        )
                    got = _reply(prototypes[it.character], it, c, study.seed)
                    cache.scoped(**scope).put(key, got)
                replies[it.id][system.id] = str(got)
                done += 1
                if progress is not None:
                    progress(done, len(work))
        finally:
            if llm is not None:
                llm.close()
    pairs = []
    skipped = 0
    for it in items:
        for a, b in combinations(study.ids, 2):
            ra, rb = replies[it.id].get(a), replies[it.id].get(b)
            if ra is None or rb is None:
                continue  # the original answers canon turns only
            if not ra.strip() or not rb.strip():
                skipped += 1
                continue
            pairs.append({"id": pair_id(study, it.id, a, b), "item": it.id, "a": a, "b": b})
    data = {
        "title": study.title,
        "digest": study_digest(study),
        "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "question": study.question,
        "second_question": study.second_question,
        "systems": study.ids,
        "items": [asdict(it) for it in items],
        "replies": replies,
        "pairs": pairs,
        "skipped_empty": skipped,
    }
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))
    return data


def read_prepared(out: Path, study: Study) -> dict[str, Any]:
    """The frozen replies of a prepared study; an InputError when there are none or they
    were made for another version of the study file."""
    path = out / REPLIES
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{study.path} is not prepared yet: `rolecast study prepare` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is unreadable: {exc}") from None
    if data.get("digest") != study_digest(study):
        raise InputError(
            f"{path} was prepared for another version of {study.path}: prepare it again "
            "(--force), or put the file back as it was"
        )
    return data


def study_folder(study: Study, out: str | Path | None = None) -> Path:
    """Where a study's replies and report go: ``out``, else ``NAME.study/`` beside the file."""
    return Path(out) if out else study.path.with_suffix(".study")


def systems_used(data: Mapping[str, Any]) -> Sequence[str]:
    return list(data.get("systems", []))
