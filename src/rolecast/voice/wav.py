"""WAV files and playback: 16-bit PCM mono written atomically, read back (also from a
stream whose header has no real sizes, as ``espeak-ng --stdout`` writes), joined with short
pauses, and played through whichever player the system has."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, VoiceError
from ..files import write_atomic
from .base import Audio

PAUSE_S = 0.3  # silence between two sentences when they are joined
_HEADER = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")


def to_pcm16(audio: Audio) -> bytes:
    """Little-endian signed 16-bit samples."""
    clipped: np.ndarray = np.clip(audio.samples, -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def from_pcm16(data: bytes, sample_rate: int, channels: int = 1) -> Audio:
    """Audio from little-endian 16-bit samples (several channels are mixed down to one)."""
    usable = len(data) - len(data) % (2 * channels)
    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return Audio(samples, sample_rate)


def wav_bytes(audio: Audio) -> bytes:
    pcm = to_pcm16(audio)
    fmt = struct.pack("<HHIIHH", 1, 1, audio.sample_rate, audio.sample_rate * 2, 2, 16)
    return b"".join(
        [
            _HEADER.pack(b"RIFF", 4 + (8 + len(fmt)) + (8 + len(pcm)), b"WAVE"),
            _CHUNK.pack(b"fmt ", len(fmt)),
            fmt,
            _CHUNK.pack(b"data", len(pcm)),
            pcm,
        ]
    )


def parse_wav(data: bytes, what: str = "WAV data") -> Audio:
    """Audio from the bytes of a PCM WAV file (8, 16 or 32-bit integer, or 32-bit float).

    A ``data`` chunk whose size is larger than what follows (a streamed header, written
    before the length was known) is read to the end of the bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise VoiceError(f"{what} is not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        kind, size = _CHUNK.unpack_from(data, pos)
        body = pos + 8
        if kind == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise VoiceError(f"{what}: the format chunk is cut short")
            fmt = struct.unpack_from("<HHIIHH", data, body)
            if fmt[0] == 0xFFFE and size >= 40 and body + 26 <= len(data):
                # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID begins with the real format tag
                fmt = (struct.unpack_from("<H", data, body + 24)[0], *fmt[1:])
        elif kind == b"data":
            if fmt is None:
                raise VoiceError(f"{what}: the data chunk comes before the format chunk")
            payload = data[body : min(body + size, len(data))]
            return _decode(payload, fmt, what)
        pos = body + size + (size & 1)
    raise VoiceError(f"{what} has no audio data")


def _decode(payload: bytes, fmt: tuple[int, ...], what: str) -> Audio:
    tag, channels, rate, _, _, bits = fmt
    if channels < 1 or rate < 1:
        raise VoiceError(f"{what}: bad format ({channels} channels, {rate} Hz)")
    if tag == 1 and bits == 16:
        return from_pcm16(payload, rate, channels)
    if tag == 1 and bits == 8:
        samples = (np.frombuffer(payload, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == 1 and bits == 32:
        usable = len(payload) - len(payload) % 4
        samples = np.frombuffer(payload[:usable], "<i4").astype(np.float32) / 2**31
    elif tag == 3 and bits == 32:
        usable = len(payload) - len(payload) % 4
        samples = np.frombuffer(payload[:usable], "<f4").astype(np.float32)
    else:
        raise VoiceError(f"{what}: unsupported WAV encoding (format {tag}, {bits} bits)")
    usable = len(samples) - len(samples) % channels
    samples = samples[:usable].reshape(-1, channels).mean(axis=1)
    return Audio(samples, rate)


def read_wav(path: str | Path) -> Audio:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_wav(data, str(path))


def write_wav(path: str | Path, audio: Audio) -> Path:
    """Write ``audio`` as a 16-bit PCM WAV file, atomically: a temporary sibling renamed into
    place, so a reader never sees half a file and a failed write leaves the old one."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file name such as out.wav")
    return write_atomic(path, wav_bytes(audio))


def concatenate(pieces: Iterable[Audio], pause_s: float = PAUSE_S) -> Audio:
    """One audio from several of the same sample rate, with ``pause_s`` of silence between."""
    items = list(pieces)
    if not items:
        raise InputError("no audio to join")
    rate = items[0].sample_rate
    if any(a.sample_rate != rate for a in items):
        raise VoiceError(
            f"cannot join audio of different sample rates {[a.sample_rate for a in items]}"
        )
    gap = np.zeros(int(round(pause_s * rate)), np.float32)
    parts: list[np.ndarray] = []
    for i, a in enumerate(items):
        if i:
            parts.append(gap)
        parts.append(a.samples)
    return Audio(np.concatenate(parts), rate)


# ---------------------------------------------------------------- playback

# player -> (command for a file, command for raw 16-bit mono PCM on stdin, or None)
PLAYERS: dict[str, tuple[list[str], list[str] | None]] = {
    "aplay": (
        ["aplay", "-q", "{file}"],
        ["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", "{rate}", "-"],
    ),
    "paplay": (
        ["paplay", "{file}"],
        ["paplay", "--raw", "--format=s16le", "--channels=1", "--rate={rate}"],
    ),
    "ffplay": (
        ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "{file}"],
        [
            "ffplay",
            "-nodisp",
            "-autoexit",
            "-loglevel",
            "error",
            "-f",
            "s16le",
            "-ar",
            "{rate}",
            "-ch_layout",
            "mono",
            "-i",
            "-",
        ],
    ),
    "afplay": (["afplay", "{file}"], None),  # macOS: files only
}
PLAYER_ORDER = (
    ("aplay", "paplay", "ffplay", "afplay") if sys.platform != "darwin" else ("afplay", "ffplay")
)


def find_player(environ: Mapping[str, str] | None = None) -> str | None:
    """The first audio player on PATH (``$ROLECAST_PLAYER`` names one to prefer)."""
    env = os.environ if environ is None else environ
    wanted = env.get("ROLECAST_PLAYER")
    order: tuple[str, ...] = (wanted, *PLAYER_ORDER) if wanted else PLAYER_ORDER
    for name in order:
        if name in PLAYERS and shutil.which(name, path=env.get("PATH")):
            return name
    return None


def _fill(command: Sequence[str], **values: object) -> list[str]:
    return [part.format(**values) for part in command]


class Player:
    """Plays audio as it comes: a player process fed raw PCM on its stdin, or (for a player
    that takes only files) each piece from a temporary file, one after another."""

    def __init__(self, name: str, sample_rate: int) -> None:
        if name not in PLAYERS:
            raise InputError(f"unknown player {name!r}; known players: {', '.join(PLAYERS)}")
        self.name, self.sample_rate = name, sample_rate
        self._file_cmd, stream_cmd = PLAYERS[name]
        self._proc: subprocess.Popen[bytes] | None = None
        if stream_cmd is not None:
            try:
                self._proc = subprocess.Popen(
                    _fill(stream_cmd, rate=sample_rate),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise VoiceError(f"cannot start the player {name}: {exc}") from None

    def write(self, audio: Audio) -> None:
        if audio.sample_rate != self.sample_rate:
            raise VoiceError(f"player opened at {self.sample_rate} Hz got {audio.sample_rate} Hz")
        if self._proc is not None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(to_pcm16(audio))
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise VoiceError(f"the player {self.name} stopped: {exc}") from None
            return
        play_file_audio(self.name, audio)

    def close(self) -> int:
        """Wait for the player to finish; its exit status."""
        if self._proc is None:
            return 0
        if self._proc.stdin:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        return self._proc.wait()


def play_file_audio(name: str, audio: Audio) -> None:
    with tempfile.TemporaryDirectory(prefix="rolecast-play-") as d:
        path = write_wav(Path(d) / "piece.wav", audio)
        play_file(path, name)


def play_file(path: str | Path, name: str | None = None) -> None:
    """Play a WAV file and wait for it to end."""
    player = name or find_player()
    if player is None:
        raise VoiceError(
            "no audio player found: install one of aplay (Debian package alsa-utils), paplay "
            "(pulseaudio-utils) or ffplay (ffmpeg)"
        )
    done = subprocess.run(
        _fill(PLAYERS[player][0], file=str(path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if done.returncode:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise VoiceError(f"{player} could not play {path}: {err[-1] if err else done.returncode}")
