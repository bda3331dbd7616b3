"""Plain data: a character, its canon scenes and their lines. No I/O here."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field

DEFAULT_NARRATORS = ("旁白", "narrator", "scene")


def cjk_language(language: str) -> bool:
    """Chinese or Japanese, whatever the region, script tag or case ("zh", "zh-Hant", "JA"):
    text counted in characters, not words, and the Chinese templates."""
    return language.strip().lower().startswith(("zh", "ja"))


@dataclass(frozen=True)
class Line:
    speaker: str  # "" or a narrator name for narration
    text: str
    start: float | None = None  # seconds into the source media
    end: float | None = None
    image: str | None = None  # path relative to the package, e.g. "images/x.jpg"

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Scene:
    id: str
    title: str
    lines: tuple[Line, ...]

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "title": self.title, "lines": [ln.to_dict() for ln in self.lines]}


@dataclass(frozen=True)
class LoreEntry:
    """World information shown to the model when one of its keys comes up (a lorebook entry)."""

    keys: tuple[str, ...]
    content: str
    name: str = ""
    extra: dict[str, object] = field(default_factory=dict, hash=False, compare=True)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"keys": list(self.keys), "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass(frozen=True)
class Voice:
    """How a character sounds: the ``[voice]`` table of character.toml. Empty fields are
    left to the defaults (the TTS backend's voice; the voice's own language; speed 1.0)."""

    backend: str = ""  # a TTS backend name: kokoro, espeak, openai
    voice: str = ""  # a voice of that backend, e.g. jf_alpha, cmn-latn-pinyin, alloy
    language: str = ""  # the language the voice speaks (ja, zh, en): replies are translated
    speed: float = 1.0
    model: str = ""  # the openai backend's speech model
    extra: dict[str, object] = field(default_factory=dict, hash=False, compare=True)  # kept

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            k: v for k, v in asdict(self).items() if k != "extra" and v not in ("", None)
        }
        if self.speed == 1.0:
            out.pop("speed", None)
        return {**out, **self.extra}


@dataclass(frozen=True)
class ModelChoice:
    """The character's own model: the ``[model]`` table of character.toml. ``base`` is a
    local model (catalogue name or GGUF path), ``lora`` an adapter folder made by
    ``rolecast finetune`` (relative to the package, or absolute). Flags still win."""

    base: str = ""
    lora: str = ""

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v}


@dataclass
class Character:
    """A character package in memory. ``id`` is its folder name."""

    id: str
    name: str
    persona: str
    scenes: list[Scene] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    language: str = "zh"
    source: str = ""
    user_role: str = "user"
    narrators: list[str] = field(default_factory=lambda: list(DEFAULT_NARRATORS[:1]))
    greetings: list[str] = field(default_factory=list)
    description: str = ""
    portrait: str = ""  # path relative to the package, e.g. "images/portrait.png"
    lore: list[LoreEntry] = field(default_factory=list)
    voice: Voice | None = None  # None: a default voice for the character's language
    model: ModelChoice | None = None  # None: whatever model the user runs
    # Big Five dials (factor letter -> level 1-5): the [personality] table, or --trait
    personality: dict[str, int] = field(default_factory=dict)
    # what the canon shows of each factor: [personality.canon], each 1-5, "high"/"low", or
    # a score with its side (personality.Label)
    canon_personality: dict[str, object] = field(default_factory=dict)
    # fields of an imported character card that rolecast does not use, written back on export
    card: dict[str, object] = field(default_factory=dict)
    # embeddings that came with an import, kept as they were: {column: {scene id: base64}}
    vectors: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)  # unknown toml keys, kept on write

    def is_narrator(self, speaker: str) -> bool:
        s = speaker.strip().lower()
        return s == "" or s in {n.lower() for n in (*self.narrators, *DEFAULT_NARRATORS)}

    def is_self(self, speaker: str) -> bool:
        return speaker.strip() in {self.name, *self.aliases}

    def speaker_counts(self) -> Counter[str]:
        """Lines per speaker in the canon (names stripped, unnamed lines left out), in the
        order speakers first speak."""
        return Counter(
            ln.speaker.strip() for s in self.scenes for ln in s.lines if ln.speaker.strip()
        )

    def canon_hash(self) -> str:
        """Content hash of everything retrieval indexes: changes whenever the canon does."""
        h = hashlib.sha256()
        for scene in self.scenes:
            fields = [scene.id, scene.title]
            for ln in scene.lines:
                fields += [ln.speaker, ln.text, repr(ln.start), repr(ln.end), ln.image or ""]
            h.update(json.dumps(fields, ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()
