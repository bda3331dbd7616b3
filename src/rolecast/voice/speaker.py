"""A reply turned into speech: the spoken words -> a translation where the reply's language
is not the voice's -> sentence-by-sentence synthesis -> one audio (and the pieces, as they
are made, for playback that starts on the first).

A character's voice comes from its ``[voice]`` table; what the table leaves out is filled
from the character's language (:data:`DEFAULT_VOICES`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..character.model import Character, Voice
from ..errors import InputError, VoiceError
from .base import (
    TTS,
    Audio,
    Chunk,
    check_speed,
    get_tts,
    join_chunks,
    synthesize_chunks,
    tts_settings,
)
from .text import guess_language, has_speakable, speech_chunks, spoken_text
from .translate import Translator

log = logging.getLogger(__name__)

# the character's language -> (TTS backend, voice) when its [voice] table does not say
DEFAULT_VOICES: dict[str, tuple[str, str]] = {
    "ja": ("kokoro", "jf_alpha"),
    "zh": ("espeak", "cmn-latn-pinyin"),
    "en": ("espeak", "en"),
}
FALLBACK_VOICE = ("espeak", "en")
MAX_NAMES = 40  # canon speakers listed to the translator (the most frequent)


def _base_language(code: str) -> str:
    head = code.lower().replace("_", "-").split("-", 1)[0]
    return {"cmn": "zh", "jp": "ja", "jpn": "ja", "zho": "zh", "eng": "en"}.get(head, head)


def voice_for(character: Character) -> Voice:
    """The character's voice with every default filled in (backend, voice, speed)."""
    given = character.voice or Voice()
    language = _base_language(character.language or "zh")
    default_backend, default_voice = DEFAULT_VOICES.get(language, FALLBACK_VOICE)
    if language not in DEFAULT_VOICES:  # espeak speaks most languages under their own code
        default_voice = language or default_voice
    backend = given.backend or default_backend
    voice = given.voice or (default_voice if backend == default_backend else "")
    return Voice(backend, voice, given.language, given.speed, given.model)


def character_names(character: Character, limit: int = MAX_NAMES) -> list[str]:
    """Names a translation should keep: the character's, the user's role, canon speakers."""
    counts = Counter(
        {n: k for n, k in character.speaker_counts().items() if not character.is_narrator(n)}
    )
    names = [character.name, *character.aliases, character.user_role]
    names += [n for n, _ in counts.most_common(limit)]
    return [n for n in dict.fromkeys(names) if n and n.lower() != "user"]


@dataclass
class Plan:
    """What will be said: the spoken words, their language, and the voice's."""

    spoken: str
    source: str
    target: str | None
    translate: bool


@dataclass
class Speech:
    """A reply as audio, with what was said and how long each step took."""

    audio: Audio
    chunks: list[Chunk]
    text: str  # the words the voice said (translated where it was)
    spoken: str  # the spoken words of the reply, before any translation
    source: str
    language: str | None
    translated: bool
    translate_s: float = 0.0
    first_audio_s: float = 0.0  # from the reply's text to its first piece of audio
    total_s: float = 0.0


@dataclass
class Speaker:
    """Speaks replies with one TTS backend and voice; translates with ``translator`` when
    the reply's language is not the voice's (no translator: spoken as it is)."""

    tts: TTS
    voice: str | None = None
    speed: float = 1.0
    language: str | None = None  # the voice's; None: the backend says (or any language)
    translator: Translator | None = None
    names: Sequence[str] = ()
    speaker_name: str = ""
    source_language: str | None = None  # the replies' usual language, where a guess fails
    first_chars: int | None = None  # the first piece's length (None: the language's default)
    voice_language: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        check_speed(self.speed)  # bad settings fail before any translation is paid for
        self.voice = self.tts.check_voice(self.voice)
        lang = self.language or self.tts.language_of(self.voice)
        self.voice_language = _base_language(lang) if lang else None

    @classmethod
    def for_character(
        cls,
        character: Character,
        translator: Translator | None = None,
        tts: TTS | None = None,
        backend: str | None = None,
        voice: str | None = None,
        speed: float | None = None,
        tts_options: Mapping[str, Any] | None = None,
    ) -> Speaker:
        """A speaker with the character's voice; ``backend``, ``voice`` and ``speed``
        override the package's choice (a voice given alone keeps the package's backend)."""
        chosen = voice_for(character)
        if backend and backend != chosen.backend:  # another backend: its own default voice
            chosen = Voice(backend, "", "", chosen.speed, "")
        if voice and voice != chosen.voice:  # another voice: the package's language is not its
            chosen = Voice(chosen.backend, voice, "", chosen.speed, chosen.model)
        options = dict(tts_options or {})
        if chosen.model and "model" not in options:
            options["model"] = chosen.model
        if tts is None:
            explicit = {k: v for k, v in options.items() if v is not None}
            settings = tts_settings(
                chosen.backend,
                explicit.pop("model", None),
                explicit.pop("base_url", None),
                explicit.pop("api_key", None),
            )
            tts = get_tts(chosen.backend, **settings, **explicit)
        return cls(
            tts=tts,
            voice=voice or chosen.voice or None,
            speed=speed if speed is not None else chosen.speed,
            language=chosen.language or None,
            translator=translator,
            names=character_names(character),
            speaker_name=character.name,
            source_language=_base_language(character.language) if character.language else None,
        )

    def plan(self, reply: str) -> Plan:
        """The spoken words of ``reply`` and whether they need translating."""
        if not reply or not reply.strip():
            raise InputError("empty text: there is nothing to speak")
        spoken = spoken_text(reply)
        if not has_speakable(spoken):
            raise InputError(
                f"nothing speakable in {reply.strip()[:60]!r}: text in brackets (…), 【…】, [...] "
                "or asterisks *…* is narration, which is not spoken"
            )
        source = guess_language(spoken)
        if source == "other" and self.source_language:
            source = self.source_language
        target = self.voice_language
        # the script tells ja, zh and en apart, not one Latin-script language from another:
        # "en" text for a French voice may well be French already
        known = ("ja", "zh", "en")
        translate = (
            target is not None
            and source not in ("other", target)
            and (target in known or source in ("ja", "zh"))
        )
        return Plan(spoken, source, target, translate)

    def stream(self, reply: str, started: float | None = None) -> Iterator[Chunk]:
        """The reply's audio, piece by piece, as each is made (translated first if needed)."""
        t0 = time.perf_counter() if started is None else started
        plan = self.plan(reply)
        text = self._words(plan)
        pieces = speech_chunks(text, plan.target or plan.source, first_chars=self.first_chars)
        yield from synthesize_chunks(self.tts, pieces, self.voice, self.speed, t0)

    def _words(self, plan: Plan) -> str:
        if not plan.translate or plan.target is None:
            return plan.spoken
        if self.translator is None:
            log.info("speaking %s text with a %s voice, untranslated", plan.source, plan.target)
            return plan.spoken
        return self.translator.translate(
            plan.spoken, plan.source, plan.target, self.names, self.speaker_name
        )

    def speak(self, reply: str, on_chunk: Callable[[Chunk], None] | None = None) -> Speech:
        """The whole reply as one audio, timed from the moment its text is complete;
        ``on_chunk`` gets each piece as soon as it is made (to play it)."""
        t0 = time.perf_counter()
        plan = self.plan(reply)
        text = self._words(plan)
        translate_s = time.perf_counter() - t0
        pieces = speech_chunks(text, plan.target or plan.source, first_chars=self.first_chars)
        if not pieces:
            raise InputError(f"nothing speakable in {text[:60]!r}")
        chunks = []
        for chunk in synthesize_chunks(self.tts, pieces, self.voice, self.speed, t0):
            chunks.append(chunk)
            if on_chunk is not None:
                on_chunk(chunk)
        if not chunks:
            raise VoiceError(f"{self.tts.name} made no sound for {text[:60]!r}")
        return Speech(
            audio=join_chunks(chunks),
            chunks=chunks,
            text=text,
            spoken=plan.spoken,
            source=plan.source,
            language=plan.target,
            translated=text != plan.spoken,
            translate_s=translate_s if plan.translate else 0.0,
            first_audio_s=chunks[0].ready_s,
            total_s=time.perf_counter() - t0,
        )

    def close(self) -> None:
        self.tts.close()
        if self.translator is not None:
            self.translator.llm.close()
