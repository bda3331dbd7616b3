"""Grow a character's canon into a training set: canon samples, then lines people say to the
character (asked of a backend in requests of ``PER_REQUEST``), each answered through the
character's own Session so that a sample looks exactly like a real turn, each reply checked
by the conversation gate's checks and the in-character rules.

Every backend call is cached by request or line within the scope (character, backend,
model, seed, settings): an interrupted run goes on where it stopped and a rerun makes no
call. Requests are numbered and their lines kept in that order, so a run with 4 requests in
flight gives the same dataset as a run with one.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from ..backends.base import GenerationParams
from ..character.model import Character
from ..errors import InputError, NoReplyError
from ..eval.probes import Probe, rule_violations
from ..eval.report import backend_info, character_digest, to_jsonable
from ..eval.runner import Progress, fresh_session, item_seed, run_items
from ..eval.smoke import SmokeChecker
from .dataset import Manifest, Sample
from .questions import PER_REQUEST, Asked, Keeper, example_pairs, parse_lines, question_messages
from .samples import canon_samples, sample_id
from .split import DEFAULT_SHARE, held_out_scenes

if TYPE_CHECKING:
    from ..eval.report import Cache
    from ..session import Session

QUESTION_PARAMS = GenerationParams(max_tokens=480, temperature=1.0, top_p=0.95)
REQUESTS_PER_LINE = 0.3  # requests made at most per line wanted (10 asked, 3.3 kept at worst)
_PLAIN = Probe("augment", "meta", "", "")  # a line that probes nothing: the general rules only


@dataclass(frozen=True)
class Settings:
    """What a dataset is made with (written into its manifest and its cache scope)."""

    n: int = 100  # generated samples wanted
    seed: int = 0
    held_out: float = DEFAULT_SHARE
    canon: bool = True  # the canon's own lines as samples too
    per_request: int = PER_REQUEST

    def check(self) -> None:
        if self.n < 0:
            raise InputError(f"-n must not be negative, not {self.n}")
        if not 1 <= self.per_request <= 50:
            raise InputError(f"lines per request must be 1 to 50, not {self.per_request}")


def augment_scope(prototype: Session, settings: Settings) -> dict[str, Any]:
    """What every cached call depends on besides its own key."""
    return {
        "eval": "augment",
        "character": character_digest(prototype.character),
        **backend_info(prototype.llm),
        "params": to_jsonable(prototype.params),
        "question_params": to_jsonable(QUESTION_PARAMS),
        "order": prototype.order,
        "embedder": prototype.index.embedder.name if prototype.index else None,
        "seed": settings.seed,
        "held_out": settings.held_out,
        "per_request": settings.per_request,
    }


_NAME_ONLY = re.compile(r"^\s*[^\s:：「」]{1,16}\s*[:：]\s*$")  # "王小川:" and nothing said


def filter_reply(checker: SmokeChecker, character: Character, line: str, reply: str) -> list[str]:
    """The reasons a reply is not fit to train on (empty when it is)."""
    if _NAME_ONLY.match(reply):
        return ["name only"]
    found = list(checker.check(reply, line))
    for violation in rule_violations(reply, character, _PLAIN):
        rule = violation.split(":", 1)[0]
        if rule not in found:
            found.append(rule)
    return found


def augment(
    prototype: Session,
    settings: Settings = Settings(),
    *,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Callable[[str], Progress | None] | None = None,
) -> tuple[Manifest, list[Sample]]:
    """The dataset: its manifest (held-out scenes, settings, drops per reason) and samples."""
    settings.check()
    character = prototype.character
    llm = prototype.llm
    held = frozenset(held_out_scenes(character, settings.held_out, settings.seed))
    samples = canon_samples(prototype, held, settings.seed) if settings.canon else []
    if prototype.index is not None:
        embedder = prototype.index.embedder
    else:
        from ..retrieval.embedders import get_embedder

        embedder = get_embedder("use")
    keeper = Keeper(embedder, character)

    def ask(i: int) -> dict[str, str]:
        rng = random.Random(item_seed(settings.seed, "examples", i))
        messages = question_messages(
            character, example_pairs(character, rng=rng, held_out=held), settings.per_request
        )
        params = replace(QUESTION_PARAMS, seed=item_seed(settings.seed, "questions", i))
        return {"text": "".join(llm.stream(messages, params))}

    limit = max(1, math.ceil(settings.n * REQUESTS_PER_LINE)) if settings.n else 0
    made = 0
    asked_progress = progress("asking") if progress else None
    while len(keeper.kept) < settings.n and made < limit:
        short = settings.n - len(keeper.kept)
        batch = list(range(made, min(limit, made + max(workers, math.ceil(short / 3)))))
        for value in run_items(
            batch,
            ask,
            key=lambda i: {"phase": "questions", "request": i},
            cache=cache,
            workers=workers,
            progress=asked_progress,
        ):
            keeper.keep(parse_lines(value["text"], character))
        made = batch[-1] + 1
    lines = keeper.kept[: settings.n]
    checker = SmokeChecker(character)
    dropped: Counter[str] = Counter(keeper.dropped)
    if len(lines) < settings.n:
        dropped["not enough new lines"] += settings.n - len(lines)

    def answer(a: Asked) -> dict[str, Any]:
        session = fresh_session(prototype, item_seed(settings.seed, "reply", a.speaker, a.text))
        report = session.prepare(a.text, a.speaker, exclude=held)
        error = ""
        try:
            for _ in session.say(a.text, a.speaker, report=report):
                pass
        except NoReplyError as exc:  # the session gave up on its tries: filtered out as empty
            error = str(exc)  # (a backend that fails stops the run: nothing is cached for it)
        return {
            "messages": report.assembly.messages,
            "retrieved": list(report.assembly.scene_ids),
            "reply": "" if error else report.reply,
            "error": error,
        }

    values = run_items(
        lines,
        answer,
        key=lambda a: {"phase": "reply", "speaker": a.speaker, "text": a.text},
        cache=cache,
        workers=workers,
        progress=progress("answering") if progress else None,
    )
    info = backend_info(llm)
    for a, value in zip(lines, values, strict=True):
        verdicts = filter_reply(checker, character, a.text, value["reply"])
        if verdicts:
            dropped.update(verdicts[:1])  # counted once, under its first reason
            continue
        samples.append(
            Sample(
                sample_id("generated", character.id, a.speaker, a.text),
                "generated",
                tuple(value["messages"]),
                value["reply"],
                {
                    "scenes": [],
                    "retrieved": value["retrieved"],
                    "asked_by": a.speaker,
                    **info,
                    "seed": item_seed(settings.seed, "reply", a.speaker, a.text),
                },
            )
        )
    manifest = Manifest(
        character={
            "id": character.id,
            "name": character.name,
            "language": character.language,
            "digest": character_digest(character),
        },
        held_out=sorted(held, key=[s.id for s in character.scenes].index),
        split={"share": settings.held_out, "seed": settings.seed},
        settings={**asdict(settings), **info, "requests": made, "lines_kept": len(lines)},
        dropped=dict(dropped),
    )
    return manifest, samples
