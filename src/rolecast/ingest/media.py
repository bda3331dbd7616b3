"""Reading episodes with ffmpeg: what a media file holds, its audio track, and still frames.

Everything here runs the ``ffmpeg`` and ``ffprobe`` programs found on ``PATH`` (Debian:
``apt install ffmpeg``) as subprocesses; no Python media library is needed.

- :func:`probe` says what a file holds (:class:`MediaInfo`); a file that is not media raises
  :class:`~rolecast.errors.ParseError`.
- :func:`load_audio` decodes the whole audio track once, to a mono float32 array.
- :func:`clip` cuts a line's audio out of that array; :func:`write_wav` saves audio as 16-bit
  PCM WAV.
- :func:`extract_frames` saves one JPEG per requested time (a line's midpoint, say).

Long steps take a ``progress`` callback, called as ``progress(done, total)`` from the calling
thread. Files are written atomically: to a temporary name in the target folder, then renamed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import uuid
import wave
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, MissingDependencyError, ParseError, RolecastError

Progress = Callable[[int, int], None]

PROBE_TIMEOUT = 60.0  # seconds for ffprobe to read a file's headers
FRAME_TIMEOUT = 120.0  # seconds for one ffmpeg process that writes still frames
FRAME_BATCH = 12  # still frames one ffmpeg process writes
_CHUNK = 1 << 20  # bytes read at a time from ffmpeg's decoded audio


class MissingToolError(MissingDependencyError):
    """A program (``ffmpeg``, ``ffprobe``) is not on ``PATH``; the message names the apt package."""

    def __init__(self, program: str, package: str = "ffmpeg"):
        self.program, self.package = program, package
        RolecastError.__init__(
            self,
            f"reading audio and video needs the {program!r} program, which was not found on "
            f"PATH: apt install {package} (or your system's {package} package)",
        )


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found. ``duration`` in seconds; video fields are None without video.

    ``has_video`` counts real video only, not cover art attached to an audio file.
    """

    duration: float
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_streams: int = 0
    format_name: str = ""


class Frames(list[Path]):
    """The JPEG files :func:`extract_frames` wrote, in the order of the times that were kept.

    A ``list[Path]``; ``times`` holds the time (seconds) of each path, and ``skipped`` the
    times that gave no frame, as ``(time, reason)`` pairs.
    """

    def __init__(
        self,
        paths: Iterable[Path] = (),
        times: Iterable[float] = (),
        skipped: Iterable[tuple[float, str]] = (),
    ):
        super().__init__(paths)
        self.times: list[float] = list(times)
        self.skipped: list[tuple[float, str]] = list(skipped)


# ---------------------------------------------------------------------------------- tools


def _tool(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise MissingToolError(program)
    return found


def _run(cmd: list[str], timeout: float | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise MissingToolError(Path(cmd[0]).name) from None


def _last_line(stderr: bytes, limit: int = 300) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    text = lines[-1] if lines else "no message"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _source(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The path, checked to be a file, and how to name it to ffmpeg.

    The ``file:`` prefix keeps a name like ``concat:a|b`` or ``http:x`` from being read as
    one of ffmpeg's protocols.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such media file: {p}")
    if not p.is_file():
        raise InputError(f"not a file: {p}")
    return p, "file:" + str(p.resolve())


# ---------------------------------------------------------------------------------- probe


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """What ``path`` holds: duration, audio, video. Not a media file: :class:`ParseError`."""
    p, src = _source(path)
    cmd = [_tool("ffprobe"), "-v", "error", "-print_format", "json"]
    cmd += ["-show_format", "-show_streams", src]
    try:
        done = _run(cmd, PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ParseError(f"ffprobe did not finish in {PROBE_TIMEOUT:.0f} s", p) from None
    if done.returncode != 0:
        raise ParseError(f"not a media file ffmpeg can read ({_last_line(done.stderr)})", p)
    try:
        data = json.loads(done.stdout.decode("utf-8", "replace") or "{}")
    except ValueError:
        raise ParseError("ffprobe gave no readable description", p) from None
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
        and s.get("codec_name") not in ("ansi", "bintext", "xbin", "idf", "tty")
    ]
    format_name = str(fmt.get("format_name") or "")
    if format_name in ("image2", "tty") or format_name.endswith("_pipe"):
        raise ParseError(f"a still image or text, not audio or video ({format_name})", p)
    if not audio and not video:
        kinds = sorted({str(s.get("codec_type")) for s in streams}) or ["nothing"]
        raise ParseError(f"no audio or video stream (found {', '.join(kinds)})", p)
    duration = _number(fmt.get("duration"))
    if duration is None:
        durations = [_number(s.get("duration")) for s in audio + video]
        duration = max((d for d in durations if d is not None), default=None)
    if duration is None or duration <= 0:
        raise ParseError("media without a duration (a still image, or a broken file)", p)
    first = video[0] if video else {}
    return MediaInfo(
        duration=duration,
        has_audio=bool(audio),
        has_video=bool(video),
        width=_int(first.get("width")),
        height=_int(first.get("height")),
        fps=_rate(first.get("avg_frame_rate")) or _rate(first.get("r_frame_rate")),
        audio_streams=len(audio),
        format_name=format_name,
    )


def _number(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(value: object) -> int | None:
    x = _number(value)
    return int(x) if x is not None and x > 0 else None


def _rate(value: object) -> float | None:
    """``"24000/1001"`` as a number; None for ``"0/0"`` and the like."""
    if not isinstance(value, str) or "/" not in value:
        return None
    num, _, den = value.partition("/")
    a, b = _number(num), _number(den)
    return a / b if a and b and a > 0 and b > 0 else None


# ---------------------------------------------------------------------------------- audio


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = 16000,
    *,
    stream: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """The whole audio track of ``path`` as mono float32 samples at ``sample_rate``.

    One ffmpeg process decodes, downmixes and resamples the track (the ``stream``-th audio
    stream, counting from 0) to raw float32 on its standard output. ``progress(done, total)``
    counts samples against the number the duration promises; the last call is
    ``(n, n)``. A file without audio raises :class:`InputError`.
    """
    if not (isinstance(sample_rate, int) and 1000 <= sample_rate <= 384000):
        raise InputError(f"the sample rate must be a whole number of Hz: {sample_rate!r}")
    info = probe(path)
    p, src = _source(path)
    if not info.has_audio:
        raise InputError(
            f"{p}: video without an audio track: attribution by voice is not possible; "
            "text-only ingest still works"
        )
    if not 0 <= stream < info.audio_streams:
        raise InputError(f"{p} has {info.audio_streams} audio stream(s); there is no {stream}")
    expected = max(1, round(info.duration * sample_rate))
    cmd = [_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", src]
    cmd += ["-map", f"0:a:{stream}", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate)]
    cmd += ["-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    buf = np.empty(expected + sample_rate, dtype="<f4")  # a second to spare
    got = 0  # bytes
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
            )
        except FileNotFoundError:
            raise MissingToolError("ffmpeg") from None
        with proc:  # closes the pipe and waits, however this block is left
            try:
                assert proc.stdout is not None
                while True:
                    if got + _CHUNK > buf.nbytes:  # longer than the duration said
                        buf = np.concatenate([buf, np.empty(len(buf) // 2 + _CHUNK, "<f4")])
                    view = memoryview(buf.view(np.uint8))  # type: ignore[arg-type]
                    n = proc.stdout.readinto(view[got : got + _CHUNK])  # type: ignore[attr-defined]
                    if not n:
                        break
                    got += n
                    if progress is not None:
                        done = got // 4
                        progress(min(done, expected), max(done, expected))
            except BaseException:
                proc.kill()
                raise
        if proc.returncode != 0:
            errors.seek(0)
            raise ParseError(f"ffmpeg could not decode the audio ({_last_line(errors.read())})", p)
    n = got // 4
    audio = buf[:n] if len(buf) - n <= 2 * sample_rate else buf[:n].copy()
    audio = audio.astype(np.float32, copy=False)
    if progress is not None:
        progress(len(audio), len(audio))
    return audio


def clip(
    audio: np.ndarray, sample_rate: int, start: float, end: float, pad: float = 0.05
) -> np.ndarray:
    """A copy of the samples from ``start - pad`` to ``end + pad`` seconds, cut to the array.

    A span wholly outside the audio gives an empty array.
    """
    if sample_rate <= 0:
        raise InputError(f"the sample rate must be positive: {sample_rate}")
    for name, value in (("start", start), ("end", end), ("pad", pad)):
        if not math.isfinite(value):
            raise InputError(f"the {name} time must be a finite number: {value}")
    if end < start:
        raise InputError(f"the clip ends before it starts ({end} < {start})")
    n = len(audio)
    i = min(n, max(0, math.floor((start - max(pad, 0.0)) * sample_rate)))
    j = min(n, max(0, math.ceil((end + max(pad, 0.0)) * sample_rate)))
    return np.array(audio[i:j], copy=True) if j > i else audio[:0].copy()


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int) -> Path:
    """Save ``audio`` (float in [-1, 1], or int16) as 16-bit PCM WAV, atomically.

    A 1-D array is mono; a 2-D array is ``(samples, channels)``. Float samples beyond
    [-1, 1] are clipped.
    """
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise InputError(f"the sample rate must be a positive whole number: {sample_rate!r}")
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise InputError(f"audio must be 1-D or (samples, channels), not shape {a.shape}")
    if a.dtype != np.int16:
        if not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"audio must be float or int16 samples, not {a.dtype}")
        a = np.round(np.clip(np.nan_to_num(a), -1.0, 1.0) * 32767.0).astype(np.int16)
    target = Path(path)

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(a.shape[1])
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(np.ascontiguousarray(a).astype("<i2", copy=False).tobytes())

    _atomic(target, write)
    return target


def _atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temp_name(target: Path) -> Path:
    """A fresh hidden name beside ``target``; the file is not created (so it gets the usual
    permissions when it is)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


# ---------------------------------------------------------------------------------- frames


def frame_name(time: float) -> str:
    """The file name of the frame at ``time`` seconds: milliseconds, zero-padded."""
    return f"{round(time * 1000):09d}.jpg"


def extract_frames(
    path: str | os.PathLike[str],
    times: Sequence[float],
    out_dir: str | os.PathLike[str],
    width: int = 640,
    *,
    quality: int = 3,
    workers: int | None = None,
    batch: int = FRAME_BATCH,
    progress: Progress | None = None,
) -> Frames:
    """One JPEG per time in ``times`` (seconds), in ``out_dir``, named by :func:`frame_name`.

    Frames are scaled to ``width`` pixels wide (never enlarged; square pixels), keeping the
    aspect ratio; ``quality`` is ffmpeg's JPEG scale (2 best, 31 worst). Each frame is found
    by seeking in the input and decoding from the keyframe before it, never by decoding the
    whole episode; one ffmpeg process takes ``batch`` frames in time order (starting ffmpeg
    costs about as much as finding a frame), and ``workers`` processes (default: the number
    of CPUs, at most 4) run at once. Times outside the media, and times where ffmpeg finds no
    frame, are skipped and listed in the result's ``skipped``; a file without video raises
    :class:`InputError`. ``progress(done, total)`` counts frames.
    """
    if not (isinstance(width, int) and 16 <= width <= 8192):
        raise InputError(f"the frame width must be a whole number of pixels: {width!r}")
    if not (isinstance(quality, int) and 2 <= quality <= 31):
        raise InputError(f"the JPEG quality must be 2 (best) to 31: {quality!r}")
    if not (isinstance(batch, int) and batch >= 1):
        raise InputError(f"the batch size must be a positive whole number: {batch!r}")
    info = probe(path)
    p, src = _source(path)
    if not info.has_video:
        raise InputError(f"{p} has no video track: there are no frames to extract")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[float, str]] = []
    wanted: dict[str, float] = {}  # file name -> time, one extraction per millisecond
    kept: list[tuple[float, str]] = []
    for t in times:
        t = float(t)
        if not math.isfinite(t) or t < 0 or t >= info.duration:
            skipped.append((t, f"outside the media (0 to {info.duration:.3f} s)"))
            continue
        name = frame_name(t)
        wanted.setdefault(name, t)
        kept.append((t, name))
    jobs = sorted(wanted.items(), key=lambda item: item[1])
    groups = [jobs[i : i + batch] for i in range(0, len(jobs), batch)]
    grab = _Grabber(_tool("ffmpeg"), src, out, width, quality)
    problems: dict[str, str] = {}
    if groups:
        n = workers if workers is not None else min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max(1, min(n, len(groups)))) as pool:
            futures = [pool.submit(grab, group) for group in groups]
            done = 0
            try:
                for future in as_completed(futures):
                    found = future.result()
                    problems.update((k, v) for k, v in found.items() if v)
                    done += len(found)
                    if progress is not None:
                        progress(done, len(jobs))
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    result = Frames()
    for t, name in kept:
        if name in problems:
            skipped.append((t, problems[name]))
        else:
            result.append(out / name)
            result.times.append(t)
    result.skipped = skipped
    return result


@dataclass(frozen=True)
class _Grabber:
    """Writes a group of frames with one ffmpeg process; returns ``{name: problem or None}``."""

    ffmpeg: str
    src: str
    out: Path
    width: int
    quality: int

    def __call__(self, group: list[tuple[str, float]]) -> dict[str, str | None]:
        w = self.width
        scale = f"scale=w='trunc(min(iw*sar\\,{w})/2)*2':h='trunc(ow/dar/2)*2',setsar=1"
        cmd = [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        for _, t in group:  # one decoder thread each: the parallelism is in the processes
            cmd += ["-threads", "1", "-ss", f"{t:.3f}", "-i", self.src]
        tmps: dict[str, Path] = {}
        try:
            for i, (name, _) in enumerate(group):
                tmp = tmps[name] = _temp_name(self.out / name)
                cmd += ["-map", f"{i}:V:0", "-frames:v", "1", "-vf", scale, "-c:v", "mjpeg"]
                cmd += ["-q:v", str(self.quality), "-f", "image2", "-update", "1", str(tmp)]
            try:
                done = _run(cmd, FRAME_TIMEOUT + 5.0 * len(group))
                failure = (
                    None if done.returncode == 0 else f"ffmpeg failed: {_last_line(done.stderr)}"
                )
            except subprocess.TimeoutExpired:
                failure = f"ffmpeg did not finish in {FRAME_TIMEOUT + 5.0 * len(group):.0f} s"
            if failure and len(group) > 1:  # find which frames fail: one process each
                found: dict[str, str | None] = {}
                for item in group:
                    found.update(self([item]))
                return found
            if failure:
                return {group[0][0]: failure}
            found = {}
            for name, _ in group:
                tmp = tmps[name]
                if tmp.is_file() and tmp.stat().st_size > 0:
                    os.replace(tmp, self.out / name)
                    found[name] = None
                else:
                    found[name] = "no frame at this time"
            return found
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)
