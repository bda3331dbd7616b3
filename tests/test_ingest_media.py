"""Media I/O with ffmpeg (rolecast.ingest.media) on a synthetic episode with known speakers.

The episode (tests/synthetic_episode.py) is built once for the module: 12 lines, 3 espeak-ng
voices, a video whose top band has the speaker's colour. Set ROLECAST_SLOW=1 for the slow
tests: a 24-minute episode (build, audio decode, 300 frames, timed) and a check with
Resemblyzer that the voices are told apart.
"""

from __future__ import annotations

import math
import os
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from synthetic_episode import (
    BACKGROUND,
    BAND,
    SyntheticEpisode,
    build_episode,
    make_silent_video,
    tools_missing,
)

from rolecast.errors import InputError, MissingDependencyError, ParseError, RolecastError
from rolecast.ingest import media

pytestmark = pytest.mark.e2e  # ffmpeg and espeak-ng on a synthetic episode

RATE = 16000
slow = pytest.mark.skipif(not os.environ.get("ROLECAST_SLOW"), reason="set ROLECAST_SLOW=1")


def _need_tools() -> None:
    missing = tools_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {', '.join(missing)} (apt install ffmpeg espeak-ng)")
        pytest.skip(f"needs {', '.join(missing)} (apt install ffmpeg espeak-ng)")


@pytest.fixture(scope="module")
def ep(tmp_path_factory: pytest.TempPathFactory) -> SyntheticEpisode:
    _need_tools()
    return build_episode(tmp_path_factory.mktemp("episode"), lines=12, speakers=3, seed=7)


@pytest.fixture(scope="module")
def audio(ep: SyntheticEpisode) -> np.ndarray:
    return media.load_audio(ep.video, RATE)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _pixel(path: Path, xy: tuple[int, int]) -> tuple[int, int, int]:
    image = pytest.importorskip("PIL.Image")
    with image.open(path) as im:
        return im.convert("RGB").getpixel(xy)  # type: ignore[return-value]


def _near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 30) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------- episode


def test_episode_truth_is_consistent(ep: SyntheticEpisode) -> None:
    assert len(ep.lines) == 12 and len(ep.truth) == 12
    assert {ln.speaker for ln in ep.lines} == {s.name for s in ep.speakers}
    assert len({ln.text for ln in ep.lines}) == 12  # every line a different sentence
    for a, b in zip(ep.lines, ep.lines[1:], strict=False):
        assert a.start < a.end < b.start  # in order, never overlapping
    for ln in ep.lines:  # on the 10 ms grid every subtitle format can carry
        assert round(ln.start * 100) == pytest.approx(ln.start * 100, abs=1e-6)
    gaps = [b.start - a.end for a, b in zip(ep.lines, ep.lines[1:], strict=False)]
    assert min(gaps) < 1.0 < 1.7 < max(gaps)  # short pauses in a scene, longer between
    assert ep.lines[-1].end < ep.duration
    for path in (ep.video, ep.wav, *ep.subtitles):
        assert path.is_file() and path.stat().st_size > 0
    assert ep.ass.read_bytes().startswith(b"\xef\xbb\xbf")
    assert ep.srt_utf16.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")


def test_subtitles_carry_the_truth(ep: SyntheticEpisode) -> None:
    pytest.importorskip("pysubs2")
    from rolecast.ingest.subtitles import read_subtitles

    for path in ep.subtitles:
        subs = read_subtitles(path.read_bytes(), path.name, duration=ep.duration)
        got = [(ln.start, ln.end, ln.text) for ln in subs.dialogue]
        want = [(ln.start, ln.end, ln.text) for ln in ep.lines]
        assert got == want, path.name
    ass = read_subtitles(ep.ass.read_bytes(), ep.ass.name)
    signs = [ln for ln in ass.lines if ln.kind == "sign"]
    assert [ln.text for ln in signs] == [ep.sign.text]
    assert "16" in read_subtitles(ep.srt_utf16.read_bytes(), ep.srt_utf16.name).encoding


# ---------------------------------------------------------------------------------- probe


def test_probe_episode(ep: SyntheticEpisode) -> None:
    info = media.probe(ep.video)
    assert info.duration == pytest.approx(ep.duration, abs=0.1)
    assert info.has_audio and info.has_video and info.audio_streams == 1
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(24)
    wav = media.probe(ep.wav)
    assert wav.has_audio and not wav.has_video and wav.width is None and wav.fps is None
    assert wav.duration == pytest.approx(ep.duration, abs=0.01)


def test_probe_refuses_what_is_not_media(ep: SyntheticEpisode, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 20, encoding="utf-8")
    disguised = tmp_path / "episode.mkv"
    disguised.write_bytes(b"hello, not matroska" * 50)
    image = tmp_path / "still.jpg"  # ffmpeg reads it as a one-frame video: still refused
    media.extract_frames(ep.video, [1.0], tmp_path / "one")[0].rename(image)
    for path in (text, disguised, ep.srt, image):  # a subtitle file: no audio or video stream
        with pytest.raises(ParseError) as err:
            media.probe(path)
        assert path.name in str(err.value)
    with pytest.raises(ParseError):
        media.load_audio(text)
    with pytest.raises(ParseError):
        media.extract_frames(text, [1.0], tmp_path / "frames")
    with pytest.raises(InputError, match="no such media file"):
        media.probe(tmp_path / "missing.mkv")
    with pytest.raises(InputError, match="not a file"):
        media.probe(tmp_path)


def test_missing_ffmpeg_says_how_to_install(
    ep: SyntheticEpisode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg, no ffprobe
    with pytest.raises(MissingDependencyError) as err:
        media.probe(ep.video)
    assert isinstance(err.value, RolecastError)
    assert "apt install ffmpeg" in str(err.value) and "ffprobe" in str(err.value)


# ---------------------------------------------------------------------------------- audio


def test_load_audio_whole_track(ep: SyntheticEpisode, audio: np.ndarray) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(ep.duration * RATE, abs=0.1 * RATE)
    assert np.all(np.isfinite(audio)) and float(np.abs(audio).max()) <= 1.0


def test_load_audio_progress_and_rate(ep: SyntheticEpisode) -> None:
    calls: list[tuple[int, int]] = []
    x = media.load_audio(ep.wav, 8000, progress=lambda d, t: calls.append((d, t)))
    assert len(x) == pytest.approx(ep.duration * 8000, abs=2)
    assert calls and calls[-1] == (len(x), len(x))
    assert all(d <= t for d, t in calls)
    with pytest.raises(InputError):
        media.load_audio(ep.wav, 0)
    with pytest.raises(InputError, match="audio stream"):
        media.load_audio(ep.wav, stream=1)


def test_lines_are_loud_and_pauses_quiet(ep: SyntheticEpisode, audio: np.ndarray) -> None:
    for ln in ep.lines:
        assert _rms(media.clip(audio, RATE, ln.start, ln.end, pad=0)) > 0.03, ln
    for a, b in zip(ep.lines, ep.lines[1:], strict=False):
        if b.start - a.end >= 0.4:  # the middle of the pause, away from codec smear
            assert _rms(media.clip(audio, RATE, a.end + 0.1, b.start - 0.1, pad=0)) < 0.005
    assert _rms(media.clip(audio, RATE, 0.1, ep.lines[0].start - 0.1, pad=0)) < 0.005


def test_video_and_wav_carry_the_same_dialogue(ep: SyntheticEpisode, audio: np.ndarray) -> None:
    wav = media.load_audio(ep.wav, RATE)
    n = min(len(wav), len(audio))
    ln = ep.lines[0]
    a = media.clip(wav[:n], RATE, ln.start, ln.end)
    b = media.clip(audio[:n], RATE, ln.start, ln.end)
    assert np.corrcoef(a, b)[0, 1] > 0.8  # Opus in the video, PCM in the WAV


def test_clip_bounds() -> None:
    x = np.arange(16000, dtype=np.float32)
    assert len(media.clip(x, 16000, 0.25, 0.5, pad=0)) == 4000
    assert media.clip(x, 16000, 0.25, 0.5, pad=0)[0] == 4000
    assert len(media.clip(x, 16000, 0.25, 0.5)) == 4000 + 2 * 800  # 50 ms each side
    assert len(media.clip(x, 16000, -3.0, 0.5, pad=0)) == 8000  # clamped at the start
    assert len(media.clip(x, 16000, 0.9, 7.0, pad=0)) == 1600  # and at the end
    assert len(media.clip(x, 16000, 5.0, 6.0)) == 0  # wholly outside: empty
    c = media.clip(x, 16000, 0.0, 0.1)
    c[:] = -1
    assert x[0] == 0  # a copy, not a view
    with pytest.raises(InputError):
        media.clip(x, 16000, 0.5, 0.25)
    with pytest.raises(InputError):
        media.clip(x, 16000, math.nan, 0.25)


def test_write_wav_roundtrip(tmp_path: Path) -> None:
    t = np.arange(8000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    x[0], x[1] = 2.0, -2.0  # clipped, not wrapped
    out = media.write_wav(tmp_path / "sub" / "a.wav", x, 16000)
    assert out == tmp_path / "sub" / "a.wav"
    assert [p.name for p in out.parent.iterdir()] == ["a.wav"]  # no temporary file left
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        y = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(y) == 8000 and y[0] == 32767 and y[1] == -32767
    assert np.allclose(y[2:] / 32767, x[2:], atol=1 / 32767)
    media.write_wav(out, np.zeros((100, 2), dtype=np.int16), 8000)  # replaced in place
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 100)
    with pytest.raises(InputError):
        media.write_wav(tmp_path / "b.wav", np.zeros(10, dtype=np.int32), 16000)
    assert not (tmp_path / "b.wav").exists()


def test_video_without_audio_is_a_clear_error(tmp_path: Path) -> None:
    _need_tools()
    silent = make_silent_video(tmp_path / "silent.mp4", seconds=2.0)
    info = media.probe(silent)
    assert info.has_video and not info.has_audio
    with pytest.raises(InputError) as err:
        media.load_audio(silent)
    message = str(err.value)
    assert "without an audio track" in message and "text-only ingest still works" in message
    frames = media.extract_frames(silent, [1.0], tmp_path / "frames")  # frames still work
    assert len(frames) == 1 and frames[0].is_file()


# ---------------------------------------------------------------------------------- frames


def test_frames_show_the_speaker(ep: SyntheticEpisode, tmp_path: Path) -> None:
    mids = [(ln.start + ln.end) / 2 for ln in ep.lines]
    calls: list[tuple[int, int]] = []
    frames = media.extract_frames(
        ep.video, mids, tmp_path / "frames", batch=5, progress=lambda d, t: calls.append((d, t))
    )
    assert not frames.skipped and frames.times == mids
    assert [p.name for p in frames] == [media.frame_name(t) for t in mids]
    assert calls[-1] == (12, 12) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    seen: dict[str, tuple[int, int, int]] = {}
    for path, ln in zip(frames, ep.lines, strict=True):
        assert path.is_file()
        band = _pixel(path, (620, BAND // 2))  # right of the name
        below = _pixel(path, (320, 300))
        assert _near(band, ep.speaker(ln.speaker).colour), (ln.speaker, band)
        assert _near(below, BACKGROUND), below
        seen[ln.speaker] = band
    colours = list(seen.values())
    assert len(colours) == 3
    for i, a in enumerate(colours):  # the speakers' frames differ from each other
        for b in colours[i + 1 :]:
            assert not _near(a, b, tol=60)
    if ep.drawtext:  # the name is drawn in white on the band
        pixels = [_pixel(frames[0], (x, y)) for x in range(24, 110, 3) for y in range(25, 65, 3)]
        assert any(min(p) > 200 for p in pixels)
    assert not [p for p in frames[0].parent.iterdir() if p.name.startswith(".")]


def test_frames_between_lines_show_no_speaker(ep: SyntheticEpisode, tmp_path: Path) -> None:
    a, b = max(zip(ep.lines, ep.lines[1:], strict=False), key=lambda p: p[1].start - p[0].end)
    frames = media.extract_frames(ep.video, [(a.end + b.start) / 2], tmp_path, width=320)
    assert _near(_pixel(frames[0], (310, 20)), BACKGROUND)
    pil = pytest.importorskip("PIL.Image")
    with pil.open(frames[0]) as im:
        assert im.size == (320, 180)


def test_frames_outside_the_media_are_skipped(ep: SyntheticEpisode, tmp_path: Path) -> None:
    inside = (ep.lines[0].start + ep.lines[0].end) / 2
    times = [-1.0, inside, ep.duration + 5, math.nan, inside, 1e9]
    frames = media.extract_frames(ep.video, times, tmp_path / "f")
    assert frames.times == [inside, inside]  # a time asked twice: one file, listed twice
    assert frames[0] == frames[1] == tmp_path / "f" / media.frame_name(inside)
    assert len(list((tmp_path / "f").iterdir())) == 1
    skipped = [t for t, _ in frames.skipped]
    assert skipped[:2] == [-1.0, ep.duration + 5] and math.isnan(skipped[2])
    assert skipped[3] == 1e9
    assert all("outside the media" in why for _, why in frames.skipped)
    none = media.extract_frames(ep.video, [], tmp_path / "g")
    assert list(none) == [] and none.skipped == []
    with pytest.raises(InputError, match="no video track"):
        media.extract_frames(ep.wav, [1.0], tmp_path / "h")


# ---------------------------------------------------------------------------------- slow


@slow
def test_long_episode_timings(tmp_path: Path) -> None:
    """A 24-minute episode: building it, decoding its audio, 300 frames. Prints the times."""
    _need_tools()
    t0 = time.perf_counter()
    ep = build_episode(tmp_path / "ep", lines=None, minutes=24, seed=1)
    built = time.perf_counter() - t0
    assert len(ep.lines) == 300 and ep.duration == pytest.approx(1440)
    t0 = time.perf_counter()
    audio = media.load_audio(ep.video, RATE)
    decoded = time.perf_counter() - t0
    assert len(audio) == pytest.approx(1440 * RATE, abs=0.1 * RATE)
    mids = [(ln.start + ln.end) / 2 for ln in ep.lines]
    t0 = time.perf_counter()
    frames = media.extract_frames(ep.video, mids, tmp_path / "frames")
    grabbed = time.perf_counter() - t0
    assert len(frames) == 300 and not frames.skipped
    print(f"\nbuild {built:.1f} s, audio {decoded:.1f} s, 300 frames {grabbed:.1f} s")


@slow
def test_voices_are_told_apart(ep: SyntheticEpisode, audio: np.ndarray) -> None:
    """Resemblyzer's embeddings: each line is nearest the centroid of its own speaker."""
    resemblyzer = pytest.importorskip("resemblyzer")
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    vectors = [
        encoder.embed_utterance(media.clip(audio, RATE, ln.start, ln.end)) for ln in ep.lines
    ]
    names = sorted({ln.speaker for ln in ep.lines})
    for i, ln in enumerate(ep.lines):
        centroids = {
            n: np.mean([v for j, v in enumerate(vectors) if ep.lines[j].speaker == n and j != i], 0)
            for n in names
        }
        best = max(names, key=lambda n: float(vectors[i] @ centroids[n]))
        assert best == ln.speaker
