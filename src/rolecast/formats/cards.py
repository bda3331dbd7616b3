"""Character cards (SillyTavern style): V1, V2 and V3 as JSON, PNG or CHARX, read and written.

    JSON    a card object: V1 has its fields at the top; V2/V3 hold them under ``data``
    PNG     the card JSON, base64, in a ``tEXt`` (or ``zTXt``/``iTXt``) chunk named ``chara``
            (V1/V2) or ``ccv3`` (V3); ``ccv3`` wins when both are there
    CHARX   a zip with ``card.json`` (V3) at its root and assets named in ``data.assets``
            (``embeded://assets/icon/images/main.png``)

Everything here works on bytes in memory: nothing is written to disk. Every problem with
the input is a ``ParseError`` whose message names what is wrong; sizes are capped before
anything is allocated, so a hostile file cannot exhaust memory.

An exported card carries the whole rolecast character under ``data.extensions.rolecast``,
so importing it again gives the same character back; other tools ignore that extension.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import io
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ..character.model import DEFAULT_NARRATORS, Character, Line, LoreEntry, Scene
from ..character.package import parse_canon, parse_lore, safe_image_name, valid_id
from ..errors import InputError, PackageError, ParseError

try:  # pragma: no cover - lzma is optional in some Python builds
    import lzma

    _LZMA_ERRORS: tuple[type[Exception], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    _LZMA_ERRORS = ()

# ---------------------------------------------------------------- limits

MAX_FILE = 128 * 1024 * 1024  # a whole card file
MAX_CHUNK = 64 * 1024 * 1024  # one PNG chunk, one inflated text chunk, the card JSON
MAX_CHUNKS = 10_000  # PNG chunks
MAX_MEMBER = 64 * 1024 * 1024  # one zip member, uncompressed
MAX_TOTAL = 512 * 1024 * 1024  # all zip members together, uncompressed
MAX_MEMBERS = 10_000  # zip members
MAX_CENTRAL_DIR = 4 * 1024 * 1024  # bytes of zip central directory
MAX_DEPTH = 100  # nesting of JSON arrays and objects
MES_EXAMPLE_CHARS = 2000  # exported sample of the canon
MES_EXAMPLE_SCENES = 8

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
CARD_KEYWORDS = ("ccv3", "chara")  # in order of preference
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "gif")
V3_ONLY = (
    "assets",
    "nickname",
    "creator_notes_multilingual",
    "source",
    "group_only_greetings",
    "creation_date",
    "modification_date",
)
PAYLOAD_VERSION = 1

# fields the exporter writes itself; any other kept card field is written back as it was
_MANAGED = {
    "name",
    "nickname",
    "description",
    "personality",
    "scenario",
    "system_prompt",
    "first_mes",
    "alternate_greetings",
    "mes_example",
    "creator_notes",
    "post_history_instructions",
    "tags",
    "creator",
    "character_version",
    "extensions",
    "group_only_greetings",
    "character_book",
    "assets",
    "creator_notes_multilingual",
    "source",
    "creation_date",
    "modification_date",
}
_TOML_KEYS = {  # character.toml keys a payload's ``extra`` must not shadow
    "name",
    "aliases",
    "language",
    "source",
    "user_role",
    "narrators",
    "greetings",
    "description",
    "portrait",
}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CHAR_MACRO = re.compile(r"\{\{\s*char\s*\}\}|<bot>", re.IGNORECASE)
_USER_MACRO = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)
_START = re.compile(r"<start>", re.IGNORECASE)
_SPEAKER = re.compile(
    r"^\s*(?P<speaker>\{\{\s*(?:char|user)\s*\}\}|<bot>|<user>"
    r"|[^\s:：*\"“”(\[{<>][^:：*\"“”\n]{0,39}?)\s*[:：][ \t]?(?P<text>.*)$",
    re.IGNORECASE,
)
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    struct.error,
    KeyError,
    IndexError,
    *_LZMA_ERRORS,
)

Format = Literal["json", "png", "charx"]


@dataclass
class CardImport:
    """An imported card: the character (not yet saved) and files for its ``images/`` folder."""

    character: Character
    images: dict[str, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------- PNG chunks


def png_chunks(data: bytes, path: str | Path | None = None) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG, as ``(type, data)`` up to and including ``IEND``, all checked.

    Checks the signature, every length (capped), type and CRC, the chunk count, and that
    ``IHDR`` comes first; anything after ``IEND`` is ignored.
    """
    if len(data) > MAX_FILE:
        raise ParseError(f"PNG larger than the {MAX_FILE} byte limit", path)
    if not data.startswith(PNG_SIGNATURE):
        if PNG_SIGNATURE.startswith(data[:8]):
            raise ParseError("PNG truncated inside its signature", path)
        raise ParseError("not a PNG: bad signature", path)
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ParseError(f"PNG truncated: chunk header at byte {pos} is cut off", path)
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if not (ctype.isascii() and ctype.isalpha()):
            raise ParseError(f"PNG chunk at byte {pos} has an invalid type {ctype!r}", path)
        name = ctype.decode("ascii")
        if length > MAX_CHUNK:
            raise ParseError(
                f"PNG chunk {name!r} declares {length} bytes, over the {MAX_CHUNK} byte limit",
                path,
            )
        end = pos + 12 + length
        if end > len(data):
            raise ParseError(f"PNG truncated: chunk {name!r} at byte {pos} is cut off", path)
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(body, zlib.crc32(ctype)) != crc:
            raise ParseError(f"PNG chunk {name!r} at byte {pos} has a bad CRC", path)
        if not chunks and ctype != b"IHDR":
            raise ParseError("not a valid PNG: the first chunk is not IHDR", path)
        chunks.append((ctype, body))
        if len(chunks) > MAX_CHUNKS:
            raise ParseError(f"PNG has more than {MAX_CHUNKS} chunks", path)
        pos = end
        if ctype == b"IEND":
            return chunks


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + ctype
        + body
        + struct.pack(">I", zlib.crc32(body, zlib.crc32(ctype)))
    )


def _png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(_chunk(t, b) for t, b in chunks)


def _inflate(data: bytes, what: str, path: str | Path | None) -> bytes:
    """zlib data inflated to at most ``MAX_CHUNK`` bytes: a bomb is refused, not unpacked."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_CHUNK + 1)
    except zlib.error as exc:
        raise ParseError(f"{what}: corrupt compressed data ({exc})", path) from None
    if len(out) > MAX_CHUNK or inflater.unconsumed_tail:
        raise ParseError(f"{what} inflates to more than the {MAX_CHUNK} byte limit", path)
    if not inflater.eof:
        raise ParseError(f"{what}: compressed data is truncated", path)
    return out


def _text_chunk(ctype: bytes, body: bytes, path: str | Path | None) -> tuple[str, bytes] | None:
    """``(keyword, text bytes)`` of a card text chunk, or None for any other chunk."""
    if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    keyword, sep, rest = body.partition(b"\0")
    key = keyword.decode("latin-1").lower()
    if not sep or key not in CARD_KEYWORDS:
        return None
    what = f"PNG {ctype.decode()} chunk {key!r}"
    if ctype == b"tEXt":
        return key, rest
    if ctype == b"zTXt":
        if rest[:1] != b"\0":
            raise ParseError(f"{what}: unknown compression method", path)
        return key, _inflate(rest[1:], what, path)
    if len(rest) < 2:  # iTXt: flag, method, language\0, translated keyword\0, text
        raise ParseError(f"{what} is truncated", path)
    flag, method, rest = rest[0], rest[1], rest[2:]
    parts = rest.split(b"\0", 2)
    if len(parts) != 3:
        raise ParseError(f"{what} is malformed", path)
    if flag == 0:
        return key, parts[2]
    if flag != 1 or method != 0:
        raise ParseError(f"{what}: unknown compression", path)
    return key, _inflate(parts[2], what, path)


def _is_card_chunk(ctype: bytes, body: bytes) -> bool:
    if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
        return False
    return body.partition(b"\0")[0].decode("latin-1").lower() in CARD_KEYWORDS


def _b64_json(raw: bytes, what: str, path: str | Path | None) -> Any:
    text = raw.strip()
    if text.startswith(b"{"):  # a few writers store the JSON itself
        return _load_json(raw, what, path)
    text = re.sub(rb"\s+", b"", text)
    text += b"=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"{what} is not valid base64", path) from None
    return _load_json(decoded, what, path)


def _card_from_png(data: bytes, path: str | Path | None) -> tuple[Any, bytes]:
    """The card object of a PNG card, and the PNG without its card chunks."""
    chunks = png_chunks(data, path)
    found: dict[str, bytes] = {}
    for ctype, body in chunks:
        got = _text_chunk(ctype, body, path)
        if got is not None and got[0] not in found:
            found[got[0]] = got[1]
    for key in CARD_KEYWORDS:
        if key in found:
            card = _b64_json(found[key], f"PNG chunk {key!r}", path)
            break
    else:
        raise ParseError("PNG holds no character card (no 'chara' or 'ccv3' text chunk)", path)
    bare = _png_bytes([(t, b) for t, b in chunks if not _is_card_chunk(t, b)])
    return card, bare


# ---------------------------------------------------------------- JSON


def _decode(raw: bytes, what: str, path: str | Path | None) -> str:
    """Text from UTF-8 (BOM or not) or UTF-16/32 with a BOM; anything else is refused."""
    if raw.startswith(codecs.BOM_UTF8):
        raw, encoding = raw[3:], "utf-8"
    elif raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"{what} is not valid {encoding.upper()} text (undecodable byte at {exc.start}); "
            "save the card as UTF-8",
            path,
        ) from None


def _check_tree(obj: Any, what: str, path: str | Path | None) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` or holding unpaired surrogates."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise ParseError(f"{what} holds an unpaired surrogate (\\udXXX escape)", path)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise ParseError(f"{what} is nested more than {MAX_DEPTH} levels deep", path)
        if isinstance(node, dict):
            stack.extend((k, depth) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        else:
            stack.extend((v, depth + 1) for v in node)


def _load_json(raw: bytes, what: str, path: str | Path | None) -> Any:
    if len(raw) > MAX_CHUNK:
        raise ParseError(f"{what} is larger than the {MAX_CHUNK} byte limit", path)
    text = _decode(raw, what, path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, deep nesting
        raise ParseError(f"{what} is not usable JSON ({exc})", path) from None
    _check_tree(obj, what, path)
    return obj


# ---------------------------------------------------------------- CHARX (zip)


def _check_zip_directory(data: bytes, path: str | Path | None) -> None:
    """Refuse ZIP64 and oversized central directories before ``zipfile`` parses them."""
    tail_start = max(0, len(data) - 65_557)
    eocd = data.rfind(b"PK\x05\x06", tail_start)
    if eocd < 0 or eocd + 22 > len(data):
        raise ParseError("not a valid zip (CHARX): no end of central directory", path)
    entries, cd_size, cd_offset = struct.unpack("<HII", data[eocd + 10 : eocd + 20])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise ParseError("ZIP64 archives are not supported for CHARX", path)
    if eocd >= 20 and data[eocd - 20 : eocd - 16] == b"PK\x06\x07":
        raise ParseError("ZIP64 archives are not supported for CHARX", path)
    if entries > MAX_MEMBERS:
        raise ParseError(f"zip has {entries} members, more than the {MAX_MEMBERS} allowed", path)
    if cd_size > MAX_CENTRAL_DIR:
        raise ParseError(f"zip central directory is larger than {MAX_CENTRAL_DIR} bytes", path)


def _unsafe_member(name: str) -> bool:
    parts = name.split("/")
    return (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or re.match(r"^[A-Za-z]:", name) is not None
        or ".." in parts
    )


class _Zip:
    """A checked, read-only view of a CHARX zip that reads members with size caps."""

    def __init__(self, data: bytes, path: str | Path | None):
        self.path = path
        _check_zip_directory(data, path)
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except _ZIP_ERRORS as exc:
            raise ParseError(f"not a valid zip (CHARX): {exc}", path) from None
        if len(infos) > MAX_MEMBERS:
            raise ParseError(f"zip has more than {MAX_MEMBERS} members", path)
        self.members: dict[str, zipfile.ZipInfo] = {}
        declared = 0
        for info in infos:
            for name in {info.filename, info.orig_filename}:
                if _unsafe_member(name):
                    raise ParseError(f"unsafe path in zip: {name!r}", path)
            if info.filename in self.members:
                raise ParseError(f"zip holds {info.filename!r} twice", path)
            if info.file_size > MAX_MEMBER:
                raise ParseError(
                    f"zip member {info.filename!r} unpacks to {info.file_size} bytes, "
                    f"over the {MAX_MEMBER} byte limit",
                    path,
                )
            declared += info.file_size
            if declared > MAX_TOTAL:
                raise ParseError(f"zip unpacks to more than the {MAX_TOTAL} byte limit", path)
            self.members[info.filename] = info
        self.read_total = 0

    def read(self, name: str) -> bytes:
        """A member's bytes, never more than it declares nor than the caps allow."""
        info = self.members[name]
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ParseError(
                f"zip member {name!r} uses compression method {info.compress_type}; "
                "only stored and deflated members are read",
                self.path,
            )
        cap = min(info.file_size, MAX_MEMBER)
        try:
            with self.zf.open(info) as member:
                out = member.read(cap + 1)
        except _ZIP_ERRORS as exc:
            raise ParseError(f"zip member {name!r} cannot be read: {exc}", self.path) from None
        if len(out) > cap:
            raise ParseError(f"zip member {name!r} unpacks to more than it declares", self.path)
        self.read_total += len(out)
        if self.read_total > MAX_TOTAL:
            raise ParseError(f"zip unpacks to more than the {MAX_TOTAL} byte limit", self.path)
        return out


# ---------------------------------------------------------------- field checks


def _type_name(val: Any) -> str:
    return "null" if val is None else type(val).__name__


def _opt_str(data: dict[str, Any], key: str, where: str, path: str | Path | None) -> str:
    val = data.get(key)
    if val is None:
        return ""
    if not isinstance(val, str):
        raise ParseError(f"card field '{where}{key}' must be a string, not {_type_name(val)}", path)
    return val


def _opt_str_list(data: dict[str, Any], key: str, where: str, path: str | Path | None) -> list[str]:
    val = data.get(key)
    if val is None:
        return []
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise ParseError(f"card field '{where}{key}' must be a list of strings", path)
    return list(val)


def _opt_dict(
    data: dict[str, Any], key: str, where: str, path: str | Path | None
) -> dict[str, Any]:
    val = data.get(key)
    if val is None:
        return {}
    if not isinstance(val, dict):
        raise ParseError(
            f"card field '{where}{key}' must be an object, not {_type_name(val)}", path
        )
    return val


def _is_number(val: Any) -> bool:
    return isinstance(val, (int, float)) and not isinstance(val, bool)


def _card_data(obj: Any, path: str | Path | None) -> tuple[str, dict[str, Any]]:
    """The card's spec (``""`` for V1) and its field object, with the key fields checked."""
    if not isinstance(obj, dict):
        raise ParseError(f"a character card must be a JSON object, not {_type_name(obj)}", path)
    spec = obj.get("spec")
    if spec is None:
        data, spec = obj, ""
    elif spec in ("chara_card_v2", "chara_card_v3"):
        data = obj.get("data")
        if not isinstance(data, dict):
            raise ParseError(f"card field 'data' must be an object, not {_type_name(data)}", path)
    else:
        raise ParseError(f"unsupported card 'spec' {spec!r}", path)
    where = "data." if spec else ""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParseError(f"card field '{where}name' is missing or empty", path)
    for key in (
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "creator_notes",
        "system_prompt",
        "post_history_instructions",
        "creator",
        "character_version",
        "nickname",
    ):
        _opt_str(data, key, where, path)
    for key in ("alternate_greetings", "tags", "group_only_greetings", "source"):
        _opt_str_list(data, key, where, path)
    _opt_dict(data, "extensions", where, path)
    notes = _opt_dict(data, "creator_notes_multilingual", where, path)
    if not all(isinstance(v, str) for v in notes.values()):
        raise ParseError(
            f"card field '{where}creator_notes_multilingual' must map to strings", path
        )
    for key in ("creation_date", "modification_date"):
        if data.get(key) is not None and not _is_number(data[key]):
            raise ParseError(f"card field '{where}{key}' must be a number", path)
    return spec, data


def _book_entries(
    data: dict[str, Any], where: str, path: str | Path | None
) -> tuple[dict[str, Any], list[LoreEntry]]:
    """The lorebook's own fields (without entries) and its entries as lore."""
    book = _opt_dict(data, "character_book", where, path)
    where = f"{where}character_book."
    entries = book.get("entries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ParseError(f"card field '{where}entries' must be a list", path)
    lore = []
    for i, entry in enumerate(entries):
        at = f"{where}entries[{i}]."
        if not isinstance(entry, dict):
            raise ParseError(f"card field '{where}entries[{i}]' must be an object", path)
        keys = _opt_str_list(entry, "keys", at, path)
        content = _opt_str(entry, "content", at, path)
        name = _opt_str(entry, "name", at, path)
        comment = entry.get("comment")
        extra = {k: v for k, v in entry.items() if k not in ("keys", "content")}
        if name:
            extra.pop("name")
        elif isinstance(comment, str):
            name = comment
        lore.append(LoreEntry(tuple(keys), content, name, extra))
    return {k: v for k, v in book.items() if k != "entries"}, lore


def _assets(data: dict[str, Any], where: str, path: str | Path | None) -> list[dict[str, str]]:
    val = data.get("assets")
    if val is None:
        return []
    if not isinstance(val, list):
        raise ParseError(f"card field '{where}assets' must be a list", path)
    for i, asset in enumerate(val):
        if not isinstance(asset, dict):
            raise ParseError(f"card field '{where}assets[{i}]' must be an object", path)
        for key in ("type", "uri", "name", "ext"):
            if not isinstance(asset.get(key, ""), str):
                raise ParseError(f"card field '{where}assets[{i}].{key}' must be a string", path)
    return val


# ---------------------------------------------------------------- card -> character


def _macros(text: str, name: str, user: str) -> str:
    text = _CHAR_MACRO.sub(lambda _: name, text)
    return _USER_MACRO.sub(lambda _: user, text)


def compose_persona(data: dict[str, Any], name: str, user: str = "user") -> str:
    """The persona rolecast uses, from a card's system prompt, description, personality and
    scenario (blank parts left out, macros replaced)."""
    parts = [
        str(data.get("system_prompt") or "").strip(),
        str(data.get("description") or "").strip(),
    ]
    if str(data.get("personality") or "").strip():
        parts.append("Personality: " + str(data["personality"]).strip())
    if str(data.get("scenario") or "").strip():
        parts.append("Scenario: " + str(data["scenario"]).strip())
    return _macros("\n\n".join(p for p in parts if p), name, user)


def parse_mes_example(text: str, name: str, user: str = "user") -> list[Scene]:
    """Canon scenes from a card's ``mes_example``: one scene per ``<START>`` block."""
    scenes = []
    for block in _START.split(text):
        lines: list[list[str]] = []
        for raw in block.splitlines():
            if not raw.strip():
                continue
            m = _SPEAKER.match(raw)
            if m is not None and len(m["speaker"].split()) <= 4:
                speaker = m["speaker"].strip()
                if _CHAR_MACRO.fullmatch(speaker):
                    speaker = name
                elif _USER_MACRO.fullmatch(speaker):
                    speaker = user
                lines.append([speaker, _macros(m["text"].strip(), name, user)])
            elif lines:
                lines[-1][1] = (lines[-1][1] + "\n" + _macros(raw.strip(), name, user)).strip()
            else:
                lines.append(["", _macros(raw.strip(), name, user)])
        kept = tuple(Line(s, t) for s, t in lines if t)
        if kept:
            scenes.append(Scene(f"example-{len(scenes) + 1}", "example", kept))
    return scenes


def _language(text: str) -> str:
    return "zh" if text and len(_CJK.findall(text)) > 0.2 * len(text) else "en"


def _short_notes(notes: str) -> str:
    first = notes.strip().split("\n\n", 1)[0].strip()
    return first if len(first) <= 300 else first[:299].rstrip() + "…"


def derive_id(name: str) -> str:
    """A package id from a card name: odd characters become '-', at most 64 characters."""
    cid = re.sub(r"[^\w\-.]+", "-", name).strip("-.")[:64].strip("-.")
    return cid or "character"


def _check_cid(cid: str, path: str | Path | None) -> str:
    try:
        return valid_id(cid)
    except PackageError as exc:
        raise ParseError(str(exc), path) from None


def _image_name(name: str, taken: set[str]) -> str:
    """A safe, unused file name for ``images/`` from any asset path: its last part, kept as
    it is when already safe, else cleaned; a clash gets a ``-2``, ``-3``... suffix."""
    base = re.split(r"[/\\]", name)[-1]
    try:
        safe_image_name(base)
    except PackageError:
        base = re.sub(r"[^\w\-. ]", "_", base).strip().lstrip(".")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = stem.encode()[:150].decode("utf-8", "ignore") or "image"  # bytes: the name cap
    ext = ext.encode()[:16].decode("utf-8", "ignore")
    candidate, n = f"{stem}.{ext}" if ext else stem, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
    taken.add(candidate.lower())
    try:
        return safe_image_name(candidate)
    except PackageError as exc:  # pragma: no cover - the cleaning above prevents it
        raise ParseError(str(exc)) from None


def _kept_card(
    spec: str, data: dict[str, Any], book: dict[str, Any], assets: list[dict[str, str]]
) -> dict[str, Any]:
    """The card fields rolecast does not map, kept for export."""
    skip = {"name", "nickname", "character_book", "assets", "extensions"}
    card: dict[str, Any] = {k: v for k, v in data.items() if k not in skip and v is not None}
    if spec:
        card["spec"] = spec
    extensions = {
        k: v for k, v in _opt_dict(data, "extensions", "", None).items() if k != "rolecast"
    }
    if extensions:
        card["extensions"] = extensions
    if book:
        card["character_book"] = book
    if assets:
        card["assets"] = assets
    return card


def _from_card(
    spec: str,
    data: dict[str, Any],
    filename: str,
    cid: str | None,
    path: str | Path | None,
    imported_assets: set[int],
) -> Character:
    """A character from a foreign card (one without a rolecast payload)."""
    where = "data." if spec else ""
    name = data["name"].strip()
    user = "user"
    persona = compose_persona(data, name, user)
    first = _opt_str(data, "first_mes", where, path)
    alternates = _opt_str_list(data, "alternate_greetings", where, path)
    greetings = [_macros(g.strip(), name, user) for g in [first, *alternates] if g.strip()]
    scenes = parse_mes_example(_opt_str(data, "mes_example", where, path), name, user)
    book, lore = _book_entries(data, where, path)
    assets = [a for i, a in enumerate(_assets(data, where, path)) if i not in imported_assets]
    nickname = _opt_str(data, "nickname", where, path).strip()
    character = Character(
        id=_check_cid(cid, path) if cid else derive_id(name),
        name=name,
        persona=persona,
        scenes=scenes,
        aliases=[nickname] if nickname and nickname != name else [],
        language=_language(persona + "".join(greetings)),
        source=f"character card: {filename}",
        user_role=user,
        narrators=list(DEFAULT_NARRATORS[:1]),
        greetings=greetings,
        description=_short_notes(_opt_str(data, "creator_notes", where, path)),
        lore=lore,
    )
    card = _kept_card(spec, data, book, assets)
    card["_composed_persona"] = persona
    card["_composed_greetings"] = list(greetings)
    card["_composed_canon"] = character.canon_hash()
    character.card = card
    return character


# ---------------------------------------------------------------- the rolecast payload


def _toml_safe(val: Any) -> bool:
    if isinstance(val, (str, bool, int, float)):
        return True
    if isinstance(val, list):
        return all(_toml_safe(v) for v in val)
    if isinstance(val, dict):
        return all(isinstance(k, str) and _toml_safe(v) for k, v in val.items())
    return False


def _json_safe(val: Any) -> bool:
    try:
        json.dumps(val, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _restore(
    payload: Any, data: dict[str, Any], cid: str | None, path: str | Path | None
) -> Character:
    """The character exactly as the exporter wrote it under ``extensions.rolecast``."""
    at = "extensions.rolecast"
    if not isinstance(payload, dict):
        raise ParseError(f"'{at}' must be an object", path)
    version = payload.get("version")
    if version != PAYLOAD_VERSION or isinstance(version, bool):
        raise ParseError(
            f"'{at}.version' is {version!r}; this rolecast reads version {PAYLOAD_VERSION}", path
        )
    ch = payload.get("character")
    if not isinstance(ch, dict):
        raise ParseError(f"'{at}.character' must be an object", path)
    where = f"{at}.character."
    name = ch.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParseError(f"'{where}name' must be a non-empty string", path)
    text = {
        k: _opt_str(ch, k, where, path)
        for k in ("id", "persona", "language", "source", "user_role", "description", "portrait")
    }
    lists = {k: _opt_str_list(ch, k, where, path) for k in ("aliases", "narrators", "greetings")}
    for key, default in (("language", "zh"), ("user_role", "user")):  # absent: the default
        if ch.get(key) is None:
            text[key] = default
    if ch.get("narrators") is None:
        lists["narrators"] = list(DEFAULT_NARRATORS[:1])
    extra = _opt_dict(ch, "extra", where, path)
    for key, val in extra.items():
        if key.startswith("_") or key in _TOML_KEYS:
            raise ParseError(f"'{where}extra' may not hold the reserved key {key!r}", path)
        if not _toml_safe(val):
            raise ParseError(f"'{where}extra.{key}' holds a value TOML cannot store", path)
    portrait = text["portrait"]
    if portrait:
        parts = portrait.split("/")
        if _unsafe_member(portrait) or ":" in portrait:
            raise ParseError(f"'{where}portrait' is not a safe relative path", path)
        try:
            safe_image_name(parts[-1])
        except PackageError as exc:
            raise ParseError(f"'{where}portrait': {exc}", path) from None
    if cid:
        the_id = _check_cid(cid, path)
    elif text["id"]:
        the_id = _check_cid(text["id"], path)
    else:
        the_id = derive_id(name)
    scenes = _payload_rows(payload, "canon", parse_canon, path)
    lore = _payload_rows(payload, "lore", parse_lore, path)
    card = payload.get("card", {})
    if not isinstance(card, dict):
        raise ParseError(f"'{at}.card' must be an object", path)
    card = dict(card)
    extensions = {
        k: v for k, v in _opt_dict(data, "extensions", "", path).items() if k != "rolecast"
    }
    if extensions or "extensions" in card:
        card["extensions"] = extensions
    return Character(
        id=the_id,
        name=name,
        persona=text["persona"],
        scenes=scenes,
        aliases=lists["aliases"],
        language=text["language"],
        source=text["source"],
        user_role=text["user_role"],
        narrators=lists["narrators"],
        greetings=lists["greetings"],
        description=text["description"],
        portrait=portrait,
        lore=lore,
        card=card,
        extra=dict(extra),
    )


def _payload_rows(
    payload: dict[str, Any],
    key: str,
    parse: Callable[[str, Path], list[Any]],
    path: str | Path | None,
) -> list[Any]:
    rows = payload.get(key, [])
    if not isinstance(rows, list):
        raise ParseError(f"'extensions.rolecast.{key}' must be a list", path)
    # one JSON row per line, ASCII only so that no character inside a row can split it
    text = "".join(json.dumps(row, ensure_ascii=True) + "\n" for row in rows)
    try:
        return parse(text, Path(f"extensions.rolecast.{key}"))
    except ParseError as exc:
        raise ParseError(
            f"'extensions.rolecast.{key}[{(exc.line or 1) - 1}]': {exc.reason}", path
        ) from None


# ---------------------------------------------------------------- import


def import_card(data: bytes, filename: str, cid: str | None = None) -> CardImport:
    """A character from a card file's bytes: JSON, PNG or CHARX, told apart by content.

    ``filename`` names the file in errors and in ``source``; ``cid`` is the package id
    (default: the exported id, else one made from the card name).
    """
    data = bytes(data)
    path = filename
    if len(data) > MAX_FILE:
        raise ParseError(f"card file larger than the {MAX_FILE} byte limit", path)
    images: dict[str, bytes] = {}
    png: bytes | None = None
    zipped: _Zip | None = None
    if data.startswith(PNG_SIGNATURE[:4]):
        obj, png = _card_from_png(data, path)
    elif data.startswith(ZIP_MAGIC) or data.startswith(b"PK\x05\x06"):
        zipped = _Zip(data, path)
        if "card.json" not in zipped.members:
            raise ParseError("CHARX zip holds no card.json at its root", path)
        obj = _load_json(zipped.read("card.json"), "card.json", path)
    else:
        obj = _load_json(data, "card JSON", path)
    spec, fields = _card_data(obj, path)
    where = "data." if spec else ""
    assets = _assets(fields, where, path)
    payload = _opt_dict(fields, "extensions", where, path).get("rolecast")

    if payload is not None:
        character = _restore(payload, fields, cid, path)
        portrait_name = PurePosixPath(character.portrait).name if character.portrait else ""
    else:
        portrait_name = ""
    taken: set[str] = {portrait_name.lower()} if portrait_name else set()
    # ``ccdefault:`` means the PNG itself: imported from a PNG, meaningless anywhere else
    imported = {i for i, a in enumerate(assets) if a.get("uri") == "ccdefault:"}
    icon: bytes | None = None
    icon_ext = "png"
    if png is not None:
        icon = png
    elif zipped is not None:
        icon, icon_ext = _charx_images(zipped, assets, images, taken, imported)

    if payload is None:
        character = _from_card(spec, fields, filename, cid, path, imported)
        if icon is not None:
            portrait_name = _image_name(f"portrait.{icon_ext}", taken)
            images[portrait_name] = icon
            character.portrait = f"images/{portrait_name}"
    elif icon is not None and portrait_name:
        # a PNG carries only a PNG portrait; a CHARX icon is the portrait whatever its type
        if png is None or portrait_name.lower().endswith(".png"):
            images[portrait_name] = icon
    return CardImport(character, images)


def _charx_images(
    zipped: _Zip,
    assets: list[dict[str, str]],
    images: dict[str, bytes],
    taken: set[str],
    imported: set[int],
) -> tuple[bytes | None, str]:
    """Read a CHARX's image assets into ``images``; returns the icon's bytes and extension."""
    icon_index: int | None = None
    found: list[tuple[int, str, str]] = []  # asset index, member, extension
    for i, asset in enumerate(assets):
        uri = asset.get("uri", "")
        prefix = next((p for p in ("embeded://", "embedded://") if uri.startswith(p)), None)
        if prefix is None:
            continue
        member = uri[len(prefix) :]
        if member not in zipped.members:
            continue
        ext = PurePosixPath(member).suffix.lower().lstrip(".") or asset.get("ext", "").lower()
        if ext not in IMAGE_EXTS:
            continue
        found.append((i, member, ext))
        if asset.get("type") == "icon" and (
            icon_index is None
            or asset.get("name") == "main"
            and assets[icon_index].get("name") != "main"
        ):
            icon_index = i
    icon: bytes | None = None
    icon_ext = "png"
    for i, member, ext in found:
        imported.add(i)
        if i == icon_index:
            icon, icon_ext = zipped.read(member), ext
        else:
            images[_image_name(PurePosixPath(member).name, taken)] = zipped.read(member)
    if icon is None:  # no icon listed: a conventional icon member will do
        for name in sorted(zipped.members):
            ext = PurePosixPath(name).suffix.lower().lstrip(".")
            if name.startswith("assets/icon/") and ext in IMAGE_EXTS:
                return zipped.read(name), ext
    return icon, icon_ext


def fuzz_one(data: bytes) -> None:
    """Fuzz target: import ``data``; a ``ParseError`` is the one allowed failure."""
    try:
        import_card(data, "fuzz-input")
    except ParseError:
        pass


# ---------------------------------------------------------------- character -> card


def _speaker_tag(character: Character, speaker: str) -> str | None:
    """``{{char}}``, ``{{user}}``, the speaker's name, or None for narration."""
    if character.is_self(speaker):
        return "{{char}}"
    if character.user_role and speaker.strip() == character.user_role:
        return "{{user}}"
    if character.is_narrator(speaker):
        return None
    return speaker.strip()


def sample_mes_example(character: Character) -> str:
    """Up to 8 canon scenes where the character speaks, as ``<START>`` blocks, capped."""
    blocks: list[str] = []
    size = 0
    for scene in character.scenes:
        if len(blocks) >= MES_EXAMPLE_SCENES:
            break
        if not any(character.is_self(ln.speaker) for ln in scene.lines):
            continue
        block = "<START>"
        for ln in scene.lines:
            tag = _speaker_tag(character, ln.speaker)
            row = f"{tag}: {ln.text}" if tag else f"*{ln.text}*"
            if size + len(block) + 1 + len(row) > MES_EXAMPLE_CHARS:
                break
            block += "\n" + row
        if block == "<START>":
            break
        blocks.append(block)
        size += len(block) + 1
    return "\n".join(blocks)


_ENTRY_TYPES: dict[str, Callable[[Any], bool]] = {
    "enabled": lambda v: isinstance(v, bool),
    "case_sensitive": lambda v: isinstance(v, bool),
    "selective": lambda v: isinstance(v, bool),
    "constant": lambda v: isinstance(v, bool),
    "use_regex": lambda v: isinstance(v, bool),
    "insertion_order": _is_number,
    "priority": _is_number,
    "id": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "name": lambda v: isinstance(v, str),
    "comment": lambda v: isinstance(v, str),
    "position": lambda v: isinstance(v, str),
    "secondary_keys": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    "extensions": lambda v: isinstance(v, dict),
}


def _book(character: Character) -> dict[str, Any] | None:
    kept = character.card.get("character_book")
    kept = dict(kept) if isinstance(kept, dict) else {}
    if not character.lore and not kept:
        return None
    entries = []
    for i, entry in enumerate(character.lore):
        out: dict[str, Any] = {
            "keys": list(entry.keys),
            "content": entry.content,
            "extensions": {},
            "enabled": True,
            "insertion_order": i,
            "id": i,
        }
        if entry.name:
            out["name"] = entry.name
            out["comment"] = entry.name
        for key, val in entry.extra.items():
            if key in ("keys", "content") or not _json_safe(val):
                continue
            check = _ENTRY_TYPES.get(key)
            if check is None or check(val):
                out[key] = val
        entries.append(out)
    kept.pop("entries", None)
    return {"extensions": {}, **kept, "entries": entries}


def _payload(character: Character, extensions: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in character.extra.items() if not k.startswith("_") and _json_safe(v)}
    card = {k: v for k, v in character.card.items() if _json_safe(v)}
    if "extensions" in card:
        card["extensions"] = extensions
    return {
        "version": PAYLOAD_VERSION,
        "character": {
            "id": character.id,
            "name": character.name,
            "persona": character.persona,
            "aliases": list(character.aliases),
            "language": character.language,
            "source": character.source,
            "user_role": character.user_role,
            "narrators": list(character.narrators),
            "greetings": list(character.greetings),
            "description": character.description,
            "portrait": character.portrait,
            "extra": extra,
        },
        "canon": [scene.to_dict() for scene in character.scenes],
        "lore": [entry.to_dict() for entry in character.lore],
        "card": card,
    }


def _card_str(card: dict[str, Any], key: str, default: str = "") -> str:
    val = card.get(key)
    return val if isinstance(val, str) else default


def _card_list(card: dict[str, Any], key: str) -> list[Any]:
    val = card.get(key)
    return list(val) if isinstance(val, list) else []


def card_v3(character: Character, assets: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The V3 card object for ``character`` (``assets`` lists files that travel with it)."""
    card = character.card
    data: dict[str, Any] = {
        k: v
        for k, v in card.items()
        if not k.startswith("_")
        and k not in _MANAGED
        and k not in ("spec", "spec_version")
        and _json_safe(v)
    }
    unchanged = "_composed_persona" in card and card["_composed_persona"] == character.persona
    data["name"] = character.name
    if unchanged:
        for key in ("description", "personality", "scenario", "system_prompt"):
            data[key] = _card_str(card, key)
    else:
        data.update(description=character.persona, personality="", scenario="", system_prompt="")
    if card.get("_composed_greetings") == character.greetings and "first_mes" in card:
        data["first_mes"] = _card_str(card, "first_mes")
        data["alternate_greetings"] = _card_list(card, "alternate_greetings")
    else:
        data["first_mes"] = character.greetings[0] if character.greetings else ""
        data["alternate_greetings"] = list(character.greetings[1:])
    if card.get("_composed_canon") == character.canon_hash() and "mes_example" in card:
        data["mes_example"] = _card_str(card, "mes_example")
    else:
        data["mes_example"] = sample_mes_example(character)
    notes = _card_str(card, "creator_notes")
    data["creator_notes"] = (
        notes
        if "creator_notes" in card and _short_notes(notes) == character.description
        else character.description
    )
    data["post_history_instructions"] = _card_str(card, "post_history_instructions")
    data["tags"] = [t for t in _card_list(card, "tags") if isinstance(t, str)]
    data["creator"] = _card_str(card, "creator")
    data["character_version"] = _card_str(card, "character_version")
    data["group_only_greetings"] = [
        g for g in _card_list(card, "group_only_greetings") if isinstance(g, str)
    ]
    if character.aliases:
        data["nickname"] = character.aliases[0]
    for key in ("creator_notes_multilingual", "source", "creation_date", "modification_date"):
        if key in card and _json_safe(card[key]):
            data[key] = card[key]
    kept_assets = [
        a
        for a in _card_list(card, "assets")
        if isinstance(a, dict)
        and isinstance(a.get("uri"), str)
        and not a["uri"].startswith(("embeded://", "embedded://", "ccdefault:"))
        and _json_safe(a)
    ]
    data["assets"] = [*(assets or []), *kept_assets]
    book = _book(character)
    if book is not None:
        data["character_book"] = book
    kept_ext = card.get("extensions")
    extensions = {
        k: v
        for k, v in (kept_ext.items() if isinstance(kept_ext, dict) else ())
        if k != "rolecast" and _json_safe(v)
    }
    data["extensions"] = {**extensions, "rolecast": _payload(character, extensions)}
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def card_v2(v3: dict[str, Any]) -> dict[str, Any]:
    """The V2 form of a V3 card object: the V3-only fields dropped."""
    data = {k: v for k, v in v3["data"].items() if k not in V3_ONLY}
    book = data.get("character_book")
    if isinstance(book, dict):
        entries = [
            {k: v for k, v in e.items() if k != "use_regex"} for e in book.get("entries", [])
        ]
        data["character_book"] = {**book, "entries": entries}
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def _json_bytes(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them instead
        return json.dumps(obj, ensure_ascii=True).encode("ascii")


def placeholder_png(seed: str, size: int = 256) -> bytes:
    """A valid ``size``-square PNG in one colour chosen from ``seed``."""
    rgb = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()[:3]
    row = b"\0" + rgb * size
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    idat = zlib.compress(row * size, 9)
    return _png_bytes([(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b"")])


def _read_image(images_dir: Path | None, name: str) -> bytes | None:
    if images_dir is None or not name:
        return None
    path = images_dir / name
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_MEMBER:
        raise PackageError(f"{path}: image larger than {MAX_MEMBER} bytes cannot be exported")
    return path.read_bytes()


def _portrait_chunks(character: Character, images_dir: Path | None) -> list[tuple[bytes, bytes]]:
    name = PurePosixPath(character.portrait).name if character.portrait else ""
    raw = _read_image(images_dir, name)
    if raw is not None and raw.startswith(PNG_SIGNATURE):
        try:
            return png_chunks(raw, name)
        except ParseError:
            pass  # a broken portrait: a plain one instead
    return png_chunks(placeholder_png(character.name))


def _export_png(character: Character, images_dir: Path | None) -> bytes:
    v3 = card_v3(character, [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}])
    chunks = [c for c in _portrait_chunks(character, images_dir) if not _is_card_chunk(*c)]
    texts = [
        (b"tEXt", b"ccv3\0" + base64.b64encode(_json_bytes(v3))),
        (b"tEXt", b"chara\0" + base64.b64encode(_json_bytes(card_v2(v3)))),
    ]
    return _png_bytes(chunks[:-1] + texts + chunks[-1:])


def _package_images(images_dir: Path | None) -> Iterator[Path]:
    if images_dir is None or not images_dir.is_dir():
        return
    for f in sorted(images_dir.iterdir()):
        ext = f.suffix.lower().lstrip(".")
        if f.is_file() and not f.name.startswith(".") and ext in IMAGE_EXTS:
            yield f


def _export_charx(character: Character, images_dir: Path | None) -> bytes:
    files: list[tuple[str, bytes]] = []
    assets: list[dict[str, str]] = []
    portrait = PurePosixPath(character.portrait).name if character.portrait else ""
    icon = _read_image(images_dir, portrait)
    if icon is not None and icon.startswith(PNG_SIGNATURE):
        try:  # an imported PNG card's own (stale) card chunks stay behind
            icon = _png_bytes([c for c in png_chunks(icon) if not _is_card_chunk(*c)])
        except ParseError:
            pass
    if icon is not None:
        ext = PurePosixPath(portrait).suffix.lower().lstrip(".") or "png"
        member = f"assets/icon/images/main.{ext}"
        files.append((member, icon))
        assets.append({"type": "icon", "uri": f"embeded://{member}", "name": "main", "ext": ext})
    for f in _package_images(images_dir):
        if f.name == portrait:
            continue
        member = f"assets/other/images/{f.name}"
        files.append((member, _read_image(images_dir, f.name) or b""))
        ext = f.suffix.lower().lstrip(".")
        assets.append({"type": "other", "uri": f"embeded://{member}", "name": f.stem, "ext": ext})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", _json_bytes(card_v3(character, assets)))
        for member, raw in files:
            zf.writestr(member, raw)
    return buf.getvalue()


def export_card(character: Character, images_dir: Path | None, fmt: Format = "json") -> bytes:
    """``character`` as a V3 card: ``json``, ``png`` (with a V2 copy for older readers) or
    ``charx``. Reads the portrait and images from ``images_dir``; writes nothing."""
    if fmt == "json":
        return _json_bytes(card_v3(character))
    if fmt == "png":
        return _export_png(character, images_dir)
    if fmt == "charx":
        return _export_charx(character, images_dir)
    raise InputError(f"unknown card format {fmt!r}; use json, png or charx")
