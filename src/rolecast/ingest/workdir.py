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
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RolecastError
from .subtitles import SubLine, read_subtitles

SAMPLE_RATE = 16000
Progress = Callable[[str, int, int], None]  # step, done, total


def _noop(step: str, done: int, total: int) -> None:
    return None


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        return self.manifest()["steps"].get(step, {}).get("key") == key

    def mark(self, step: str, key: str, **info: Any) -> None:
        data = self.manifest()
        data["steps"][step] = {"key": key, **info}
        _atomic_write(self.manifest_path, json.dumps(data, ensure_ascii=False, indent=1).encode())

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
        if not path.is_file():
            return {}
        out: dict[int, str] = {}
        with open(path, encoding="utf-8-sig", newline="") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if not row or row[0].strip().lower() in ("line", "#") or row[0].startswith("#"):
                    continue
                if len(row) < 2 or not row[0].strip().isdigit() or not row[1].strip():
                    raise InputError(f"{path}:{n}: expected 'line,speaker', got {row!r}")
                out[int(row[0])] = row[1].strip()
        return out

    def save_labels(self, labels: dict[int, str]) -> Path:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["line", "speaker"])
        for line in sorted(labels):
            writer.writerow([line, labels[line]])
        path = self.path / "labels.csv"
        _atomic_write(path, buf.getvalue().encode("utf-8"))
        return path


def episode(
    work: WorkDir,
    subs: Path,
    video: Path | None = None,
    *,
    primary_language: str = "auto",
    frames: bool = True,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Read the subtitles, cut each dialogue line's clip, take its frame. A summary back."""
    from . import media

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
        _atomic_write(work.path / "lines.jsonl", rows.encode("utf-8"))
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
    video_key = hashlib.sha256(f"{file_hash(video)}|{subs_key}".encode()).hexdigest()
    if not info.has_audio:
        summary["audio"] = "the video has no audio track: attribution by voice is not possible"
    elif not work.done("clips", video_key):
        audio = media.load_audio(video, SAMPLE_RATE)
        for i, ln in enumerate(lines):
            clip = media.clip(audio, SAMPLE_RATE, ln.start, ln.end)
            media.write_wav(work.path / "clips" / f"{ln.index}.wav", clip, SAMPLE_RATE)
            progress("clips", i + 1, len(lines))
        work.mark("clips", video_key, count=len(lines))
    if info.has_audio:
        summary["audio"] = f"{len(lines)} clips"
    if frames and info.has_video and not work.done("frames", video_key):
        mids = [(ln.start + ln.end) / 2 for ln in lines]
        out = work.path / "frames"
        got = media.extract_frames(video, mids, out, progress=lambda d, t: progress("frames", d, t))
        by_time = dict(zip(got.times, got, strict=True))
        names = {}
        for ln, mid in zip(lines, mids, strict=True):
            if mid in by_time:
                target = out / f"{ln.index}.jpg"
                os.replace(by_time[mid], target)
                names[ln.index] = target.name
        work.mark("frames", video_key, count=len(names), skipped=len(got.skipped))
    summary["frames"] = work.info("frames").get("count", 0) if info.has_video else "no video"
    return summary


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
        vec = cache[key]
        vectors[ln.index] = vec if vec.size else None
        progress("voices", i + 1, len(lines))
    buf = io.BytesIO()
    np.savez(buf, **cache)
    _atomic_write(cache_path, buf.getvalue())
    report = run(vectors, labels)
    rows = "".join(
        json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in report.attributions.values()
    )
    _atomic_write(work.path / "attribution.jsonl", rows.encode("utf-8"))
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
