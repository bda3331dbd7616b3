"""Samples from the canon itself: every line of the character that answers someone, with the
lines before it in its scene as the conversation so far, put through the character's
Session as a real turn would be (the scene itself kept out of retrieval, so the prompt never
holds the line it teaches)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import TYPE_CHECKING

from ..eval.canon import HeldOut, candidate_turns, prepare_turn
from .dataset import Sample

if TYPE_CHECKING:
    from ..session import Session


def sample_id(kind: str, *key: object) -> str:
    """A short stable id: the same source gives the same id on every run."""
    text = "\0".join(str(part) for part in (kind, *key))
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def canon_sample(
    prototype: Session, turn: HeldOut, seed: int = 0, held_out: Collection[str] = ()
) -> Sample:
    """One canon turn as a sample: the prompt a session like ``prototype`` assembles for the
    line the character answers, after the scene's earlier lines, and the canon line. Neither
    the turn's own scene nor a ``held_out`` one is retrieved into the prompt."""
    _, _, report = prepare_turn(prototype, turn, seed, held_out)
    character = prototype.character
    return Sample(
        sample_id("canon", character.id, turn.scene_id, turn.index),
        "canon",
        tuple(report.assembly.messages),
        turn.target,
        {
            "scenes": [turn.scene_id],
            "line": turn.index,
            "retrieved": list(report.assembly.scene_ids),
        },
    )


def canon_samples(
    prototype: Session, held_out: Collection[str] = (), seed: int = 0
) -> list[Sample]:
    """A sample for each answering line of the character outside ``held_out`` scenes (which
    are kept out of every prompt's retrieved canon too)."""
    held = frozenset(held_out)
    turns = [t for t in candidate_turns(prototype.character) if t.scene_id not in held]
    return [canon_sample(prototype, t, seed, held) for t in turns]
