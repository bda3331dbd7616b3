"""ChatHaruhi roles in every published form, read without their libraries, and written back.

- story folder: ``texts/*.txt`` (one scene per file) + ``system_prompt.txt``, and the 1.0 image
  lookup (``images/<caption>.jpg`` with ``text_image_dict.txt``);
- role JSONL / Hugging Face dataset rows: ``{"text" | "enc_text": ..., "<embedding column>":
  "system_prompt" | "config" | base64 of big-endian float32}``;
- the 2.0 role zip: ``content/<role>/chroma.sqlite3`` (read with :mod:`sqlite3`, no chromadb)
  + ``content/system_prompt.txt``.

Everything here reads bytes and returns a :class:`ImportResult`; nothing is written. Every
problem with the input is a :class:`~rolecast.errors.ParseError` that names it.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import sqlite3
import struct
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..character.dialogue import format_dialogue, parse_dialogue
from ..character.model import DEFAULT_NARRATORS, Character, Line, Scene
from ..character.package import jsonl_rows, slug_id, valid_id
from ..character.safezip import SafeZip
from ..errors import ParseError

_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
MAX_FILE = 256 * 1024 * 1024  # a role JSONL, a role zip, or one member of it
MAX_ROWS = 200_000
MAX_DIM = 65_536
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
NEAR_SHARE = 0.6  # a caption and a line match when one holds the other and is >= 60% of it
FRAMES_SCENE = "frames"  # image captions that match no canon line
OWN_COLUMN = "rolecast"  # the vector column export writes when no foreign one covers the canon


@dataclass
class ImportResult:
    character: Character
    problems: list[ParseError] = field(default_factory=list)  # lines left out
    repaired: list[ParseError] = field(default_factory=list)  # lines kept after a repair
    images: dict[str, bytes] = field(default_factory=dict)  # files for the package's images/
    notes: list[str] = field(default_factory=list)  # about the whole import, not one line


# ---------------------------------------------------------------- shared


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 (BOM or not) or UTF-16 with a BOM; anything else is a clear error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ParseError(f"invalid UTF-16 (byte {exc.start})", where) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = ""
        try:
            data.decode("gb18030")
            hint = "; it looks like GBK/GB18030: convert it with iconv -f GB18030 -t UTF-8"
        except UnicodeDecodeError:
            pass
        line = data[: exc.start].count(b"\n") + 1
        raise ParseError(f"not UTF-8 text (byte {exc.start}, line {line}){hint}", where) from None


def _is_narrator(speaker: str) -> bool:
    s = speaker.strip().lower()
    return s == "" or s in {n.lower() for n in DEFAULT_NARRATORS}


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def character_from_stories(
    stories: Sequence[tuple[str, str, str, str | Path]],
    persona: str,
    cid: str,
    source: str,
    where: str | Path,
    meta: dict[str, Any] | None = None,
) -> ImportResult:
    """Scenes from ``(id, title, dialogue text, where)`` stories; name, user role and language
    inferred (``where`` names the story in problems: a file, or a row of a file).

    ``meta`` (from a role's config) overrides what is inferred: name, user_role, language,
    narrators, aliases, greetings, description.
    """
    meta = meta or {}
    result = ImportResult(Character(id=valid_id(cid), name="", persona=persona))
    speakers: Counter[str] = Counter()
    scenes: list[Scene] = []
    for sid, title, text, story_where in stories:
        parsed = parse_dialogue(text, path=story_where)
        result.problems.extend(parsed.problems)
        result.repaired.extend(parsed.repaired)
        if not parsed.lines:
            continue
        scenes.append(Scene(sid, title, tuple(parsed.lines)))
        speakers.update(ln.speaker.strip() for ln in parsed.lines if not _is_narrator(ln.speaker))
    if not speakers:
        raise ParseError(f"no spoken line found in {len(stories)} stories", where)

    name = str(meta.get("name") or speakers.most_common(1)[0][0])
    cues: Counter[str] = Counter()  # who speaks right before the character: the usual partner
    for scene in scenes:
        for prev, cur in zip(scene.lines, scene.lines[1:], strict=False):
            p = prev.speaker.strip()
            if cur.speaker.strip() == name and p not in ("", name) and not _is_narrator(p):
                cues[p] += 1
    sample = "".join(ln.text for s in scenes[:50] for ln in s.lines)
    cjk = len(_CJK.findall(sample)) / max(len(sample), 1)
    narrators = sorted(
        {
            ln.speaker.strip()
            for s in scenes
            for ln in s.lines
            if ln.speaker.strip() and _is_narrator(ln.speaker)
        }
    ) or ["旁白"]

    c = result.character
    c.name = name
    c.scenes = scenes
    c.language = str(meta.get("language") or ("zh" if cjk > 0.2 else "en"))
    c.source = str(meta.get("source") or source)
    c.user_role = str(meta.get("user_role") or (cues.most_common(1)[0][0] if cues else "user"))
    c.narrators = [str(n) for n in meta.get("narrators") or narrators]
    c.aliases = [str(a) for a in meta.get("aliases") or []]
    c.greetings = [str(g) for g in meta.get("greetings") or []]
    c.description = str(meta.get("description") or f"imported from the ChatHaruhi role {source}")
    return result


# ---------------------------------------------------------------- story folder


def import_story_folder(path: str | Path, cid: str | None = None) -> ImportResult:
    """A ChatHaruhi story folder, with its 1.0 scene images attached to canon lines."""
    root = Path(path)
    texts = root / "texts"
    if not texts.is_dir():
        raise ParseError("not a ChatHaruhi story folder: it has no texts/ folder", root)
    files = sorted(
        (f for f in texts.iterdir() if f.suffix == ".txt" and f.is_file()),
        key=lambda f: _natural_key(f.stem),
    )
    if not files:
        raise ParseError("holds no .txt story files", texts)
    stories = [(f.stem, f.stem, decode_text(f.read_bytes(), f), f) for f in files]
    prompt = root / "system_prompt.txt"
    persona = decode_text(prompt.read_bytes(), prompt).strip() if prompt.is_file() else ""
    result = character_from_stories(stories, persona, cid or root.name, root.name, texts)
    images, lookup = root / "images", root / "text_image_dict.txt"
    subtitles = _subtitles(lookup) if lookup.is_file() else []
    if images.is_dir():
        pictures = {
            f.name: f.read_bytes()
            for f in sorted(images.iterdir())
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        }
        result.character.scenes = attach_images(result.character, pictures, subtitles)
        result.images.update(pictures)
    elif subtitles:
        result.notes.append(
            f"{lookup} names {len(subtitles)} frames but there is no images/ folder: "
            "no scene images imported"
        )
    return result


def _subtitles(path: Path) -> list[str]:
    """The caption lines of a 1.0 ``text_image_dict.txt`` (caption, frame name, caption, ...)."""
    rows = [r.strip() for r in decode_text(path.read_bytes(), path).splitlines() if r.strip()]
    return rows[0::2]


_NOISE = re.compile(r"[\W_]+", re.UNICODE)


def _norm(text: str) -> str:
    return _NOISE.sub("", unicodedata.normalize("NFKC", text)).lower()


def attach_images(
    character: Character, pictures: Iterable[str], subtitles: Sequence[str] = ()
) -> list[Scene]:
    """Attach each picture (named after the line it shows, as in ChatHaruhi 1.0) to a canon line.

    A picture's caption is its file name, or the full subtitle line of ``text_image_dict.txt``
    that holds it (file names are often shortened). The line is the character's own line whose
    text matches the caption (equal after dropping spaces and punctuation, else one holding the
    other at >= 60% of its length); a caption that matches no line becomes a line of the
    character in a ``frames`` scene, so it is still shown.
    """
    full = [(_norm(s), s) for s in subtitles]
    scenes = [list(s.lines) for s in character.scenes]
    own = [
        (si, li, _norm(ln.text))
        for si, s in enumerate(scenes)
        for li, ln in enumerate(s)
        if character.is_self(ln.speaker)
    ]
    orphans: list[Line] = []
    for name in pictures:
        stem = PurePosixPath(name).stem.strip()
        caption = _norm(stem)
        if len(caption) < 2:
            continue
        longer = [(n, s) for n, s in full if caption in n]
        if longer:  # the whole subtitle line the file name was cut from
            caption, stem = min(longer, key=lambda x: len(x[0]))
        exact = [(si, li) for si, li, t in own if t == caption]
        near = [  # one holds the other and they are close in length: a trimmed subtitle
            (si, li)
            for si, li, t in own
            if (caption in t or t in caption)
            and min(len(t), len(caption)) >= NEAR_SHARE * max(len(t), len(caption))
        ]
        spot = (exact or near or [None])[0]
        if spot is None:
            orphans.append(Line(character.name, stem, image=name))
            continue
        si, li = spot
        if scenes[si][li].image is None:
            ln = scenes[si][li]
            scenes[si][li] = Line(ln.speaker, ln.text, ln.start, ln.end, f"images/{name}")
    out = [
        Scene(s.id, s.title, tuple(lines))
        for s, lines in zip(character.scenes, scenes, strict=True)
    ]
    if orphans:
        lines = tuple(Line(o.speaker, o.text, image=f"images/{o.image}") for o in orphans)
        out.append(Scene(FRAMES_SCENE, "scene frames", lines))
    return out


# ---------------------------------------------------------------- role JSONL


def _float_count(value: str, where: str, row: int, column: str) -> int:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"column {column!r}: invalid base64", where, row) from None
    if len(raw) % 4 or not raw or len(raw) // 4 > MAX_DIM:
        raise ParseError(
            f"column {column!r}: {len(raw)} bytes is not a vector of float32", where, row
        )
    return len(raw) // 4


def decode_vector(value: str) -> tuple[float, ...]:
    """A ChatHaruhi vector: base64 of big-endian float32."""
    raw = base64.b64decode(value, validate=True)
    return struct.unpack(f">{len(raw) // 4}f", raw)


def encode_vector(values: Iterable[float]) -> str:
    vals = list(values)
    return base64.b64encode(struct.pack(f">{len(vals)}f", *vals)).decode()


def import_role_jsonl(
    data: bytes, cid: str | None = None, where: str | Path = "<jsonl>"
) -> ImportResult:
    """Role rows as published on Hugging Face; foreign vectors are kept, checked for shape."""
    if len(data) > MAX_FILE:
        raise ParseError(f"larger than {MAX_FILE} bytes", where)
    text = decode_text(data, where)
    persona, meta = "", {}
    stories: list[tuple[str, str, str, str | Path]] = []
    kept: dict[str, dict[str, str]] = {}
    dims: dict[str, int] = {}
    for lineno, raw in enumerate(jsonl_rows(text), start=1):
        if not raw.strip():
            continue
        if lineno > MAX_ROWS:
            raise ParseError(f"more than {MAX_ROWS} rows", where)
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ParseError(f"invalid JSON: {exc}", where, lineno) from None
        if not isinstance(row, dict):
            raise ParseError("each row must be a JSON object", where, lineno)
        body = _row_text(row, where, lineno)
        columns = {k: v for k, v in row.items() if k not in ("text", "enc_text")}
        if not columns:
            raise ParseError("row has no embedding column next to its text", where, lineno)
        marks = set(columns.values())
        if "system_prompt" in marks:
            persona = body.strip()
            continue
        if "config" in marks:
            meta = _config(body, where, lineno)
            continue
        ids = meta.get("scene_ids") or []
        n = len(stories)
        sid = str(ids[n]) if n < len(ids) else f"story-{n + 1:04d}"
        titles = meta.get("scene_titles") or []
        title = str(titles[n]) if n < len(titles) else sid
        stories.append((sid, title, body, f"{where} row {lineno}"))
        for column, value in columns.items():
            if not isinstance(value, str):
                raise ParseError(f"column {column!r} must be a base64 string", where, lineno)
            if column == OWN_COLUMN:
                continue  # ours, re-made from the canon whenever needed
            dim = _float_count(value, str(where), lineno, column)
            if dims.setdefault(column, dim) != dim:
                raise ParseError(
                    f"column {column!r}: vector of {dim} floats where earlier rows have "
                    f"{dims[column]}",
                    where,
                    lineno,
                )
            kept.setdefault(column, {})[sid] = value
    if not stories:
        raise ParseError("no story rows (only a system prompt or config, or nothing)", where)
    name = cid or str(meta.get("id") or "") or Path(str(where)).stem
    result = character_from_stories(
        stories, persona, slug_id(name), Path(str(where)).name, where, meta
    )
    result.character.vectors = kept
    return result


def _row_text(row: dict[str, Any], where: str | Path, lineno: int) -> str:
    if "text" in row:
        if not isinstance(row["text"], str):
            raise ParseError("'text' must be a string", where, lineno)
        return str(row["text"])
    if "enc_text" in row:
        enc = row["enc_text"]
        if not isinstance(enc, str):
            raise ParseError("'enc_text' must be a base64 string", where, lineno)
        try:
            return base64.b64decode(enc, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ParseError("'enc_text' is not base64 of UTF-8 text", where, lineno) from None
    raise ParseError("row has neither 'text' nor 'enc_text'", where, lineno)


_META_KEYS = {
    "id": str,
    "name": str,
    "user_role": str,
    "language": str,
    "source": str,
    "description": str,
    "aliases": list,
    "narrators": list,
    "greetings": list,
    "scene_ids": list,
    "scene_titles": list,
}


def _config(body: str, where: str | Path, lineno: int) -> dict[str, Any]:
    """The config row: ours carries what stories cannot; a foreign one is read where it can be."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    meta = obj.get("rolecast", obj)
    if not isinstance(meta, dict):
        raise ParseError("config row: 'rolecast' must be an object", where, lineno)
    out: dict[str, Any] = {}
    if isinstance(obj.get("role_name"), str):
        out["name"] = obj["role_name"]
    for key, kind in _META_KEYS.items():
        if key not in meta:
            continue
        val = meta[key]
        if not isinstance(val, kind) or (kind is list and not all(isinstance(v, str) for v in val)):
            raise ParseError(f"config row: {key!r} has the wrong type", where, lineno)
        out[key] = val
    return out


def export_role_jsonl(
    character: Character, embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None
) -> bytes:
    """Role rows: system prompt, a config row with what stories cannot carry, one row per scene.

    Foreign vector columns that cover every scene are written back as they came; otherwise
    ``embed`` (scene texts -> vectors) fills a ``rolecast`` column so the file is complete.
    """
    texts = [_story_text(s) for s in character.scenes]
    ids = [s.id for s in character.scenes]
    columns = {col: rows for col, rows in character.vectors.items() if all(i in rows for i in ids)}
    if not columns:
        vectors = embed(texts) if embed is not None and texts else [[] for _ in texts]
        columns = {OWN_COLUMN: {i: encode_vector(v) for i, v in zip(ids, vectors, strict=True)}}
    config = {
        "role_name": character.name,
        "rolecast": {
            "id": character.id,
            "name": character.name,
            "user_role": character.user_role,
            "language": character.language,
            "source": character.source,
            "description": character.description,
            "aliases": character.aliases,
            "narrators": character.narrators,
            "greetings": character.greetings,
            "scene_ids": ids,
            "scene_titles": [s.title for s in character.scenes],
        },
    }
    out = io.StringIO()

    def row(text: str, values: dict[str, str]) -> None:
        out.write(json.dumps({"text": text, **values}, ensure_ascii=False) + "\n")

    row(character.persona, dict.fromkeys(columns, "system_prompt"))
    row(json.dumps(config, ensure_ascii=False), dict.fromkeys(columns, "config"))
    for sid, text in zip(ids, texts, strict=True):
        row(text, {col: rows[sid] for col, rows in columns.items()})
    return out.getvalue().encode("utf-8")


def _story_text(scene: Scene) -> str:
    """A scene as ChatHaruhi story text; narration without a speaker keeps its bare ``:``."""
    return "\n".join(
        f":{ln.text}" if not ln.speaker.strip() else format_dialogue([ln], ()) for ln in scene.lines
    )


# ---------------------------------------------------------------- role zip


def import_role_zip(
    data: bytes, cid: str | None = None, where: str | Path = "<zip>"
) -> ImportResult:
    """A ChatHaruhi 2.0 role zip: stories from Chroma's SQLite file, no chromadb needed."""
    if len(data) > MAX_FILE:
        raise ParseError(f"larger than {MAX_FILE} bytes", where)
    # one member (the SQLite file) may be as large as a role file; the rest is small
    with SafeZip(
        data,
        lambda message: ParseError(message, where),
        max_member=MAX_FILE,
        max_total=2 * MAX_FILE,
    ) as zf:
        dbs = [n for n in zf.names if PurePosixPath(n).name == "chroma.sqlite3"]
        if len(dbs) != 1:
            raise ParseError(
                f"a role zip holds one content/<role>/chroma.sqlite3; found {len(dbs)}", where
            )
        parts = PurePosixPath(dbs[0]).parts
        role = parts[-2] if len(parts) >= 2 else "role"
        db = zf.read(dbs[0])
        prompts = [n for n in zf.names if PurePosixPath(n).name == "system_prompt.txt"]
        persona = ""
        if prompts:
            persona = decode_text(zf.read(prompts[0]), where).strip()
    docs = read_chroma_documents(db, where)
    stories = [
        (f"story-{n:04d}", f"story-{n:04d}", d, f"{where} document {n}")
        for n, d in enumerate(docs, start=1)
    ]
    return character_from_stories(stories, persona, slug_id(cid or role), role, where)


def read_chroma_documents(db: bytes, where: str | Path = "<chroma.sqlite3>") -> list[str]:
    """The documents of a Chroma (0.4) SQLite file in insertion order, read-only."""
    if not db.startswith(b"SQLite format 3\x00"):
        raise ParseError("chroma.sqlite3 is not an SQLite database", where)
    with tempfile.NamedTemporaryFile(suffix=".sqlite3") as tmp:
        tmp.write(db)
        tmp.flush()
        try:
            con = sqlite3.connect(f"file:{tmp.name}?mode=ro&immutable=1", uri=True)
            try:
                rows = con.execute(
                    "SELECT m.string_value FROM embedding_metadata m "
                    "JOIN embeddings e ON e.id = m.id "
                    "WHERE m.key = 'chroma:document' ORDER BY e.id"
                ).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise ParseError(f"chroma.sqlite3 cannot be read: {exc}", where) from None
        except UnicodeDecodeError as exc:  # SQLite's message quotes a damaged schema's bytes
            detail = exc.object.decode("utf-8", "replace") if isinstance(exc.object, bytes) else exc
            raise ParseError(f"chroma.sqlite3 cannot be read: {detail}", where) from None
    docs = [r[0] for r in rows if isinstance(r[0], str) and r[0].strip()]
    if not docs:
        raise ParseError("chroma.sqlite3 holds no documents", where)
    return docs


# ---------------------------------------------------------------- detection and Hugging Face


def import_chatharuhi(path: str | Path, cid: str | None = None) -> ImportResult:
    """A story folder, a role JSONL or a role zip, told apart by what the path holds."""
    p = Path(path)
    if p.is_dir():
        return import_story_folder(p, cid)
    if not p.is_file():
        raise ParseError("no such file or folder", p)
    if p.stat().st_size > MAX_FILE:
        raise ParseError(f"larger than {MAX_FILE} bytes", p)
    data = p.read_bytes()
    if data.startswith(b"PK\x03\x04"):
        return import_role_zip(data, cid, p)
    return import_role_jsonl(data, cid, p)


HF_PREFIX = "hf://"


def import_hf(
    spec: str,
    cid: str | None = None,
    download: Callable[[str, str], str] | None = None,
) -> ImportResult:
    """``hf://OWNER/DATASET/ROLE`` (``.jsonl`` added when missing) through huggingface_hub."""
    rest = spec.removeprefix(HF_PREFIX)
    parts = rest.split("/")
    if not spec.startswith(HF_PREFIX) or len(parts) < 3 or any(p in ("", ".", "..") for p in parts):
        raise ParseError("expected hf://OWNER/DATASET/ROLE", spec)
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if not filename.endswith(".jsonl"):
        filename += ".jsonl"
    if download is None:
        download = _hf_download
    local = download(repo, filename)
    result = import_chatharuhi(local, cid or slug_id(PurePosixPath(filename).stem))
    result.character.source = spec
    return result


def _hf_download(repo: str, filename: str) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("hf:// imports", "huggingface_hub", "hf") from None
    return str(hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset"))
