"""A synthetic episode with known speakers, made from nothing but espeak-ng and ffmpeg.

:func:`build_episode` writes into a folder:

- ``episode.mkv``: a 640x360 video (a grey picture with a band across the top in the colour
  of whoever is speaking, and their name drawn on it when a font is found; a white panel,
  :data:`FACE_BOX`, in the last third of each line) with the dialogue as Opus audio, 48 kHz
  stereo;
- ``episode.wav``: the same dialogue as a 16 kHz mono 16-bit WAV;
- subtitles for the same lines: ``episode.srt`` (UTF-8), ``episode.ass`` (UTF-8 with a BOM,
  with one Sign event that ingest must skip), ``episode.vtt`` and ``episode.utf16.srt``
  (UTF-16 with a BOM);

and returns a :class:`SyntheticEpisode` with the truth: who says which line, when. Each line
is a different English sentence built from word lists; each speaker is an espeak-ng voice
chosen to be told apart by a speaker-embedding model (see :data:`SPEAKERS`). Lines come in
scenes: short pauses inside a scene, longer ones between scenes. Times sit on a 10 ms grid,
so the SRT, WebVTT and ASS (centisecond) files all carry exactly the truth's times.

Run as a script to build one and print how long it took::

    python tests/synthetic_episode.py OUT_DIR --minutes 24
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

TTS_RATE = 22050  # what espeak-ng writes
WAV_RATE = 16000
WIDTH, HEIGHT = 640, 360
BAND = 90  # height of the speaker's colour band at the top of the picture
BACKGROUND = (96, 96, 96)
FACE_BOX = (260, 200, 120, 120)  # x, y, w, h of the white panel shown late in each line
LEAD_IN, TAIL = 1.0, 1.0  # seconds of silence before the first and after the last line
SECONDS_PER_LINE = 4.8  # with ``minutes`` and no ``lines``: a line every 4.8 s (300 in 24 min)
FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)


@dataclass(frozen=True)
class Speaker:
    """A voice: espeak-ng ``voice`` (language+variant), ``pitch`` 0-99, ``speed`` in words a
    minute; ``colour`` is the RGB of the band shown while they speak."""

    name: str
    voice: str
    pitch: int
    speed: int
    colour: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "0x{:02X}{:02X}{:02X}".format(*self.colour)


# Chosen by Resemblyzer's speaker embeddings (cosine similarity of 8 sentences each): the
# same voice scores 0.89-0.91 with itself, these pairs 0.58-0.71 with each other.
# Variant, accent, pitch and speed all differ.
SPEAKERS = (
    Speaker("Ben", "en-us+m3", pitch=20, speed=150, colour=(200, 40, 40)),  # low, American
    Speaker("Ada", "en-gb-x-rp+f5", pitch=60, speed=160, colour=(40, 90, 210)),  # female, RP
    Speaker("Cal", "en-gb-scotland+m7", pitch=45, speed=190, colour=(40, 160, 60)),  # fast
    Speaker("Dee", "en-us+klatt4", pitch=50, speed=170, colour=(210, 160, 30)),  # Klatt
)


class TruthLine(NamedTuple):
    """One spoken line: ``(start, end, text, speaker)``; times in seconds, ``text`` as the
    subtitles show it (a long sentence is broken in two lines with ``\\n``)."""

    start: float
    end: float
    text: str
    speaker: str


@dataclass(frozen=True)
class SyntheticEpisode:
    folder: Path
    video: Path  # video with the dialogue audio
    wav: Path  # the dialogue alone, 16 kHz mono
    srt: Path
    ass: Path
    vtt: Path
    srt_utf16: Path
    lines: tuple[TruthLine, ...]
    scenes: tuple[int, ...]  # the scene number of each line
    speakers: tuple[Speaker, ...]
    duration: float
    sign: TruthLine  # the ASS Sign event, which is not dialogue
    drawtext: bool  # False: no font was found and only the colour band marks the speaker
    seconds: dict[str, float] = field(default_factory=dict)  # time each build step took

    @property
    def truth(self) -> list[tuple[float, float, str, str]]:
        return [tuple(ln) for ln in self.lines]  # type: ignore[misc]

    @property
    def subtitles(self) -> tuple[Path, ...]:
        return (self.srt, self.ass, self.vtt, self.srt_utf16)

    def speaker(self, name: str) -> Speaker:
        return next(s for s in self.speakers if s.name == name)


def tools_missing() -> list[str]:
    """The programs :func:`build_episode` needs that are not on PATH."""
    return [p for p in ("espeak-ng", "ffmpeg", "ffprobe") if shutil.which(p) is None]


# ---------------------------------------------------------------------------------- script

SUBJECTS = (
    "the baker",
    "my brother",
    "the old sailor",
    "your cousin",
    "the night guard",
    "the teacher",
    "that stray cat",
    "the mayor",
    "our neighbour",
    "the ferry captain",
    "my grandmother",
    "the little robot",
    "the shopkeeper",
    "the new student",
    "the lighthouse keeper",
)
VERBS = (
    "forgot",
    "painted",
    "repaired",
    "hid",
    "sold",
    "borrowed",
    "found",
    "lost",
    "carried",
    "dropped",
    "cleaned",
    "wrapped",
    "counted",
    "opened",
    "buried",
)
ADJECTIVES = (
    "green",
    "broken",
    "heavy",
    "tiny",
    "golden",
    "muddy",
    "wooden",
    "strange",
    "shiny",
    "ancient",
    "crooked",
    "silver",
    "dusty",
    "bright",
    "quiet",
)
OBJECTS = (
    "lantern",
    "umbrella",
    "kettle",
    "bicycle",
    "letter",
    "map",
    "violin",
    "basket",
    "clock",
    "ladder",
    "notebook",
    "compass",
    "teapot",
    "anchor",
    "blanket",
)
PLACES = (
    "by the bridge",
    "under the stairs",
    "near the station",
    "behind the bakery",
    "on the roof",
    "at the harbour",
    "in the garden",
    "beside the river",
    "inside the tower",
    "next to the market",
    "at the old mill",
    "in the cellar",
)
TIMES = (
    "this morning",
    "last night",
    "on Sunday",
    "before the storm",
    "after dinner",
    "yesterday",
    "at noon",
    "during the festival",
    "an hour ago",
    "in the spring",
)
TEMPLATES = (
    "{S} {V} the {A} {O} {P} {T}.",
    "Did {s} really leave the {A} {O} {P}?",
    "I think {s} {V} the {A} {O} {T}.",
    "Why is the {A} {O} still {P}?",
    "Nobody knows who {V} the {A} {O} {P}.",
    "{T_}, {s} {V} a {A} {O}.",
    "Listen, the {A} {O} is {P} again.",
    "We should ask {s} about the {A} {O}.",
    "Please bring the {A} {O} {P} before dark.",
    "Honestly, {s} {V} my {A} {O} {T}!",
)
MAX_CHARS = 42  # longer sentences are broken in two subtitle lines


def sentences(n: int, rng: random.Random) -> list[str]:
    """``n`` different English sentences, drawn from the word lists above."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        subject = rng.choice(SUBJECTS)
        when = rng.choice(TIMES)
        text = rng.choice(TEMPLATES).format(
            S=subject[0].upper() + subject[1:],
            s=subject,
            V=rng.choice(VERBS),
            A=rng.choice(ADJECTIVES),
            O=rng.choice(OBJECTS),
            P=rng.choice(PLACES),
            T=when,
            T_=when[0].upper() + when[1:],
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def subtitle_text(sentence: str) -> str:
    """The sentence as subtitle lines: broken at the space nearest the middle when long."""
    if len(sentence) <= MAX_CHARS:
        return sentence
    middle = len(sentence) // 2
    spaces = [i for i, c in enumerate(sentence) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return sentence[:cut] + "\n" + sentence[cut + 1 :]


def cast(n_lines: int, speakers: tuple[Speaker, ...], rng: random.Random) -> list[tuple[int, int]]:
    """``(scene, speaker index)`` for each line: scenes of 3-6 lines, 2 or more speakers each,
    the speaker changing at 4 lines in 5. Every speaker gets a fair share of lines."""
    k = len(speakers)
    for _ in range(1000):
        out: list[tuple[int, int]] = []
        scene = 0
        while len(out) < n_lines:
            size = min(rng.randint(3, 6), n_lines - len(out))
            members = rng.sample(range(k), min(k, rng.choice((2, 2, 3))))
            who = rng.choice(members)
            for _ in range(size):
                out.append((scene, who))
                others = [m for m in members if m != who]
                if others and rng.random() < 0.8:
                    who = rng.choice(others)
            scene += 1
        counts = [sum(1 for _, w in out if w == i) for i in range(k)]
        if min(counts) >= max(1, n_lines // (2 * k)):
            return out
    raise AssertionError("no fair cast found")  # not reached for sane sizes


# ---------------------------------------------------------------------------------- audio


def synthesize(text: str, speaker: Speaker, folder: Path) -> np.ndarray:
    """espeak-ng's rendering of ``text``: float32 at 22.05 kHz, silence trimmed, RMS 0.1."""
    fd, name = tempfile.mkstemp(suffix=".wav", dir=folder)
    os.close(fd)
    try:
        cmd = ["espeak-ng", "-v", speaker.voice, "-p", str(speaker.pitch)]
        cmd += ["-s", str(speaker.speed), "-w", name, text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        with wave.open(name, "rb") as w:
            assert w.getframerate() == TTS_RATE and w.getsampwidth() == 2, "unexpected espeak WAV"
            raw = w.readframes(w.getnframes())
            channels = w.getnchannels()
    finally:
        os.unlink(name)
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    loud = np.flatnonzero(np.abs(x) > 0.01 * max(float(np.abs(x).max()), 1e-9))
    x = x[loud[0] : loud[-1] + 1] if len(loud) else x
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    return (x * (0.1 / rms)).astype(np.float32) if rms > 0 else x


def _write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


# ---------------------------------------------------------------------------------- subtitles


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    return (
        f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"
    )


def _ass_clock(seconds: float) -> str:
    cs = round(seconds * 100)
    return f"{cs // 360_000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def srt_text(lines: tuple[TruthLine, ...]) -> str:
    blocks = [
        f"{i}\n{_clock(ln.start, ',')} --> {_clock(ln.end, ',')}\n{ln.text}\n"
        for i, ln in enumerate(lines, 1)
    ]
    return "\n".join(blocks)


def vtt_text(lines: tuple[TruthLine, ...]) -> str:
    blocks = [f"{_clock(ln.start, '.')} --> {_clock(ln.end, '.')}\n{ln.text}\n" for ln in lines]
    return "WEBVTT\n\n" + "\n".join(blocks)


def ass_text(lines: tuple[TruthLine, ...], sign: TruthLine) -> str:
    head = f"""[Script Info]
; made by tests/synthetic_episode.py
Title: Synthetic episode
ScriptType: v4.00+
WrapStyle: 0
PlayResX: {WIDTH}
PlayResY: {HEIGHT}
ScaledBorderAndShadow: yes

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, \
Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, \
Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,DejaVu Sans,24,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,\
0,0,1,2,1,2,20,20,20,1
Style: Sign,DejaVu Sans,20,&H00202020,&H000000FF,&H00FFFFFF,&H00000000,1,0,0,0,100,100,\
0,0,1,1,0,8,20,20,20,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""
    sign_event = (
        f"Dialogue: 1,{_ass_clock(sign.start)},{_ass_clock(sign.end)},Sign,,0,0,0,,"
        f"{{\\an8\\pos(320,40)}}{sign.text}"
    )
    events = [sign_event] + [
        f"Dialogue: 0,{_ass_clock(ln.start)},{_ass_clock(ln.end)},Default,,0,0,0,,"
        + ln.text.replace("\n", "\\N")
        for ln in lines
    ]
    return head + "\n".join(events) + "\n"


# ---------------------------------------------------------------------------------- video


def find_font() -> str | None:
    for path in FONTS:
        if Path(path).is_file():
            return path
    found = shutil.which("fc-match")
    if found:
        done = subprocess.run(
            [found, "-f", "%{file}", "sans:bold"], capture_output=True, text=True, timeout=30
        )
        if done.returncode == 0 and Path(done.stdout.strip()).is_file():
            return done.stdout.strip()
    return None


def _escape(value: str) -> str:
    """A value for a filtergraph option, quoted for both levels of ffmpeg's parsing."""
    return "'" + value.replace("\\", "\\\\").replace("'", "'\\''").replace(":", "\\:") + "'"


def video_filters(
    lines: tuple[TruthLine, ...], speakers: tuple[Speaker, ...], font: str | None
) -> str:
    """One drawbox (the colour band) and one drawtext (the name) per speaker, each enabled
    during that speaker's lines."""
    parts = []
    for sp in speakers:
        spans = [(ln.start, ln.end) for ln in lines if ln.speaker == sp.name]
        if not spans:
            continue
        # ffmpeg's expression parser refuses deep expressions: a filter per 40 lines
        for k in range(0, len(spans), 40):
            enable = "+".join(f"between(t,{a:.2f},{b:.2f})" for a, b in spans[k : k + 40])
            parts.append(f"drawbox=x=0:y=0:w=iw:h={BAND}:color={sp.hex}:t=fill:enable='{enable}'")
            if font:
                parts.append(
                    f"drawtext=fontfile={_escape(font)}:text={_escape(sp.name)}:fontsize=48"
                    f":fontcolor=white:x=24:y=(({BAND}-th)/2):enable='{enable}'"
                )
    # the "face": a white panel in the lower half during the last third of every line, for
    # the tests of the frame chooser (a stand-in for a detector's face; see FACE_BOX)
    spans = [(ln.start + (ln.end - ln.start) * 2 / 3, ln.end) for ln in lines]
    x, y, w, h = FACE_BOX
    for k in range(0, len(spans), 40):
        enable = "+".join(f"between(t,{a:.2f},{b:.2f})" for a, b in spans[k : k + 40])
        parts.append(f"drawbox=x={x}:y={y}:w={w}:h={h}:color=white:t=fill:enable='{enable}'")
    return ",\n".join(parts) if parts else "null"


def make_silent_video(path: Path, seconds: float = 2.0) -> Path:
    """A short video with no audio track at all."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    cmd += ["-i", f"color=c=0x336699:s=320x180:r=12:d={seconds}", "-c:v", "libx264"]
    cmd += ["-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return path


# ---------------------------------------------------------------------------------- build


def build_episode(
    folder: str | os.PathLike[str],
    *,
    lines: int | None = 12,
    speakers: int = 3,
    seed: int = 0,
    minutes: float | None = None,
    distinct: int | None = None,
    fps: int = 24,
    audio_codec: str = "libopus",
    name: str = "episode",
    workers: int = 2,
) -> SyntheticEpisode:
    """Build a synthetic episode of ``lines`` lines said by ``speakers`` (2 to 4) voices.

    ``minutes`` stretches the pauses between scenes so the episode lasts that long (with
    ``lines=None``, a line every 4.8 s: 300 lines in 24 minutes). ``distinct`` sentences are
    synthesized (default: one per line) and reused in turn when fewer than the lines; each is
    synthesized once per speaker who says it. The same ``seed`` gives the same episode.
    ``audio_codec`` is the ffmpeg encoder of the video's audio (48 kHz stereo): ``libopus``
    (fast), ``aac`` (about nine times slower to encode) or ``flac``.
    """
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"needs {', '.join(missing)}: apt install ffmpeg espeak-ng")
    if not 2 <= speakers <= len(SPEAKERS):
        raise ValueError(f"speakers must be 2 to {len(SPEAKERS)}")
    if lines is None:
        if minutes is None:
            raise ValueError("give lines, minutes or both")
        lines = max(1, int(minutes * 60 / SECONDS_PER_LINE))
    if lines < 1:
        raise ValueError("lines must be at least 1")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cast_of = SPEAKERS[:speakers]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    # the script: who says which sentence
    pool = sentences(min(distinct or lines, lines), rng)
    roles = cast(lines, cast_of, rng)
    script = [(scene, cast_of[who], pool[i % len(pool)]) for i, (scene, who) in enumerate(roles)]

    # speech: each (speaker, sentence) once
    work = tempfile.mkdtemp(prefix=".synth-", dir=out)
    try:
        wanted = sorted({(sp.name, text) for _, sp, text in script})
        by_name = {sp.name: sp for sp in cast_of}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool_x:
            clips = dict(
                zip(
                    wanted,
                    pool_x.map(lambda k: synthesize(k[1], by_name[k[0]], Path(work)), wanted),
                    strict=True,
                )
            )
        seconds["speech"] = time.perf_counter() - t0

        # the timeline, in whole centiseconds: every subtitle format carries it exactly
        durations = [
            math.ceil(len(clips[(sp.name, text)]) / TTS_RATE * 100) for _, sp, text in script
        ]
        gaps = []  # the pause before each line after the first
        for i in range(1, lines):
            new_scene = script[i][0] != script[i - 1][0]
            gaps.append(
                round(100 * (rng.uniform(1.8, 3.5) if new_scene else rng.uniform(0.25, 0.9)))
            )
        lead, tail = round(LEAD_IN * 100), round(TAIL * 100)
        if minutes is not None:  # longer pauses between scenes, to last that long
            extra = round(minutes * 6000) - (lead + sum(durations) + sum(gaps) + tail)
            if extra < 0:
                raise ValueError(f"{lines} lines do not fit in {minutes} minutes")
            share = [i for i in range(len(gaps)) if script[i + 1][0] != script[i][0]]
            for i in share:
                gaps[i] += extra // len(share)
            tail += extra % len(share) if share else extra
        truth: list[TruthLine] = []
        cursor = lead
        for i, (_, sp, text) in enumerate(script):
            start = cursor + (gaps[i - 1] if i else 0)
            cursor = start + durations[i]
            truth.append(TruthLine(start / 100, cursor / 100, subtitle_text(text), sp.name))
        total = (cursor + tail) / 100
        mix_rng = np.random.default_rng(seed)
        mix = (mix_rng.standard_normal(round(total * TTS_RATE)) * 3e-4).astype(np.float32)
        for ln, (_, sp, text) in zip(truth, script, strict=True):
            x = clips[(sp.name, text)]
            i = round(ln.start * TTS_RATE)
            mix[i : i + len(x)] += x[: len(mix) - i]
        mix_path = Path(work) / "mix.wav"
        _write_wav(mix_path, mix, TTS_RATE)
        seconds["mix"] = time.perf_counter() - t0 - sum(seconds.values())

        # subtitles
        lines_t = tuple(truth)
        sign = TruthLine(0.5, min(total, 4.0), "The Lantern Bakery", "")
        paths = {
            "srt": out / f"{name}.srt",
            "ass": out / f"{name}.ass",
            "vtt": out / f"{name}.vtt",
            "srt_utf16": out / f"{name}.utf16.srt",
        }
        paths["srt"].write_bytes(srt_text(lines_t).encode("utf-8"))
        paths["ass"].write_bytes(ass_text(lines_t, sign).encode("utf-8-sig"))
        paths["vtt"].write_bytes(vtt_text(lines_t).encode("utf-8"))
        paths["srt_utf16"].write_bytes(srt_text(lines_t).encode("utf-16"))  # BOM + LE

        # video and audio, one ffmpeg run with two outputs
        font = find_font()
        script_path = Path(work) / "filters.txt"
        script_path.write_text(video_filters(lines_t, cast_of, font), encoding="utf-8")
        video, wav = out / f"{name}.mkv", out / f"{name}.wav"
        bg = "0x{:02X}{:02X}{:02X}".format(*BACKGROUND)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        cmd += ["-f", "lavfi", "-i", f"color=c={bg}:s={WIDTH}x{HEIGHT}:r={fps}:d={total}"]
        cmd += ["-i", str(mix_path), "-filter_script:v", str(script_path)]
        cmd += ["-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast"]
        cmd += ["-pix_fmt", "yuv420p", "-g", str(fps * 10), "-c:a", audio_codec]
        if audio_codec in ("libopus", "aac"):
            cmd += ["-b:a", "96k"]
        cmd += ["-ar", "48000", "-ac", "2", str(video)]
        cmd += ["-map", "1:a", "-ar", str(WAV_RATE), "-ac", "1", "-c:a", "pcm_s16le", str(wav)]
        done = subprocess.run(cmd, capture_output=True, timeout=3600)
        if done.returncode:
            raise RuntimeError("ffmpeg failed: " + done.stderr.decode(errors="replace")[-2000:])
        seconds["video"] = time.perf_counter() - t0 - sum(seconds.values())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds["total"] = time.perf_counter() - t0
    return SyntheticEpisode(
        folder=out,
        video=video,
        wav=wav,
        srt=paths["srt"],
        ass=paths["ass"],
        vtt=paths["vtt"],
        srt_utf16=paths["srt_utf16"],
        lines=lines_t,
        scenes=tuple(scene for scene, _, _ in script),
        speakers=cast_of,
        duration=total,
        sign=sign,
        drawtext=font is not None,
        seconds=seconds,
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--distinct", type=int, default=None)
    parser.add_argument("--audio-codec", default="libopus")
    args = parser.parse_args(argv)
    lines = args.lines if args.lines is not None or args.minutes is not None else 12
    ep = build_episode(
        args.folder,
        lines=lines,
        speakers=args.speakers,
        seed=args.seed,
        minutes=args.minutes,
        distinct=args.distinct,
        audio_codec=args.audio_codec,
    )
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in ep.seconds.items())
    print(f"{ep.video}: {len(ep.lines)} lines, {ep.duration:.1f} s; built in {steps}")
    if not ep.drawtext:
        print("no font found: speakers are shown by colour only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
