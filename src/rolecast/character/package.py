"""A character package on disk: a folder a person can read and edit, or one zip file.

    <id>/
      character.toml   name, aliases, language, source, user_role, narrators, greetings,
                       description, portrait, an optional [voice] table (backend, voice,
                       language, speed, model): how the character sounds, and an optional
                       [model] table (base, lora): the character's own tuned model
      persona.md       the system prompt
      canon.jsonl      one scene per line: {"id", "title", "lines": [{"speaker", "text",
                       "start"?, "end"?, "image"?}]}
      images/          pictures that canon lines point at ("image": "images/x.jpg")
      lore.jsonl       optional: world information, {"keys", "content", "name"?, "extra"?}
      card.json        optional: fields of an imported character card kept for export
      vectors.json     optional: embeddings that came with an import, {column: {scene: base64}}

The zip form holds the same files at its root (or under one top folder). Writes
are atomic: a package is written to a temporary sibling folder and renamed into
place, so a failed write leaves the previous package as it was.

Every path a package names (``portrait``, a canon line's ``image``) is relative to its
folder and stays inside it, symbolic links followed, and its own files are not links
leading out: checked when a package is loaded, saved, packed and installed, since the web
page shows those files.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import tomli_w

from ..config import tomllib
from ..errors import InputError, PackageError, ParseError
from ..files import replace_dir, staging_dir
from .model import Character, Line, LoreEntry, ModelChoice, Scene, Voice
from .personality import Scored, parse_dials, parse_labels
from .safezip import SafeZip, unsafe_name

TOML, PERSONA, CANON, IMAGES = "character.toml", "persona.md", "canon.jsonl", "images"
LORE, CARD, VECTORS = "lore.jsonl", "card.json", "vectors.json"
TOML_KEYS = {
    "name",
    "aliases",
    "language",
    "source",
    "user_role",
    "narrators",
    "greetings",
    "description",
    "portrait",
    "voice",
    "model",
    "personality",
}
VOICE_KEYS = ("backend", "voice", "language", "speed", "model")
log = logging.getLogger(__name__)
_ID_RE = re.compile(r"^[\w\-.]{1,64}$")


def slug_id(name: str) -> str:
    """A package id made from any name: odd characters become '-', at most 64 characters."""
    cid = re.sub(r"[^\w\-.]+", "-", name).strip("-.")[:64].strip("-.")
    return cid or "character"


def valid_id(name: str) -> str:
    """A package id: letters (any script), digits, '-', '_' and '.', not starting with '.'."""
    if not _ID_RE.match(name) or name.startswith("."):
        raise PackageError(
            f"invalid character id {name!r}: use 1-64 letters, digits, '-', '_' or '.', "
            "not starting with '.'"
        )
    return name


# ---------------------------------------------------------------- paths inside the package

FILES = (TOML, PERSONA, CANON, LORE, CARD, VECTORS)
PATH_HINT = "a package's paths are relative to its folder, such as images/x.jpg"
_DRIVE = re.compile(r"^[A-Za-z]:")


def path_problem(value: str) -> str | None:
    """Why ``value`` cannot name a file inside a package, or None when it can: it must be
    relative to the package folder, with '/' between parts, and never go up ('..')."""
    if value.startswith(("/", "\\")) or _DRIVE.match(value):
        return "is an absolute path"
    if ".." in re.split(r"[/\\]", value):
        return "goes up out of the package folder ('..')"
    if unsafe_name(value):
        return "is not a safe relative path (it holds a backslash or NUL)"
    return None


def path_fields(character: Character) -> Iterator[tuple[str, str]]:
    """Every path a character names, with the field that holds it."""
    if character.portrait:
        yield f"{TOML} 'portrait'", character.portrait
    for scene in character.scenes:
        for n, ln in enumerate(scene.lines, start=1):
            if ln.image:
                yield f"{CANON} scene {scene.id!r} line {n} 'image'", ln.image


def _inside(real_root: Path, path: Path) -> bool:
    """Whether ``path``, its symbolic links followed, is ``real_root`` or inside it."""
    try:
        return path.resolve().is_relative_to(real_root)
    except (OSError, RuntimeError):  # a loop of links
        return False


def check_paths(character: Character, where: str | Path, root: Path | None = None) -> None:
    """Refuse a character whose portrait or canon images could lead out of its package:
    each must be a relative path (:func:`path_problem`) and, when ``root`` is the package
    folder on disk, resolve inside it with symbolic links followed. The ``PackageError``
    starts with ``where`` and names the field, and the scene and line."""
    real = root.resolve() if root is not None else None
    for field, value in path_fields(character):
        problem = path_problem(value)
        if problem is None and real is not None and root is not None:
            if not _inside(real, root / value):
                problem = "leads outside the package folder (through a symbolic link)"
        if problem is not None:
            raise PackageError(f"{where}: {field} {value!r} {problem}; {PATH_HINT}")


def check_files_inside(root: Path, folders: tuple[str, ...] = ()) -> None:
    """Refuse a package folder whose own files (or anything under ``folders``) are symbolic
    links leading outside it: reading one would read whatever it points at."""
    real = root.resolve()
    for name in FILES:
        f = root / name
        if f.is_symlink() and not _inside(real, f):
            raise PackageError(
                f"{root}: {name} is a symbolic link to a file outside the package folder; "
                "put the file itself in the package"
            )
    for folder in folders:
        top = root / folder
        for f in (top, *top.rglob("*")) if top.is_dir() else (top,):
            if f.is_symlink() and not _inside(real, f):
                raise PackageError(
                    f"{root}: {f.relative_to(root).as_posix()} is a symbolic link to "
                    "something outside the package folder; put the file itself in the package"
                )


# ---------------------------------------------------------------- reading


def _line_from(obj: Any, path: Path, lineno: int) -> Line:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise ParseError("each line needs a string 'text'", path, lineno)
    speaker = obj.get("speaker", "")
    if not isinstance(speaker, str):
        raise ParseError("'speaker' must be a string", path, lineno)
    start, end, image = obj.get("start"), obj.get("end"), obj.get("image")
    for key, val in (("start", start), ("end", end)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise ParseError(f"{key!r} must be a number of seconds", path, lineno)
    if image is not None and not isinstance(image, str):
        raise ParseError("'image' must be a path string", path, lineno)
    return Line(speaker, obj["text"], start, end, image)


def jsonl_rows(text: str) -> list[str]:
    """The rows of JSON Lines text: split on newlines only (``str.splitlines`` would also split
    inside a string holding U+2028, U+2029 or U+0085, which JSON leaves unescaped)."""
    return [row.removesuffix("\r") for row in text.split("\n")]


def parse_canon(text: str, path: Path) -> list[Scene]:
    """Scenes from canon.jsonl text; an error names the file and line."""
    scenes: list[Scene] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(jsonl_rows(text), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ParseError(
                f"invalid JSON ({exc.msg} at column {exc.colno})", path, lineno
            ) from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, deep nesting
            raise ParseError(f"unusable JSON ({exc})", path, lineno) from None
        if not isinstance(obj, dict):
            raise ParseError("each line must be a JSON object (a scene)", path, lineno)
        sid, title, lines = obj.get("id"), obj.get("title", ""), obj.get("lines")
        if not isinstance(sid, str) or not sid:
            raise ParseError("scene needs a non-empty string 'id'", path, lineno)
        if sid in seen:
            raise ParseError(f"duplicate scene id {sid!r}", path, lineno)
        if not isinstance(title, str):
            raise ParseError("'title' must be a string", path, lineno)
        if not isinstance(lines, list):
            raise ParseError("scene needs a list 'lines'", path, lineno)
        seen.add(sid)
        scenes.append(Scene(sid, title, tuple(_line_from(ln, path, lineno) for ln in lines)))
    return scenes


def _str_list(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    val = meta.get(key, [])
    if isinstance(val, str):
        val = [val]
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise ParseError(f"{key!r} must be a list of strings", path)
    return list(val)


def parse_lore(text: str, path: Path) -> list[LoreEntry]:
    entries = []
    for lineno, raw in enumerate(jsonl_rows(text), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ParseError(f"invalid JSON ({exc.msg})", path, lineno) from None
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"unusable JSON ({exc})", path, lineno) from None
        if not isinstance(obj, dict):
            raise ParseError("each line must be a JSON object (a lore entry)", path, lineno)
        keys, content = obj.get("keys"), obj.get("content")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ParseError("a lore entry needs 'keys', a list of strings", path, lineno)
        if not isinstance(content, str):
            raise ParseError("a lore entry needs a string 'content'", path, lineno)
        name, extra = obj.get("name", ""), obj.get("extra", {})
        if not isinstance(name, str) or not isinstance(extra, dict):
            raise ParseError("'name' must be a string and 'extra' an object", path, lineno)
        entries.append(LoreEntry(tuple(keys), content, name, extra))
    return entries


def _json_object(text: str | None, path: Path) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON ({exc.msg} at line {exc.lineno})", path) from None
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"unusable JSON ({exc})", path) from None
    if not isinstance(obj, dict):
        raise ParseError("must hold a JSON object", path)
    return obj


def _vectors(text: str | None, path: Path) -> dict[str, dict[str, str]]:
    obj = _json_object(text, path)
    for column, rows in obj.items():
        if not isinstance(rows, dict) or not all(isinstance(v, str) for v in rows.values()):
            raise ParseError(f"column {column!r} must map scene ids to base64 strings", path)
    return obj


def parse_voice(meta: dict[str, Any], path: Path) -> Voice | None:
    """The ``[voice]`` table, checked: strings and a speed in range; unknown keys are kept."""
    table = meta.get("voice")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ParseError("'voice' must be a table: [voice] backend = ..., voice = ...", path)
    unknown = sorted(set(table) - set(VOICE_KEYS))
    if unknown:  # kept and written back, as unknown top-level keys are; a typo is shown
        log.warning(
            "%s: unknown key(s) %s in [voice], not used; known: %s",
            path,
            ", ".join(unknown),
            ", ".join(VOICE_KEYS),
        )
    for key in ("backend", "voice", "language", "model"):
        if key in table and not isinstance(table[key], str):
            raise ParseError(f"[voice] {key!r} must be a string", path)
    speed = table.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4:
        raise ParseError(f"[voice] 'speed' must be a number from 0.25 to 4, got {speed!r}", path)
    return Voice(
        backend=table.get("backend", "").strip(),
        voice=table.get("voice", "").strip(),
        language=table.get("language", "").strip(),
        speed=float(speed),
        model=table.get("model", "").strip(),
        extra={k: table[k] for k in unknown},
    )


def parse_model(meta: dict[str, Any], path: Path) -> ModelChoice | None:
    """The ``[model]`` table: ``base`` and ``lora``, strings; nothing else."""
    table = meta.get("model")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ParseError("'model' must be a table: [model] base = ..., lora = ...", path)
    unknown = sorted(set(table) - {"base", "lora"})
    if unknown:
        raise ParseError(f"[model] takes base and lora, not {', '.join(unknown)}", path)
    for key in ("base", "lora"):
        if key in table and not isinstance(table[key], str):
            raise ParseError(f"[model] {key!r} must be a string", path)
    return ModelChoice(base=table.get("base", "").strip(), lora=table.get("lora", "").strip())


def parse_personality(meta: dict[str, Any], path: Path) -> tuple[dict[str, int], dict[str, object]]:
    """The ``[personality]`` table: Big Five dials (``O = "high"``, ``N = 2``) and, in
    ``[personality.canon]``, what the canon shows of each factor (1-5 or "high"/"low")."""
    table = meta.get("personality")
    if table is None:
        return {}, {}
    if not isinstance(table, dict):
        raise ParseError("'personality' must be a table: [personality] O = \"high\", N = 2", path)
    try:
        dials = parse_dials({k: v for k, v in table.items() if k != "canon"})
        canon_table = table.get("canon", {})
        if not isinstance(canon_table, dict):
            raise InputError("[personality] 'canon' must be a table: [personality.canon] O = 4.1")
        canon: dict[str, object] = dict(parse_labels(canon_table))
    except InputError as exc:
        raise ParseError(f"[personality]: {exc}", path) from None
    return dials, canon


def _character_from_files(cid: str, read: Callable[[str], str | None], root: Path) -> Character:
    toml_text, persona = read(TOML), read(PERSONA) or ""
    assert toml_text is not None
    canon_text, lore_text = read(CANON), read(LORE)
    toml_path = root / TOML
    try:
        meta = tomllib.loads(toml_text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise ParseError(f"invalid TOML: {exc}", toml_path) from None
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParseError("'name' is required and must be a non-empty string", toml_path)
    for key in ("language", "source", "user_role", "description", "portrait"):
        if key in meta and not isinstance(meta[key], str):
            raise ParseError(f"{key!r} must be a string", toml_path)
    scenes = parse_canon(canon_text, root / CANON) if canon_text is not None else []
    dials, canon_labels = parse_personality(meta, toml_path)
    character = Character(
        id=cid,
        name=name.strip(),
        persona=persona,
        scenes=scenes,
        aliases=_str_list(meta, "aliases", toml_path),
        language=meta.get("language", "zh"),
        source=meta.get("source", ""),
        user_role=meta.get("user_role", "user"),
        narrators=_str_list(meta, "narrators", toml_path) or ["旁白"],
        greetings=_str_list(meta, "greetings", toml_path),
        description=meta.get("description", ""),
        portrait=meta.get("portrait", ""),
        lore=parse_lore(lore_text, root / LORE) if lore_text is not None else [],
        voice=parse_voice(meta, toml_path),
        model=parse_model(meta, toml_path),
        personality=dials,
        canon_personality=canon_labels,
        card=_json_object(read(CARD), root / CARD),
        vectors=_vectors(read(VECTORS), root / VECTORS),
        extra={k: v for k, v in meta.items() if k not in TOML_KEYS},
    )
    check_paths(character, root)
    return character


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8 (byte {exc.start})", path) from None


def load_character(path: str | Path) -> Character:
    """Load a package folder or a package zip."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _load_zip(path)
    if not path.is_dir():
        raise PackageError(f"no character package at {path}")
    if not (path / TOML).is_file():
        raise PackageError(f"{path} is not a character package: it has no {TOML}")
    check_files_inside(path, (IMAGES,))

    def read(name: str) -> str | None:
        return _read_text(path / name) if (path / name).is_file() else None

    character = _character_from_files(path.name, read, path)
    check_paths(character, path, root=path)
    character.extra["_root"] = str(path)
    return character


def package_root(character: Character) -> Path | None:
    root = character.extra.get("_root")
    return Path(str(root)) if root else None


def _zip_prefix(names: list[str]) -> str:
    if TOML in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and f"{next(iter(tops))}/{TOML}" in names:
        return next(iter(tops)) + "/"
    raise PackageError(f"zip holds no {TOML} at its root or under one top folder")


def _open_zip(path: Path) -> SafeZip:
    """A package zip, checked (see :mod:`.safezip`); its problems are ``PackageError``."""
    return SafeZip(path, lambda message: PackageError(f"{path}: {message}"))


def _load_zip(path: Path) -> Character:
    with _open_zip(path) as zf:
        prefix = _zip_prefix(zf.names)

        def read(name: str) -> str | None:
            full = prefix + name
            if full not in zf:
                return None
            try:
                return zf.read(full).decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise ParseError(f"not valid UTF-8 (byte {exc.start})", f"{path}!{full}") from None

        cid = prefix.rstrip("/") or path.name.split(".")[0]
        return _character_from_files(cid, read, Path(f"{path}!{prefix}"))


# ---------------------------------------------------------------- writing


def canon_jsonl(scenes: list[Scene]) -> str:
    return "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in scenes)


def _toml_text(character: Character) -> str:
    meta: dict[str, Any] = {
        "name": character.name,
        "aliases": character.aliases,
        "language": character.language,
        "source": character.source,
        "user_role": character.user_role,
        "narrators": character.narrators,
        "greetings": character.greetings,
        "description": character.description,
    }
    if character.portrait:
        meta["portrait"] = character.portrait
    meta.update({k: v for k, v in character.extra.items() if not k.startswith("_")})
    if character.voice is not None:
        meta["voice"] = character.voice.to_dict()
    if character.model is not None and character.model.to_dict():
        meta["model"] = character.model.to_dict()
    if character.personality or character.canon_personality:
        table: dict[str, Any] = dict(character.personality)
        if character.canon_personality:
            table["canon"] = {
                f: {"score": v.score, "type": v.kind} if isinstance(v, Scored) else v
                for f, v in character.canon_personality.items()
            }
        meta["personality"] = table
    return tomli_w.dumps(meta)


def safe_image_name(name: str) -> str:
    """A file name for ``images/``: one plain path part, no traversal, no control characters."""
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or len(name.encode()) > 200
        or any(c in name for c in '/\\:*?"<>|')
        or any(ord(c) < 32 for c in name)
    ):
        raise PackageError(f"unsafe image file name {name!r}")
    return name


def save_character(
    character: Character,
    dest: str | Path,
    images_from: Path | None = None,
    images: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``character`` as a package folder at ``dest``, atomically.

    Images are copied from ``images_from`` (default: the folder it was loaded from), then
    ``images`` (file name -> bytes, e.g. from an import) are written into ``images/``.
    """
    dest = Path(dest)
    valid_id(dest.name)
    check_paths(character, dest)
    src_root = images_from if images_from is not None else package_root(character)
    if src_root is not None and (src_root / IMAGES).is_dir():
        check_files_inside(src_root, (IMAGES,))  # copying follows links: none may lead out
    with staging_dir(dest) as tmp:
        (tmp / TOML).write_text(_toml_text(character), encoding="utf-8")
        (tmp / PERSONA).write_text(character.persona, encoding="utf-8")
        (tmp / CANON).write_text(canon_jsonl(character.scenes), encoding="utf-8")
        src_images = src_root / IMAGES if src_root is not None else None
        if src_images is not None and src_images.is_dir():
            shutil.copytree(src_images, tmp / IMAGES)
        else:
            (tmp / IMAGES).mkdir()
        for name, data in (images or {}).items():
            (tmp / IMAGES / safe_image_name(name)).write_bytes(data)
        if character.lore:
            text = "".join(
                json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in character.lore
            )
            (tmp / LORE).write_text(text, encoding="utf-8")
        if character.card:
            (tmp / CARD).write_text(
                json.dumps(character.card, ensure_ascii=False, indent=1), "utf-8"
            )
        if character.vectors:
            (tmp / VECTORS).write_text(json.dumps(character.vectors), encoding="utf-8")
        replace_dir(tmp, dest)
    character.id = dest.name
    character.extra["_root"] = str(dest)
    return dest


def write_zip(folder: Path, out: Path) -> Path:
    """Pack a package folder into one zip file (written atomically)."""
    if not (folder / TOML).is_file():
        raise PackageError(f"{folder} is not a character package: it has no {TOML}")
    real = folder.resolve()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if f.is_symlink() and not _inside(real, f):  # packing would copy what it points at
                raise PackageError(
                    f"{folder}: {rel.as_posix()} is a symbolic link to something outside the "
                    "package folder; put the file itself in the package"
                )
            if f.is_file() and not any(p.startswith(".") for p in rel.parts):
                zf.write(f, rel.as_posix())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out)
    return out


def extract_zip(zip_path: Path, dest: Path) -> Path:
    """Unpack a package zip into ``dest`` atomically; an unsafe or damaged zip is refused
    before anything replaces ``dest``."""
    _load_zip(zip_path)  # validated as the zip it is, so that errors name what the user gave
    with _open_zip(zip_path) as zf:
        prefix = _zip_prefix(zf.names)
        with staging_dir(dest) as tmp:
            for info in zf.infos:
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                rel = PurePosixPath(info.filename[len(prefix) :])  # names are safe here
                target = tmp.joinpath(*rel.parts)
                data = zf.read(info.filename)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                except OSError as exc:
                    raise PackageError(
                        f"{zip_path}: cannot unpack {info.filename!r}: {exc}"
                    ) from None
            try:
                load_character(tmp)  # validated as unpacked too, before it replaces anything
            except (PackageError, ParseError) as exc:
                # named as the zip the user gave: the temporary folder is gone by then
                inside = str(Path(f"{zip_path}!{prefix}"))  # as _load_zip names its files
                raise PackageError(str(exc).replace(str(tmp), inside)) from None
            replace_dir(tmp, dest)
    return dest


def package_image(root: Path | None, name: str) -> Path | None:
    """The package's image file ``name`` ("images/x.png"), only where it lies inside the
    package's images folder: the page serves that folder and nothing else of the package."""
    if root is None or not name:
        return None
    folder = (root / IMAGES).resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(folder) and path.is_file() else None
