"""The held-out split: scenes that no training sample may come from, so that `rolecast eval
canon` on them still measures a tuned model on lines it has not seen."""

from __future__ import annotations

import random

from ..character.model import Character
from ..errors import InputError

DEFAULT_SHARE = 0.1  # of the scenes where the character answers someone


def answering_scenes(character: Character) -> list[str]:
    """Ids of the scenes with at least one line of the character that answers another
    speaker (the scenes `eval canon` draws its turns from), in canon order."""
    from ..eval.canon import candidate_turns

    return list(dict.fromkeys(t.scene_id for t in candidate_turns(character)))


def held_out_scenes(
    character: Character, share: float = DEFAULT_SHARE, seed: int = 0
) -> tuple[str, ...]:
    """A seeded sample of ``share`` of the answering scenes (at least one when ``share`` is
    above 0), in canon order; the rest stay for training."""
    if not 0 <= share < 1:
        raise InputError(f"the held-out share must be at least 0 and below 1, not {share}")
    scenes = answering_scenes(character)
    if share == 0:
        return ()
    if len(scenes) < 2:
        raise InputError(
            f"{character.name} answers someone in {len(scenes)} scene(s): at least 2 are needed "
            "to hold one out (or give a held-out share of 0)"
        )
    n = min(len(scenes) - 1, max(1, round(share * len(scenes))))
    chosen = set(random.Random(seed).sample(scenes, n))
    return tuple(s for s in scenes if s in chosen)
