"""Saved prefix states: the KV cache of a prompt's stable beginning, kept on disk.

Every turn of a chat with a character begins with the same persona and standing rules. A
local backend evaluates that prefix once per (model, build, context size, prefix) and saves
llama.cpp's state after it here, so that a later chat starts from the saved state and
evaluates only what follows (the canon and the line).

A file holds a header line (JSON: the key it was made for, the prefix's token ids, the
payload's sha256) and the payload (``llama_state_get_data``). A file is loaded only when its
key equals the one asked for and its payload is whole; anything else is rebuilt, never
trusted. This module is pure (bytes in, bytes out) apart from :func:`read` and :func:`write`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config
from ..files import write_atomic

log = logging.getLogger(__name__)
MAGIC = b"rolecast-kv-1\n"


class StateError(ValueError):
    """A saved state that cannot be used: another key, or a damaged file."""


@dataclass(frozen=True)
class Saved:
    key: dict[str, Any]
    tokens: list[int]
    payload: bytes


def states_dir(environ: Mapping[str, str] | None = None) -> Path:
    return config.home(environ) / "cache" / "kv"


def prefix_digest(messages: Sequence[Mapping[str, str]]) -> str:
    blob = json.dumps([dict(m) for m in messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def path_for(key: Mapping[str, Any], folder: Path) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:40]
    return folder / f"{name}.kv"


def encode(key: Mapping[str, Any], tokens: Sequence[int], payload: bytes) -> bytes:
    header = {
        "key": dict(key),
        "tokens": [int(t) for t in tokens],
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }
    return MAGIC + json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + payload


def decode(blob: bytes, key: Mapping[str, Any]) -> Saved:
    """The state in ``blob``, if it was saved for ``key`` and is whole; else StateError."""
    if not blob.startswith(MAGIC):
        raise StateError("not a rolecast state file")
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        raise StateError("the header is cut short")
    try:
        header = json.loads(blob[len(MAGIC) : end])
        saved_key, tokens = header["key"], header["tokens"]
        digest, size = header["sha256"], header["bytes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"the header is damaged: {exc}") from None
    if saved_key != dict(key):
        raise StateError("saved for another model, build or prefix")
    payload = blob[end + 1 :]
    if len(payload) != size or hashlib.sha256(payload).hexdigest() != digest:
        raise StateError("the state is damaged (size or checksum differs)")
    if not tokens or not all(isinstance(t, int) for t in tokens):
        raise StateError("the header holds no prefix tokens")
    return Saved(dict(saved_key), list(tokens), payload)


def read(path: Path, key: Mapping[str, Any]) -> Saved | None:
    """The saved state at ``path`` for ``key``, or None when there is none or it cannot be
    used (a damaged or foreign file is removed, so that it is rebuilt)."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the saved state %s: %s", path, exc)
        return None
    try:
        return decode(blob, key)
    except StateError as exc:
        log.warning("saved state %s not used (%s): it will be rebuilt", path, exc)
        path.unlink(missing_ok=True)
        return None


def write(path: Path, key: Mapping[str, Any], tokens: Sequence[int], payload: bytes) -> None:
    write_atomic(path, encode(key, tokens, payload))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
