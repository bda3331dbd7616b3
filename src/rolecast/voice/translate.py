"""Translation before speech, through an LLM backend: no translation model ships in a package,
so the configured backend (the local model by default, a remote one by choice) does it.

The prompt (``prompt/templates/translate_en.txt``) keeps names and tone and asks for the
translation only; what comes back is cleaned of labels, quotes and notes, and checked to be in
the target language (by script) before it is used. Results are cached in SQLite under
``$ROLECAST_HOME/cache/translations.sqlite3``, keyed by the sha256 of the text, both languages,
the backend and its model, and the prompt's version: the same line is translated once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import config
from ..backends.base import LLM, GenerationParams, WrappedLLM
from ..errors import InputError, VoiceError
from ..prompt.assemble import template
from .text import guess_language, language_name

log = logging.getLogger(__name__)

PROMPT_VERSION = 1  # part of the cache key: a changed prompt translates again
TRIES = 2  # a reply in the wrong language is asked for once more, sampled differently
MAX_NAMES = 24
_LABEL = re.compile(
    r"^\s*(?:translation|translated|japanese|chinese|english|日本語訳?|翻[訳译]|译文|中文|英文)"
    r"\s*(?:\([^)]*\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^```[a-z]*\s*|\s*```$")
_WRAP = {"「": "」", "『": "』", '"': '"', "“": "”", "'": "'"}


def cache_path(environ: Mapping[str, str] | None = None) -> Path:
    return config.home(environ) / "cache" / "translations.sqlite3"


def translation_messages(
    text: str, source: str, target: str, names: Sequence[str] = (), speaker: str = ""
) -> list[dict[str, str]]:
    """The chat messages that ask for a translation of ``text`` (a pure function)."""
    listed = f" The names here: {', '.join(names)}." if names else ""
    system = template("translate", "en").substitute(
        source=language_name(source),
        target=language_name(target),
        names=listed,
        speaker=speaker or "the character",
    )
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": text}]


def clean_translation(raw: str, target: str) -> str:
    """The translation alone: without code fences, a "Translation:" label, wrapping quotes,
    and lines in another language than ``target`` (notes a small model adds)."""
    text = _FENCE.sub("", raw.strip()).strip()
    lines = [_LABEL.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if target in ("ja", "zh", "en"):
        kept = [ln for ln in lines if guess_language(ln) == target]
        lines = kept or lines
    text = "\n".join(lines).strip()
    while len(text) >= 2 and _WRAP.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


class TranslationCache:
    """Translations on disk, one SQLite file: each write is a transaction (atomic), and a
    cache that cannot be opened is skipped with a warning rather than stopping speech."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_path()
        self._broken = False

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute(
                "CREATE TABLE IF NOT EXISTS translations "
                "(key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )
            yield con
            con.commit()
        finally:
            con.close()

    def _guard(self, action: Callable[[sqlite3.Connection], str | None]) -> str | None:
        if self._broken:
            return None
        try:
            with self._connect() as con:
                return action(con)
        except (OSError, sqlite3.Error) as exc:
            self._broken = True
            log.warning("translation cache %s not used: %s", self.path, exc)
            return None

    def get(self, key: str) -> str | None:
        def read(con: sqlite3.Connection) -> str | None:
            row = con.execute("SELECT text FROM translations WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

        return self._guard(read)

    def put(self, key: str, text: str) -> None:
        def write(con: sqlite3.Connection) -> None:
            con.execute(
                "INSERT OR REPLACE INTO translations (key, text, created) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

        self._guard(write)


class LazyLLM(WrappedLLM):
    """A backend made on first use: a translation found in the cache never loads a model.

    ``name`` and ``model`` are the ones given (they key the cache, so they are known before
    anything loads); everything else is the inner backend's, made the first time it is asked
    for."""

    def __init__(self, factory: Callable[[], LLM], name: str, model: str | None) -> None:
        # no WrappedLLM.__init__: ``inner`` is made on first use, not given
        self._factory = factory
        self._inner: LLM | None = None
        self._making = threading.Lock()
        self._name = name
        self._model = model or "default"

    @property
    def inner(self) -> LLM:  # type: ignore[override]
        with self._making:
            if self._inner is None:
                self._inner = self._factory()
            return self._inner

    @property
    def loaded(self) -> bool:
        return self._inner is not None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # its own, not set yet (a copy being made): nothing loads
            raise AttributeError(attr)
        return super().__getattr__(attr)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    @property
    def model(self) -> str:  # type: ignore[override]
        return self._model

    def close(self) -> None:
        if self._inner is not None:  # one never made is not made to be closed
            self._inner.close()


@dataclass
class Translator:
    """Translates spoken lines with ``llm``; ``cache`` keeps what it translated."""

    llm: LLM
    cache: TranslationCache | None = field(default_factory=TranslationCache)
    params: GenerationParams = field(
        default_factory=lambda: GenerationParams(max_tokens=512, temperature=0.0, seed=7)
    )
    calls: int = 0  # backend calls made (a cache hit makes none)

    def key(self, text: str, source: str, target: str) -> str:
        ident = {
            "prompt": PROMPT_VERSION,
            "text": text,
            "source": source,
            "target": target,
            "backend": self.llm.name,
            "model": self.llm.model,
        }
        blob = json.dumps(ident, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def translate(
        self,
        text: str,
        source: str,
        target: str,
        names: Iterable[str] = (),
        speaker: str = "",
    ) -> str:
        """``text`` in ``target`` (ja, zh, en, ...); ``names`` that occur in it are listed in
        the prompt as names to keep."""
        if not text.strip():
            raise InputError("empty text: there is nothing to translate")
        if source == target:
            return text
        key = self.key(text, source, target)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        present = [n for n in dict.fromkeys(names) if n and n in text][:MAX_NAMES]
        messages = translation_messages(text, source, target, present, speaker)
        limit = min(max(64, 4 * len(text) + 64), 1024)
        params = replace(self.params, max_tokens=limit)
        got = ""
        for attempt in range(TRIES):
            self.calls += 1
            raw = "".join(self.llm.stream(messages, params))
            got = clean_translation(raw, target)
            if got and (target not in ("ja", "zh", "en") or guess_language(got) == target):
                if self.cache is not None:
                    self.cache.put(key, got)
                return got
            log.info("translation try %d not in %s: %r", attempt + 1, target, raw[:80])
            seed = None if params.seed is None else params.seed + 1
            params = replace(params, temperature=0.7, seed=seed)
        found = guess_language(got) if got else "nothing"
        raise VoiceError(
            f"the translation from {language_name(source)} into {language_name(target)} came "
            f"back in {language_name(found)} ({got[:40]!r}) from {self.llm.name} "
            f"{self.llm.model}: try a stronger model (--model, or --backend openai), a voice in "
            "the reply's language, or --no-translate"
        )
