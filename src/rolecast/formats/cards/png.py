"""PNG for cards: chunks read with every length, type and CRC checked, chunks written, the
card text chunks (``tEXt``, ``zTXt``, ``iTXt`` named ``chara`` or ``ccv3``) read with
inflation capped, and a one-colour placeholder picture for characters without a portrait.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import zlib
from pathlib import Path
from typing import Any

from ...errors import ParseError
from . import limits
from .fields import load_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = ("ccv3", "chara")  # in order of preference
_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")


def png_chunks(data: bytes, path: str | Path | None = None) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG, as ``(type, data)`` up to and including ``IEND``, all checked.

    Checks the signature, every length (capped), type and CRC, the chunk count, and that
    ``IHDR`` comes first; anything after ``IEND`` is ignored.
    """
    max_file, max_chunk, max_chunks = limits.MAX_FILE, limits.MAX_CHUNK, limits.MAX_CHUNKS
    if len(data) > max_file:
        raise ParseError(f"PNG larger than the {max_file} byte limit", path)
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
        if length > max_chunk:
            raise ParseError(
                f"PNG chunk {name!r} declares {length} bytes, over the {max_chunk} byte limit",
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
        if len(chunks) > max_chunks:
            raise ParseError(f"PNG has more than {max_chunks} chunks", path)
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


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG file from ``(type, data)`` chunks (lengths and CRCs computed here)."""
    return PNG_SIGNATURE + b"".join(_chunk(t, b) for t, b in chunks)


def _inflate(data: bytes, what: str, path: str | Path | None) -> bytes:
    """zlib data inflated to at most ``MAX_CHUNK`` bytes: a bomb is refused, not unpacked."""
    max_chunk = limits.MAX_CHUNK
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, max_chunk + 1)
    except zlib.error as exc:
        raise ParseError(f"{what}: corrupt compressed data ({exc})", path) from None
    if len(out) > max_chunk or inflater.unconsumed_tail:
        raise ParseError(f"{what} inflates to more than the {max_chunk} byte limit", path)
    if not inflater.eof:
        raise ParseError(f"{what}: compressed data is truncated", path)
    return out


def _text_chunk(ctype: bytes, body: bytes, path: str | Path | None) -> tuple[str, bytes] | None:
    """``(keyword, text bytes)`` of a card text chunk, or None for any other chunk."""
    if ctype not in _TEXT_TYPES:
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


def is_card_chunk(ctype: bytes, body: bytes) -> bool:
    """Whether a chunk is a card text chunk (``chara`` or ``ccv3``)."""
    if ctype not in _TEXT_TYPES:
        return False
    return body.partition(b"\0")[0].decode("latin-1").lower() in CARD_KEYWORDS


def _b64_json(raw: bytes, what: str, path: str | Path | None) -> Any:
    text = raw.strip()
    if text.startswith(b"{"):  # a few writers store the JSON itself
        return load_json(raw, what, path)
    text = re.sub(rb"\s+", b"", text)
    text += b"=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"{what} is not valid base64", path) from None
    return load_json(decoded, what, path)


def card_from_png(data: bytes, path: str | Path | None) -> tuple[Any, bytes]:
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
    bare = png_bytes([(t, b) for t, b in chunks if not is_card_chunk(t, b)])
    return card, bare


def placeholder_png(seed: str, size: int = 256) -> bytes:
    """A valid ``size``-square PNG in one colour chosen from ``seed``."""
    rgb = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()[:3]
    row = b"\0" + rgb * size
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    idat = zlib.compress(row * size, 9)
    return png_bytes([(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b"")])
