"""`rolecast say` and the voice options of `rolecast chat` (``--speak``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, RolecastError, VoiceError
from .common import backend_from, backend_opts, progress

if TYPE_CHECKING:
    from ..backends.base import LLM
    from ..character.model import Character
    from ..session import Session
    from ..voice.base import Chunk
    from ..voice.speaker import Speaker, Speech
    from ..voice.translate import LazyLLM

DEFAULT_AUDIO_DIR = "rolecast-audio"
NO_PLAYER = (
    "no audio player found: install aplay (Debian package alsa-utils), paplay "
    "(pulseaudio-utils) or ffplay (ffmpeg)"
)


def voice_opts(sp: argparse.ArgumentParser) -> None:
    """The options that choose a voice and what happens to the audio."""
    sp.add_argument(
        "--tts",
        metavar="NAME",
        help="TTS backend: kokoro, espeak, openai (default: the character's [voice], else "
        "one for its language)",
    )
    sp.add_argument("--voice", help="voice of the TTS backend (e.g. jf_alpha, cmn-latn-pinyin)")
    sp.add_argument("--speed", type=float, help="speaking rate, 0.25 to 4 (default 1.0)")
    sp.add_argument(
        "--no-translate",
        action="store_true",
        help="speak the reply as it is, even where its language is not the voice's",
    )
    sp.add_argument("--play", action="store_true", help="play the audio (aplay, paplay, ffplay)")
    sp.add_argument(
        "--tts-model", help="openai TTS: speech model (default: $ROLECAST_TTS_MODEL or tts-1)"
    )
    sp.add_argument(
        "--tts-base-url",
        help="openai TTS: endpoint (default: $ROLECAST_TTS_BASE_URL, else the LLM's base URL)",
    )
    sp.add_argument(
        "--tts-api-key", help="openai TTS: key (default: $ROLECAST_TTS_API_KEY, else the LLM's)"
    )


def add_voice(sub: Any) -> None:
    """Add the `say` command to the `rolecast` parser."""
    sp = sub.add_parser(
        "say",
        help="speak a line in a character's voice into a WAV file (translated into the "
        "voice's language where it differs)",
    )
    sp.add_argument("name", help="character")
    sp.add_argument("text", help='what to say ("-": read it from standard input)')
    sp.add_argument("-o", "--output", help="WAV file to write (needed unless --play)")
    voice_opts(sp)
    backend_opts(sp)  # the LLM that translates
    sp.set_defaults(func=cmd_say)


def add_chat_voice(sp: argparse.ArgumentParser) -> None:
    """``rolecast chat --speak``: a WAV file per reply (and ``--play``)."""
    sp.add_argument(
        "--speak", action="store_true", help="speak each reply into a WAV file (see --audio-dir)"
    )
    sp.add_argument(
        "--audio-dir",
        metavar="DIR",
        help=f"where --speak writes its files (default: ./{DEFAULT_AUDIO_DIR})",
    )
    voice_opts(sp)


def _tts_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.tts_model,
        "base_url": args.tts_base_url,
        "api_key": args.tts_api_key,
    }


def _lazy_llm(args: argparse.Namespace) -> LazyLLM:
    """The LLM that translates, made only when a translation is not in the cache."""
    from ..voice.translate import LazyLLM

    spec = backend_from(args)
    return LazyLLM(
        lambda: spec.open(progress=progress("preparing the model")), spec.name, spec.model
    )


def make_speaker(args: argparse.Namespace, character: Character, llm: LLM | None = None) -> Speaker:
    """The character's speaker with the command line's choices; ``llm`` translates (default:
    the backend options', made on first use)."""
    from ..voice.speaker import Speaker
    from ..voice.translate import Translator

    translator = None
    if not args.no_translate:
        translator = Translator(llm if llm is not None else _lazy_llm(args))
    return Speaker.for_character(
        character,
        translator=translator,
        backend=args.tts,
        voice=args.voice,
        speed=args.speed,
        tts_options=_tts_options(args),
    )


class AudioOut:
    """Where speech goes: WAV files, and a player fed each piece as it is made."""

    def __init__(self, play: bool) -> None:
        from ..voice.wav import find_player

        self.player_name = find_player() if play else None
        if play and self.player_name is None:
            print(f"rolecast: {NO_PLAYER}: writing files only", file=sys.stderr)
        self._player: Any = None  # a voice.wav.Player while a reply is being spoken
        self._previous: Any = None

    def start(self) -> Callable[[Chunk], None] | None:
        """A callback for :meth:`Speaker.speak` that plays each chunk, or None without a
        player. The first chunk waits for the previous reply to finish playing; the synthesis
        does not."""
        if self.player_name is None:
            return None
        self._previous, self._player = self._player, None
        name = self.player_name

        def on_chunk(chunk: Chunk) -> None:
            from ..voice.base import Audio
            from ..voice.wav import Player

            if self._player is None:
                if self._previous is not None:
                    previous, self._previous = self._previous, None
                    previous.close()
                self._player = Player(name, chunk.audio.sample_rate)
            if chunk.gap_s:
                self._player.write(Audio.silence(chunk.gap_s, chunk.audio.sample_rate))
            self._player.write(chunk.audio)

        return on_chunk

    def finish(self) -> None:
        """Wait for what is playing to end."""
        for player in (self._previous, self._player):
            if player is not None:
                player.close()
        self._previous = self._player = None


def _describe(speech: Speech, speaker: Speaker) -> str:
    what = f"{speech.audio.duration:.1f} s, {speech.audio.sample_rate} Hz, {speaker.tts.name}"
    what += f" {speaker.voice}"
    if speech.translated:
        what += f"; translated {speech.source}->{speech.language}: {speech.text}"
    return what


def cmd_say(args: argparse.Namespace) -> int:
    from ..character import store
    from ..voice.wav import write_wav

    text = sys.stdin.read() if args.text == "-" else args.text
    if not args.output and not args.play:
        raise InputError("say needs -o FILE.wav to write, or --play")
    if args.output and Path(args.output).is_dir():
        raise InputError(f"cannot write {args.output}: it is a folder; give a file such as out.wav")
    character = store.load(args.name)
    out = AudioOut(args.play)
    if args.play and out.player_name is None and not args.output:
        raise VoiceError(f"nothing to do: {NO_PLAYER}; write a file with -o FILE.wav")
    speaker = make_speaker(args, character)
    try:
        speech = speaker.speak(text, on_chunk=out.start())
        if args.output:
            path = write_wav(args.output, speech.audio)
            print(f"wrote {path} ({_describe(speech, speaker)})")
        else:
            print(f"played {_describe(speech, speaker)}")
    finally:
        out.finish()
        speaker.close()
    return 0


class ChatVoice:
    """``chat --speak``: each reply spoken into ``DIR/<id>-<start time>-<turn>.wav``."""

    def __init__(self, args: argparse.Namespace, session: Session) -> None:
        self.character = session.character
        self.dir = Path(args.audio_dir or DEFAULT_AUDIO_DIR)
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.turn = 0
        self.speaker = make_speaker(args, session.character, llm=session.llm)
        self.out = AudioOut(args.play)

    def warm_up(self) -> None:
        self.speaker.tts.warm_up()

    def path(self, turn: int) -> Path:
        return self.dir / f"{self.character.id}-{self.stamp}-{turn:03d}.wav"

    def say(self, reply: str, strict: bool = False) -> Path | None:
        """Speak one reply; an error is printed (or raised when ``strict``) and the chat goes on."""
        from ..voice.wav import write_wav

        self.turn += 1
        try:
            speech = self.speaker.speak(reply, on_chunk=self.out.start())
            path = write_wav(self.path(self.turn), speech.audio)
        except RolecastError as exc:
            if strict:
                raise
            print(f"rolecast: voice: {exc}", file=sys.stderr, flush=True)
            return None
        print(f"[audio: {path} ({_describe(speech, self.speaker)})]", flush=True)
        return path

    def close(self) -> None:
        self.out.finish()
        self.speaker.tts.close()
