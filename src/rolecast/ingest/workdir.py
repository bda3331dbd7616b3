"""The ingest steps over a work folder, each resumable: a finished step is skipped when the
content hash of what it was made from has not changed.

    WORKDIR/
      manifest.json     per step: the hash of its inputs and what it made
      lines.jsonl       the subtitle lines (dialogue, signs, songs) with times and hints
      clips/N.wav       each dialogue line's audio (16 kHz mono), when the video has audio
      frames/N.jpg      a frame at each dialogue line's midpoint, when there is video
      labels.csv        line,speaker  — written by `ingest label` or by hand
      vectors.npz       each clip's voice embedding, keyed by the clip's hash
      attribution.jsonl each line's speaker, band and score

Every file is written atomically; a failed step leaves the earlier ones as they were.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RolecastError
from ..files import file_sha256, write_atomic
from .faces import Detector
from .scenes import solo_spans
from .subtitles import SubLine, read_subtitles

SAMPLE_RATE = 16000
CACHE_EVERY = 25  # voice embeddings between saves of vectors.npz
Progress = Callable[[str, int, int], None]  # step, done, total


def _noop(step: str, done: int, total: int) -> None:
    return None


file_hash = file_sha256  # what ingest's cache keys name a file's content by


class WorkDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ the manifest

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"steps": {}}
        try:
            data = json.loads(self.manifest_path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RolecastError(
                f"{self.manifest_path} is damaged: delete it to start over"
            ) from None
        return data if isinstance(data, dict) and "steps" in data else {"steps": {}}

    def done(self, step: str, key: str) -> bool:
        same: bool = self.manifest()["steps"].get(step, {}).get("key") == key
        return same

    def mark(self, step: str, key: str, **info: Any) -> None:
        data = self.manifest()
        data["steps"][step] = {"key": key, **info}
        write_atomic(self.manifest_path, json.dumps(data, ensure_ascii=False, indent=1).encode())

    def info(self, step: str) -> dict[str, Any]:
        return dict(self.manifest()["steps"].get(step, {}))

    # ------------------------------------------------------------ lines

    def lines(self) -> list[SubLine]:
        path = self.path / "lines.jsonl"
        if not path.is_file():
            raise InputError(f"{self.path} has no lines yet: run `rolecast ingest episode` first")
        return [SubLine(**json.loads(row)) for row in path.read_text("utf-8").splitlines() if row]

    def labels(self) -> dict[int, str]:
        path = self.path / "labels.csv"
        return read_labels(path) if path.is_file() else {}

    def save_labels(self, labels: dict[int, str]) -> Path:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["line", "speaker"])
        for line in sorted(labels):
            writer.writerow([line, labels[line]])
        path = self.path / "labels.csv"
        write_atomic(path, buf.getvalue().encode("utf-8"))
        return path


def read_labels(path: Path) -> dict[int, str]:
    """``line,speaker`` rows (a header row and ``#`` comments allowed) as line -> speaker."""
    out: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: save the labels as UTF-8 CSV") from None
    except OSError as e:
        raise InputError(f"cannot read labels from {path}: {e.strerror or e}") from None
    for n, row in enumerate(rows, start=1):
        if not row or row[0].strip().lower() in ("line", "#") or row[0].startswith("#"):
            continue
        if len(row) < 2 or not row[0].strip().isdigit() or not row[1].strip():
            raise InputError(f"{path}:{n}: expected 'line,speaker', got {row!r}")
        out[int(row[0])] = row[1].strip()
    return out


def episode(
    work: WorkDir,
    subs: Path,
    video: Path | None = None,
    *,
    primary_language: str = "auto",
    frames: bool = True,
    faces: bool | Detector = False,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Read the subtitles, cut each dialogue line's clip, take its frame. A summary back.

    A line that overlaps another gets, as its clip, the longest part of it heard alone; one
    never heard alone for long enough keeps its whole time and is listed as ``mixed`` (its
    speaker is left "maybe" by :func:`attribute`). With ``faces`` (True for the animeface
    detector, or a detector function) each frame is the one of three across the line where a
    face shows best, else the midpoint."""
    from . import media
    from .faces import animeface_detector

    detector: Detector | None = None
    if frames and faces:
        detector = animeface_detector() if faces is True else faces
    info = media.probe(video) if video is not None else None
    subs_key = hashlib.sha256(
        f"{file_hash(subs)}|{info.duration if info else None}|{primary_language}".encode()
    ).hexdigest()
    summary: dict[str, Any] = {"video": str(video) if video else None, "subtitles": str(subs)}
    if not work.done("lines", subs_key):
        progress("subtitles", 0, 1)
        parsed = read_subtitles(
            subs.read_bytes(),
            subs.name,
            duration=info.duration if info else None,
            primary_language=primary_language,
        )
        rows = "".join(json.dumps(asdict(ln), ensure_ascii=False) + "\n" for ln in parsed.lines)
        write_atomic(work.path / "lines.jsonl", rows.encode("utf-8"))
        work.mark(
            "lines",
            subs_key,
            encoding=parsed.encoding,
            format=parsed.format,
            dropped=list(parsed.dropped),
            clipped=parsed.clipped,
        )
        progress("subtitles", 1, 1)
    lines = [ln for ln in work.lines() if ln.kind == "dialogue"]
    summary.update(work.info("lines"), dialogue=len(lines))
    if video is None or info is None:
        summary["audio"] = summary["frames"] = "no video: text-only ingest"
        return summary
    video_key = hashlib.sha256(f"{file_hash(video)}|{subs_key}|solo".encode()).hexdigest()
    solo = solo_spans(lines)
    if not info.has_audio:
        summary["audio"] = "the video has no audio track: attribution by voice is not possible"
    elif not work.done("clips", video_key):
        audio = media.load_audio(video, SAMPLE_RATE)
        for i, ln in enumerate(lines):
            start, end = solo.get(ln.index, (ln.start, ln.end))
            # no margin where the line was cut short: the margin would hold the other voice
            pad = 0.05 if (start, end) == (ln.start, ln.end) else 0.0
            clip = media.clip(audio, SAMPLE_RATE, start, end, pad=pad)
            media.write_wav(work.path / "clips" / f"{ln.index}.wav", clip, SAMPLE_RATE)
            progress("clips", i + 1, len(lines))
        trimmed = [
            ln.index
            for ln in lines
            if solo.get(ln.index, (ln.start, ln.end)) != (ln.start, ln.end) and ln.index in solo
        ]
        mixed = [ln.index for ln in lines if ln.index not in solo]
        work.mark("clips", video_key, count=len(lines), trimmed=trimmed, mixed=mixed)
    if info.has_audio:
        clips = work.info("clips")
        summary["audio"] = f"{len(lines)} clips"
        summary["trimmed"] = clips.get("trimmed", [])
        summary["mixed"] = clips.get("mixed", [])
    frames_key = hashlib.sha256(f"{video_key}|faces={bool(detector)}".encode()).hexdigest()
    if frames and info.has_video and not work.done("frames", frames_key):
        with_faces = _take_frames(work, video, lines, solo, detector, progress)
        count = len(list((work.path / "frames").glob("*.jpg")))
        work.mark("frames", frames_key, count=count, faces=with_faces)
    if info.has_video and frames:
        summary["frames"] = work.info("frames").get("count", 0)
        if detector is not None:
            summary["faces"] = work.info("frames").get("faces", 0)
    elif not info.has_video:
        summary["frames"] = "no video"
    return summary


def _take_frames(
    work: WorkDir,
    video: Path,
    lines: list[SubLine],
    solo: dict[int, tuple[float, float]],
    detector: Detector | None,
    progress: Progress,
) -> int:
    """Each line's frame as frames/N.jpg; with a detector, the best of a few. Returns the
    number of frames chosen for a face."""
    from . import media
    from .faces import candidate_times, choose

    out = work.path / "frames"
    wanted: list[list[float]] = []
    for ln in lines:
        start, end = solo.get(ln.index, (ln.start, ln.end))
        mid = (ln.start + ln.end) / 2 if ln.index not in solo else (start + end) / 2
        wanted.append(candidate_times(start, end) if detector else [mid])
    every = [t for ts in wanted for t in ts]
    scratch = out / ".candidates"
    got = media.extract_frames(
        video, every, scratch, progress=lambda d, t: progress("frames", d, t)
    )
    by_time = dict(zip(got.times, got, strict=True))
    with_faces = 0
    for ln, times in zip(lines, wanted, strict=True):
        found = [t for t in times if t in by_time]
        if not found:
            continue
        pick = found[len(found) // 2]
        if detector is not None and len(found) > 1:
            i, score = choose([by_time[t] for t in found], detector)
            pick = found[i]
            with_faces += score > 0
        # copied, not moved: two lines may share a candidate time
        write_atomic(out / f"{ln.index}.jpg", by_time[pick].read_bytes())
    shutil.rmtree(scratch, ignore_errors=True)
    return with_faces


def attribute(work: WorkDir, progress: Progress = _noop) -> Any:
    """Voice embeddings of the clips (cached by clip hash) and each line's speaker."""
    from .attribution import VoiceEmbedder
    from .attribution import attribute as run

    lines = [ln for ln in work.lines() if ln.kind == "dialogue"]
    labels = work.labels()
    if not labels:
        raise InputError(
            f"no labels in {work.path / 'labels.csv'}: label a few lines per speaker first "
            "(rolecast ingest label WORKDIR)"
        )
    unknown = sorted(set(labels) - {ln.index for ln in lines})
    if unknown:
        raise InputError(f"labels.csv names lines that are not dialogue: {unknown[:10]}")
    cache_path = work.path / "vectors.npz"
    cache: dict[str, np.ndarray] = {}
    if cache_path.is_file():
        with np.load(cache_path) as data:
            cache = {k: data[k] for k in data.files}
    embedder: VoiceEmbedder | None = None
    vectors: dict[int, np.ndarray | None] = {}
    fresh = 0

    def save_cache() -> None:  # kept as it grows: an interrupted run loses little
        buf = io.BytesIO()
        np.savez(buf, **cache)  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle
        write_atomic(cache_path, buf.getvalue())

    for i, ln in enumerate(lines):
        wav = work.path / "clips" / f"{ln.index}.wav"
        if not wav.is_file():
            raise InputError(
                f"no audio clip for line {ln.index}: run `rolecast ingest episode` with the video"
            )
        key = file_hash(wav)
        if key not in cache:
            embedder = embedder or VoiceEmbedder()
            audio = read_wav(wav)
            vec = embedder.embed(audio, SAMPLE_RATE)
            cache[key] = vec if vec is not None else np.zeros(0, np.float32)
            fresh += 1
            if fresh % CACHE_EVERY == 0:
                save_cache()
        vec = cache[key]
        vectors[ln.index] = vec if vec.size else None
        progress("voices", i + 1, len(lines))
    if fresh:
        save_cache()
    report = run(vectors, labels)
    # a clip that holds two voices can only make its speaker a "maybe"
    for line in work.info("clips").get("mixed", []):
        a = report.attributions.get(line)
        if a is not None and a.band == "assigned":
            report.attributions[line] = replace(a, band="maybe")
    rows = "".join(
        json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in report.attributions.values()
    )
    write_atomic(work.path / "attribution.jsonl", rows.encode("utf-8"))
    return report


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM mono WAV (as the clips are written) as float32 samples."""
    import wave

    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0


def speakers(work: WorkDir, include_maybe: bool = False) -> dict[int, str]:
    """Line -> speaker: attribution where it ran, else labels, else the subtitles' hints."""
    out = {ln.index: ln.speaker_hint for ln in work.lines() if ln.speaker_hint}
    path = work.path / "attribution.jsonl"
    if path.is_file():
        for row in path.read_text("utf-8").splitlines():
            a = json.loads(row)
            bands = ("label", "assigned", "maybe") if include_maybe else ("label", "assigned")
            if a["speaker"] and a["band"] in bands:
                out[a["line"]] = a["speaker"]
    out.update(work.labels())
    return out


DRAFT_MARK = "<!-- DRAFT written by rolecast from the canon: read it and edit it -->"


def package(
    work: WorkDir,
    speaker: str,
    dest: Path,
    *,
    cid: str | None = None,
    episode_id: str = "1",
    include_maybe: bool = False,
    persona: Callable[[Any], str] | None = None,
) -> Any:
    """A character package for ``speaker``: the scenes where they speak, their frames, and a
    persona drafted by ``persona`` (a function of the character) and marked as a draft."""
    from ..character.model import Character
    from ..character.package import save_character, slug_id, valid_id
    from .scenes import group_scenes, make_scenes

    who = speakers(work, include_maybe)
    if speaker not in set(who.values()):
        known = sorted(set(who.values()))
        raise InputError(
            f"no line is attributed to {speaker!r}; speakers found: {', '.join(known) or 'none'}"
        )
    lines = [ln for ln in work.lines() if ln.kind == "dialogue"]
    groups = [g for g in group_scenes(lines) if any(who.get(ln.index) == speaker for ln in g)]
    frames_dir = work.path / "frames"
    images = {}
    for g in groups:
        for ln in g:
            f = frames_dir / f"{ln.index}.jpg"
            if who.get(ln.index) == speaker and f.is_file():
                images[f"ep{episode_id}-{ln.index}.jpg"] = f.read_bytes()
    scenes = make_scenes(groups, episode_id, speaker_of=lambda ln: who.get(ln.index))
    with_images = []
    for scene, g in zip(scenes, groups, strict=True):
        new_lines = []
        for line, sub in zip(scene.lines, g, strict=True):
            name = f"ep{episode_id}-{sub.index}.jpg"
            image = f"images/{name}" if name in images else None
            new_lines.append(type(line)(line.speaker, line.text, line.start, line.end, image))
        with_images.append(type(scene)(scene.id, scene.title, tuple(new_lines)))
    others = [s for s in (who.get(ln.index) for g in groups for ln in g) if s and s != speaker]
    user_role = max(set(others), key=others.count) if others else "user"
    c = Character(
        id=valid_id(cid or slug_id(speaker)),
        name=speaker,
        persona="",
        scenes=with_images,
        user_role=user_role,
        source=f"ingested from {work.path.name}",
        description=f"{speaker}, from subtitled episodes",
    )
    c.language = _language(" ".join(ln.text for s in with_images for ln in s.lines))
    draft = persona(c) if persona is not None else ""
    c.persona = f"{DRAFT_MARK}\n{draft.strip()}\n" if draft.strip() else f"{DRAFT_MARK}\n"
    save_character(c, dest, images=images)
    return c


def _language(text: str) -> str:
    cjk = sum(1 for ch in text if "\u3040" <= ch <= "\u9fff")
    kana = sum(1 for ch in text if "\u3040" <= ch <= "\u30ff")
    if kana > 0.05 * max(len(text), 1):
        return "ja"
    return "zh" if cjk > 0.2 * max(len(text), 1) else "en"


def draft_persona(llm: Any, max_lines: int = 40) -> Callable[[Any], str]:
    """A persona drafter: the backend reads some of the character's lines and describes them."""
    from ..backends.base import GenerationParams

    def draft(c: Any) -> str:
        said = [ln.text for s in c.scenes for ln in s.lines if ln.speaker == c.name][:max_lines]
        ask = (
            f"Here are lines spoken by {c.name}:\n"
            + "\n".join(f"- {t}" for t in said)
            + f"\n\nWrite a short system prompt (5-8 sentences) telling a model to play {c.name}: "
            "who they are, how they talk, what they care about. Only what the lines support."
        )
        messages = [{"role": "user", "content": ask}]
        return "".join(llm.stream(messages, GenerationParams(max_tokens=300, temperature=0.3)))

    return draft
