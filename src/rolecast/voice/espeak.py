"""espeak-ng (the Debian package ``espeak-ng``) in a subprocess: robotic, instant, and it
speaks a hundred languages.

Chinese goes through pinyin: Hanzi given to the ``cmn`` voice come out wrong, so a Chinese
voice (``cmn-latn-pinyin``; ``zh`` and ``cmn`` mean the same here) is given the text as
numbered-tone pinyin from ``pypinyin`` (Style.TONE3, neutral tone 5), which it reads right.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from typing import Any

from ..errors import MissingDependencyError, VoiceError
from .base import TTS, Audio
from .wav import parse_wav

PINYIN_VOICE = "cmn-latn-pinyin"
CHINESE_VOICES = {"zh", "cmn", "zh-cmn", "cmn-latn-pinyin", "zh-latn-pinyin"}
WORDS_PER_MINUTE = 175  # espeak-ng's own default rate, our speed 1.0
TIMEOUT_S = 120
INSTALL_HINT = "apt-get install espeak-ng (the Debian/Ubuntu package espeak-ng)"
# the language a voice speaks, where its name does not start with it
_LANGUAGE_OF = {"cmn": "zh", "yue": "zh", "hak": "zh", "zh": "zh"}

_PUNCT = {
    "，": ", ",
    "、": ", ",
    "。": ". ",
    "！": "! ",
    "？": "? ",
    "；": "; ",
    "：": ": ",
    "…": ", ",
    "—": ", ",
    "～": " ",
    "~": " ",
}
_DROP = re.compile('[「」『』“”"《》〈〉（）()【】\\[\\]]')
_SYLLABLE = re.compile(r"^[a-zü]+[1-5]$")


def to_pinyin(text: str) -> str:
    """Chinese text as espeak-ng's ``cmn-latn-pinyin`` voice reads it right: numbered-tone
    pinyin syllables (neutral tone 5), Chinese punctuation turned into ASCII, anything that
    is not Hanzi (Latin words, digits) kept as it is."""
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        raise MissingDependencyError("Chinese speech with espeak", "pypinyin", "voice") from None
    pieces = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="default")
    out: list[str] = []
    for piece in pieces:
        if _SYLLABLE.match(piece):
            out.append(piece)
            continue
        piece = _DROP.sub(" ", piece)
        for mark, ascii_mark in _PUNCT.items():
            piece = piece.replace(mark, ascii_mark)
        out.append(piece)
    joined = " ".join(p.strip() for p in out if p.strip())
    joined = re.sub(r"\s+([,.!?;:])", r"\1", joined)  # "hao3 ." -> "hao3."
    joined = re.sub(r"([,.!?;:])(?:\s*[,.!?;:])+", r"\1", joined)  # "——" -> one comma
    return re.sub(r"\s+", " ", joined).strip(" ,")


@cache
def _voice_table(executable: str) -> tuple[dict[str, str], frozenset[str]]:
    """espeak-ng's voices: {name accepted by -v: language}, and the variant names."""
    voices: dict[str, str] = {}
    for line in _run_list(executable, "--voices"):
        parts = line.split()
        # Pty Language Age/Gender VoiceName File Other-languages
        if len(parts) >= 5 and parts[0].isdigit():
            language, file = parts[1], parts[4]
            voices[language.lower()] = language
            voices.setdefault(file.rsplit("/", 1)[-1].lower(), language)
    variants = set()
    for line in _run_list(executable, "--voices=variant"):
        parts = line.split()
        if len(parts) >= 5 and parts[0].isdigit():
            variants.add(parts[4].rsplit("/", 1)[-1])
    return voices, frozenset(variants)


def _run_list(executable: str, flag: str) -> list[str]:
    try:
        done = subprocess.run([executable, flag], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VoiceError(f"cannot run {executable} {flag}: {exc}") from None
    return done.stdout.decode("utf-8", errors="replace").splitlines()


def find_espeak(executable: str | None = None) -> str:
    """The path of espeak-ng; a clear error with the Debian package to install when missing."""
    for name in [executable] if executable else ["espeak-ng", "espeak"]:
        found = shutil.which(name)
        if found:
            return found
    wanted = executable or "espeak-ng"
    raise VoiceError(
        f"the espeak TTS backend needs the {wanted!r} program, which is not installed or not on "
        f"PATH: {INSTALL_HINT}"
    )


class EspeakTTS(TTS):
    name = "espeak"
    sample_rate = 22050
    default_voice = "en"
    thread_safe = True  # one process per call

    def __init__(self, executable: str | None = None, **_: Any) -> None:
        super().__init__()
        self.executable = find_espeak(executable)

    def voices(self) -> list[str]:
        table, variants = _voice_table(self.executable)
        return sorted({*table, *CHINESE_VOICES})

    def check_voice(self, voice: str | None) -> str:
        chosen = voice or self.default_voice
        base, _, variant = chosen.partition("+")  # "en+f3": a voice and a variant
        table, variants = _voice_table(self.executable)
        if variant and variant not in variants:
            from ..errors import UnknownNameError

            raise UnknownNameError("espeak voice variant", variant, sorted(variants))
        super().check_voice(base.lower())
        return chosen

    def language_of(self, voice: str | None = None) -> str | None:
        base = (voice or self.default_voice).partition("+")[0].lower()
        if base in CHINESE_VOICES:
            return "zh"
        table, _ = _voice_table(self.executable)
        language = table.get(base, base).lower()
        head = language.split("-", 1)[0]
        return _LANGUAGE_OF.get(head, head)

    def _synthesize(self, text: str, voice: str, speed: float) -> Audio:
        base, plus, variant = voice.partition("+")
        if base.lower() in CHINESE_VOICES:
            text, base = to_pinyin(text), PINYIN_VOICE
        command = [
            self.executable,
            "-v",
            base + plus + variant,
            "-s",
            str(max(80, round(WORDS_PER_MINUTE * speed))),
            "-b",
            "1",  # the input is UTF-8
            "--stdout",
        ]
        try:
            done = subprocess.run(
                command, input=text.encode("utf-8"), capture_output=True, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise VoiceError(f"espeak-ng took over {TIMEOUT_S} s on {text[:30]!r}") from None
        except OSError as exc:
            raise VoiceError(f"cannot run {self.executable}: {exc}; {INSTALL_HINT}") from None
        if done.returncode:
            err = done.stderr.decode(errors="replace").strip()
            raise VoiceError(f"espeak-ng failed (exit {done.returncode}): {err}")
        audio = parse_wav(done.stdout, "espeak-ng's output")
        self.sample_rate = audio.sample_rate
        return audio
