"""A study's definition, read from TOML. Pure: reads one file, checks it, says what is wrong.

    title = "林小满: which sounds more like her?"
    characters = ["xiaoman"]
    seed = 1
    question = "Which reply sounds more like the character?"   # optional
    second_question = "Which is better written?"              # optional

    [prompts]
    lines = ["你好，你是谁？", "今天的面多少钱？"]   # lines a user says, with no scene before
    canon = 6                                   # held-out canon turns per character

    [[systems]]
    id = "canon"
    condition = "canon"            # canon | persona | bare | original (the canon line itself)
    backend = "local"              # optional: backend, model, lora, traits, max_tokens,
    model = "qwen2.5-coder-0.5b"   # temperature, order
    traits = ["O=high"]

Every pair of systems is judged on every prompt they both answer ("original" answers only the
canon prompts: the real line beside a generated one is the Turing condition).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import tomllib
from ..errors import InputError

CONDITIONS = ("canon", "persona", "bare", "original")
ORIGINAL = "original"
QUESTION = "Which reply sounds more like the character?"
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
STUDY_KEYS = {"title", "characters", "seed", "question", "second_question", "prompts", "systems"}
PROMPT_KEYS = {"lines", "canon"}
SYSTEM_KEYS = {
    "id",
    "condition",
    "backend",
    "model",
    "lora",
    "traits",
    "max_tokens",
    "temperature",
    "order",
}
MAX_LINES = 500
MAX_CANON = 200


@dataclass(frozen=True)
class System:
    id: str
    condition: str
    backend: str | None = None
    model: str | None = None
    lora: str | None = None
    traits: tuple[str, ...] = ()
    max_tokens: int = 160
    temperature: float = 0.7
    order: str | None = None

    def settings(self) -> dict[str, Any]:
        """What its replies depend on (a cache's scope)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}


@dataclass(frozen=True)
class Study:
    title: str
    characters: tuple[str, ...]
    systems: tuple[System, ...]
    lines: tuple[str, ...] = ()
    canon: int = 0
    seed: int = 0
    question: str = QUESTION
    second_question: str = ""
    path: Path = field(default=Path("study.toml"), compare=False)

    def system(self, sid: str) -> System:
        for s in self.systems:
            if s.id == sid:
                return s
        raise InputError(f"no system {sid!r} in the study; it has {', '.join(self.ids)}")

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.systems]


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _unknown(table: dict[str, Any], known: set[str], path: Path, where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise InputError(
            f"{_where(path, where)}: unknown key {extra[0]!r}; known: {', '.join(sorted(known))}"
        )


def _str(value: Any, path: Path, key: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{_where(path, key)} must be a non-empty string")
    return value.strip()


def _int(value: Any, path: Path, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(f"{_where(path, key)} must be a whole number from {lo} to {hi}")
    return value


def parse_study(data: dict[str, Any], path: Path) -> Study:
    _unknown(data, STUDY_KEYS, path, "the study")
    title = _str(data.get("title"), path, "title")
    chars = data.get("characters")
    if isinstance(chars, str):
        chars = [chars]
    if not isinstance(chars, list) or not chars or not all(isinstance(c, str) for c in chars):
        raise InputError(f"{_where(path, 'characters')} must list character ids")
    if len(set(chars)) != len(chars):
        raise InputError(f"{_where(path, 'characters')} names a character twice")
    prompts = data.get("prompts", {})
    if not isinstance(prompts, dict):
        raise InputError(f"{_where(path, 'prompts')} must be a table")
    _unknown(prompts, PROMPT_KEYS, path, "[prompts]")
    lines = prompts.get("lines", [])
    if not isinstance(lines, list) or not all(isinstance(x, str) and x.strip() for x in lines):
        raise InputError(f"{_where(path, 'prompts.lines')} must be a list of non-empty lines")
    if len(lines) > MAX_LINES:
        raise InputError(f"{_where(path, 'prompts.lines')}: at most {MAX_LINES} lines")
    canon = _int(prompts.get("canon", 0), path, "prompts.canon", 0, MAX_CANON)
    if not lines and not canon:
        raise InputError(f"{_where(path, '[prompts]')}: give lines, canon turns, or both")
    raw = data.get("systems")
    if not isinstance(raw, list) or len(raw) < 2:
        raise InputError(f"{_where(path, '[[systems]]')}: a study compares two systems or more")
    systems = []
    for k, table in enumerate(raw):
        where = f"systems[{k}]"
        if not isinstance(table, dict):
            raise InputError(f"{_where(path, where)} must be a table")
        _unknown(table, SYSTEM_KEYS, path, where)
        sid = _str(table.get("id"), path, f"{where}.id")
        assert sid is not None
        if not _ID.fullmatch(sid):
            raise InputError(
                f"{_where(path, where + '.id')}: {sid!r} is not an id (lower-case letters, "
                "digits, '_', '-', '.'; at most 40)"
            )
        condition = _str(table.get("condition", "canon"), path, f"{where}.condition")
        if condition not in CONDITIONS:
            raise InputError(
                f"{_where(path, where + '.condition')}: unknown condition {condition!r}; "
                f"known: {', '.join(CONDITIONS)}"
            )
        traits = table.get("traits", [])
        if isinstance(traits, str):
            traits = [traits]
        if not isinstance(traits, list) or not all(isinstance(t, str) for t in traits):
            raise InputError(f'{_where(path, where + ".traits")} must list dials ("O=high")')
        temperature = table.get("temperature", 0.7)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not (0 <= temperature <= 2)
        ):
            raise InputError(f"{_where(path, where + '.temperature')} must be from 0 to 2")
        order = _str(table.get("order"), path, f"{where}.order", required=False)
        if order is not None and order not in ("classic", "split", "cache"):
            raise InputError(f"{_where(path, where + '.order')}: classic, split or cache")
        systems.append(
            System(
                sid,
                condition,
                _str(table.get("backend"), path, f"{where}.backend", required=False),
                _str(table.get("model"), path, f"{where}.model", required=False),
                _str(table.get("lora"), path, f"{where}.lora", required=False),
                tuple(traits),
                _int(table.get("max_tokens", 160), path, f"{where}.max_tokens", 1, 2048),
                float(temperature),
                order,
            )
        )
    ids = [s.id for s in systems]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise InputError(f"{_where(path, '[[systems]]')}: the id {dup!r} is used twice")
    if any(s.condition == ORIGINAL for s in systems):
        if not canon:
            raise InputError(
                f"{_where(path, '[[systems]]')}: the original line exists only for canon "
                "turns: set [prompts] canon = N"
            )
        if sum(s.condition == ORIGINAL for s in systems) > 1:
            raise InputError(f"{_where(path, '[[systems]]')}: one original system at most")
    return Study(
        title=title or "",
        characters=tuple(chars),
        systems=tuple(systems),
        lines=tuple(x.strip() for x in lines),
        canon=canon,
        seed=_int(data.get("seed", 0), path, "seed", 0, 2**31 - 1),
        question=_str(data.get("question", QUESTION), path, "question") or QUESTION,
        second_question=_str(data.get("second_question"), path, "second_question", False) or "",
        path=path,
    )


def read_study(path: str | Path) -> Study:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no study file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the study file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    return parse_study(data, path)
