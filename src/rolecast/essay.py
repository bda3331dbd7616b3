"""Essays in the manner of the gaokao composition, written with Big Five dials and, when
asked, in a character's voice (ChatHaruhi's high- and low-openness essay writer, anew).

    essay_messages(topic, language, dials, character)  the request
    parse_essay(text, language)                        -> Essay: title, body, length
    write_essays(llm, settings, out)                   -> EssaySet, saved in ``out``

An essay is asked for with the gaokao's shape: a title line, at least 800 characters (500
words in English) in five to seven paragraphs, opening with the view, two or three points
with examples, a closing that lifts the theme. The writer is a student sitting the exam,
or the character (its persona); the dials' text follows either. Each essay has its own
seed (the same in every condition, so a high and a low set are paired), is cached as it
is written (an interrupted run goes on; a rerun makes no calls) and is saved as Markdown
with ``essays.json`` beside it: the settings, the backend and each essay's figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .backends.base import LLM, GenerationParams
from .character.model import Character
from .character.personality import FACTORS, dial_text, format_dials, with_dials
from .errors import InputError
from .eval.interview import strip_reasoning
from .eval.report import Cache, backend_info, character_digest, to_jsonable
from .eval.runner import Progress, item_seed, run_items, workers_for
from .files import write_atomic
from .prompt.assemble import persona_text, template, template_language

MIN_LENGTH = {"zh": 800, "en": 500}  # characters (Chinese), words (English): the exam's floor
MAX_TOPIC = 200  # characters
MAX_ESSAYS = 100
ESSAY_PARAMS = GenerationParams(max_tokens=1600, temperature=0.8, top_p=0.95)
_TITLE_MARKS = re.compile(r"^\s*(?:#+\s*|题目\s*[:：]\s*|title\s*:\s*)", re.I)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")


def essay_language(language: str) -> str:
    """The essay's language: that of the templates it is asked with."""
    return template_language(language)


def check_topic(topic: str) -> str:
    topic = (topic or "").strip()
    if not topic:
        raise InputError("--topic is empty: give the essay's topic, e.g. --topic 「门」")
    if len(topic) > MAX_TOPIC:
        raise InputError(f"--topic is {len(topic)} characters long; at most {MAX_TOPIC}")
    return topic


def essay_messages(
    topic: str,
    language: str,
    dials: Mapping[str, int],
    character: Character | None = None,
) -> list[dict[str, str]]:
    """The request: a system message (the student, or the character's persona, then the
    dials' text) and the exam's instructions."""
    lang = essay_language(language)
    ask = template("essay", lang).substitute(topic=topic, min_length=MIN_LENGTH[lang]).strip()
    if character is None:
        writer = template("writer", lang).template.strip()
        dialled = dial_text(dials, lang)
        system = f"{writer}\n\n{dialled}" if dialled else writer
    else:
        system = persona_text(with_dials(character, dials))
        if lang == "zh":
            ask = f"这次不是聊天：请以{character.name}的身份、用你自己的口吻和见识来写。\n\n{ask}"
        else:
            ask = (
                f"This time it is not a chat: write as {character.name}, in your own voice "
                f"and with your own outlook.\n\n{ask}"
            )
    return [{"role": "system", "content": system}, {"role": "user", "content": ask}]


@dataclass(frozen=True)
class Essay:
    title: str
    body: str
    length: int  # characters (Chinese) or words (English) of the body
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Essay:
        return cls(str(data["title"]), str(data["body"]), int(data["length"]), int(data["seed"]))

    def markdown(self) -> str:
        return f"# {self.title}\n\n{self.body}\n"


def essay_length(text: str, language: str) -> int:
    """Chinese: the characters that are not space or punctuation counted one each (Han
    characters and letters or digits); English: words."""
    if essay_language(language) == "zh":
        return len(_CJK.findall(text)) + len(_WORD.findall(text))
    return len(_WORD.findall(text))


def parse_essay(text: str, language: str, seed: int = 0) -> Essay:
    """The essay in a backend's answer: its first line the title (marks like ``#`` or
    ``题目：`` and the title's quotes dropped), the rest the body, paragraphs kept."""
    text = strip_reasoning(text)
    lines = [ln.rstrip() for ln in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return Essay("", "", 0, seed)
    title = _TITLE_MARKS.sub("", lines[0]).strip().strip('《》“”"*').strip()
    body_lines = lines[1:]
    if len(title) > 40:  # no title line: the model began with the essay
        title, body_lines = "", lines
    paragraphs = re.split(r"\n\s*\n", "\n".join(body_lines).strip())
    body = "\n\n".join(" ".join(p.split("\n")).strip() for p in paragraphs if p.strip())
    return Essay(title, body, essay_length(body, language), seed)


@dataclass(frozen=True)
class Settings:
    topic: str
    language: str = "zh"
    dials: dict[str, int] = field(default_factory=dict)
    n: int = 5
    seed: int = 0
    params: GenerationParams = ESSAY_PARAMS

    def check(self) -> None:
        check_topic(self.topic)
        if not 1 <= self.n <= MAX_ESSAYS:
            raise InputError(f"--n must be 1 to {MAX_ESSAYS}, not {self.n}")
        unknown = set(self.dials) - set(FACTORS)
        if unknown:
            raise InputError(f"unknown factors {sorted(unknown)}")


@dataclass
class EssaySet:
    settings: Settings
    essays: list[Essay]
    character: str | None
    backend: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def short(self) -> int:
        floor = MIN_LENGTH[essay_language(self.settings.language)]
        return sum(e.length < floor for e in self.essays)

    def to_dict(self) -> dict[str, Any]:
        lengths = sorted(e.length for e in self.essays)
        return {
            "kind": "essays",
            "settings": {
                **to_jsonable(asdict(self.settings)),
                "dials_text": format_dials(self.settings.dials),
            },
            "character": self.character,
            **self.backend,
            "min_length": MIN_LENGTH[essay_language(self.settings.language)],
            "median_length": lengths[len(lengths) // 2] if lengths else 0,
            "short": self.short,
            "essays": [
                {**e.to_dict(), "file": self.files[i].name if i < len(self.files) else None}
                for i, e in enumerate(self.essays)
            ],
            "rolecast": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }


def essay_scope(settings: Settings, llm: LLM, character: Character | None) -> dict[str, Any]:
    """What an essay depends on besides its number: cached essays are reused only when all
    of it is the same."""
    return {
        "eval": "essay",
        "character": character_digest(character) if character else None,
        **backend_info(llm),
        "params": to_jsonable(settings.params),
        "topic": settings.topic,
        "language": essay_language(settings.language),
        "dials": dict(settings.dials),
        "seed": settings.seed,
    }


def write_essays(
    llm: LLM,
    settings: Settings,
    out: Path | None = None,
    character: Character | None = None,
    *,
    fresh: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> EssaySet:
    """``settings.n`` essays from ``llm``; saved in ``out`` when given (Markdown files and
    ``essays.json``, each written atomically, with the cache in ``out/.cache``)."""
    settings.check()
    language = essay_language(settings.language)
    messages = essay_messages(settings.topic, language, settings.dials, character)
    cache = None
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} is a file: give a folder for the essays")
        scope = essay_scope(settings, llm, character)
        cache = Cache(out / ".cache", scope, enabled=not fresh)

    def write(i: int) -> dict[str, Any]:
        seed = item_seed(settings.seed, "essay", i)
        text = "".join(llm.stream(messages, replace(settings.params, seed=seed)))
        return parse_essay(text, language, seed).to_dict()

    done = run_items(
        list(range(settings.n)),
        write,
        key=lambda i: {"essay": i},
        cache=cache,
        workers=workers_for(llm, workers),
        progress=progress,
    )
    essays = [Essay.from_dict(d) for d in done]
    result = EssaySet(settings, essays, character.id if character else None, backend_info(llm))
    if out is not None:
        result.files = save_essays(out, essays)
        write_atomic(
            out / "essays.json", json.dumps(result.to_dict(), ensure_ascii=False, indent=2)
        )
    return result


def save_essays(out: Path, essays: Sequence[Essay]) -> list[Path]:
    width = max(2, len(str(len(essays))))
    return [
        write_atomic(out / f"essay-{i + 1:0{width}d}.md", e.markdown())
        for i, e in enumerate(essays)
    ]
