"""Saved conversations: every chat (CLI, web page, server) in the one store, resumable.

    chats = Chats(store)                       # the key "local": this machine's chats
    sid = chats.start(["xiaoman"], settings)   # a new conversation
    chats.save_turn(sid, "xiaoman", rows, memory)
    saved = chats.load(sid)                    # history, memory state and vectors, settings
    text = chats.export(sid, "md")

A conversation's history is its messages in order, each under its speaker's name; its memory
(summary, pins) is saved with each turn, and its turns' vectors beside them, so a resumed
conversation recalls without embedding again.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import config
from .errors import InputError, RolecastError
from .files import write_atomic
from .memory import Memory
from .prompt.assemble import Turn
from .store import LOCAL_KEY, Conversation, Store, open_store

EXPORT_FORMATS = ("json", "md")
STORE_TIMEOUT_S = 5.0  # a chat waits this long for another process's lock on the store


def default_store(
    environ: Mapping[str, str] | None = None, timeout: float = STORE_TIMEOUT_S
) -> Store:
    """The store the server uses: ``$ROLECAST_DATABASE_URL``, else
    ``$ROLECAST_HOME/server.sqlite3``."""
    import os

    env = os.environ if environ is None else environ
    return open_store(
        env.get("ROLECAST_DATABASE_URL"), config.home(env) / "server.sqlite3", timeout
    )


def new_id() -> str:
    """A conversation id: the date and 6 random hex digits (``c20261201-3fa9b2``)."""
    return time.strftime("c%Y%m%d-", time.gmtime()) + secrets.token_hex(3)


@dataclass
class Saved:
    """A conversation as loaded from the store."""

    session_id: str
    characters: list[str]
    settings: dict[str, Any]
    history: list[Turn]
    roles: list[str]  # "user" or "assistant", per turn
    memory: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0

    def restore(self, memory: Memory, store: Store, key_id: str) -> Memory:
        """``memory`` with this conversation's state and the vectors kept for its turns."""
        return load_memory(memory, self.memory, store, key_id, self.session_id, len(self.history))


def load_memory(
    memory: Memory,
    state: Mapping[str, Any],
    store: Store,
    key_id: str,
    session_id: str,
    turns: int,
    known: np.ndarray | None = None,
) -> Memory:
    """``memory`` with a saved ``state`` (summary, pins) and the vectors the store keeps for
    the session's first ``turns`` turns (those of ``memory``'s embedder, from the first turn
    on, as far as they run without a gap: the rest is embedded again when needed).
    ``known``: the vectors of the first turns, already read (only later ones are read)."""
    if state:
        memory.restore(dict(state))
    if memory.embedder is not None:
        known = known[:turns] if known is not None else np.zeros((0, 0), np.float32)
        rows = store.vectors(key_id, session_id, memory.embedder.name, after=len(known))
        run: list[np.ndarray] = list(known)
        for k, (seq, v) in enumerate(rows, start=len(known)):
            vector = np.frombuffer(v, np.float32)
            if seq != k + 1 or k >= turns or (run and len(vector) != len(run[0])):
                break
            run.append(vector)
        if run:
            memory.vectors = np.stack(run)
        memory.fresh.clear()
    return memory


class Chats:
    """The conversations of one key in a store."""

    def __init__(self, store: Store, key_id: str = LOCAL_KEY) -> None:
        self.store = store
        self.key_id = key_id

    def start(self, characters: Sequence[str], settings: Mapping[str, Any] | None = None) -> str:
        """A new, empty conversation with these characters; its id."""
        label = "+".join(characters)
        while True:
            sid = new_id()
            if self.store.create(
                self.key_id, sid, label, json.dumps(dict(settings or {}), ensure_ascii=False)
            ):
                return sid

    def list(self, limit: int = 50) -> list[Conversation]:
        return self.store.conversations(self.key_id, limit)

    def load(self, session_id: str) -> Saved:
        """The conversation ``session_id``; an InputError naming what is wrong when this key
        has none of that id (another key's is named as such: on this machine the keys are
        the user's own)."""
        row = self.store.session(self.key_id, session_id)
        if row is None:
            others = [k for k in self.store.keys_of(session_id) if k != self.key_id]
            if others:
                raise InputError(
                    f"chat {session_id!r} belongs to another server key, not to "
                    f"{self.key_id!r}: it cannot be resumed here"
                )
            raise InputError(f"no chat {session_id!r}: `rolecast chats` lists the saved ones")
        try:
            settings = json.loads(row.settings) if row.settings else {}
            memory = json.loads(row.memory) if row.memory else {}
        except json.JSONDecodeError as exc:
            raise InputError(
                f"chat {session_id!r} has unreadable settings or memory: {exc}"
            ) from None
        messages = self.store.messages(self.key_id, session_id)
        return Saved(
            session_id,
            row.character.split("+"),
            settings if isinstance(settings, dict) else {},
            [Turn(m.speaker, m.content) for m in messages],
            [m.role for m in messages],
            memory if isinstance(memory, dict) else {},
            row.created,
            row.updated,
        )

    def save_turn(
        self,
        session_id: str,
        characters: Sequence[str],
        rows: Sequence[tuple[str, Turn]],
        memory: Memory | None = None,
        with_state: bool = True,
        keep: int | None = None,
    ) -> None:
        """Add ``(role, turn)`` rows, with the memory's state (unless ``with_state`` is
        False: a server changes it only in ``Store.update_memory``) and the vectors it made
        since it was last saved, in one transaction. ``keep``: replace what follows the
        first ``keep`` messages (see ``Store.append_turn``)."""
        vectors: list[tuple[int, str, bytes]] = []
        if memory is not None and memory.embedder is not None:
            name = memory.embedder.name
            vectors = [
                (i + 1, name, np.asarray(memory.vectors[i], np.float32).tobytes())
                for i in memory.fresh
                if i < len(memory.vectors)
            ]
        self.store.append_turn(
            self.key_id,
            session_id,
            "+".join(characters),
            [(role, t.speaker, t.text) for role, t in rows],
            memory.dumps() if memory is not None and with_state else None,
            vectors,
            keep,
        )
        if memory is not None:
            memory.fresh.clear()

    def save_memory(self, session_id: str, memory: Memory) -> None:
        self.store.save_memory(self.key_id, session_id, memory.dumps())

    def export(self, session_id: str, fmt: str = "md") -> str:
        """The conversation as JSON (everything, to read back or process) or Markdown (to read)."""
        if fmt not in EXPORT_FORMATS:
            raise InputError(f"unknown export format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}")
        saved = self.load(session_id)
        if fmt == "json":
            data = {
                "id": saved.session_id,
                "characters": saved.characters,
                "created": saved.created,
                "updated": saved.updated,
                "settings": saved.settings,
                "memory": saved.memory,
                "messages": [
                    {"role": role, "speaker": t.speaker, "content": t.text}
                    for role, t in zip(saved.roles, saved.history, strict=True)
                ],
            }
            return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved.created))
        out = [f"# {' + '.join(saved.characters)} ({saved.session_id})", "", f"Started {when}.", ""]
        for t in saved.history:
            out += [f"**{t.speaker}**: {t.text}", ""]
        pieces, pins = saved.memory.get("pieces") or [], saved.memory.get("pins") or []
        if pieces or pins:
            out += ["## Memory", ""]
            out += [f"> {p}" for p in pieces]
            out += [f"- {p}" for p in pins]
            out.append("")
        return "\n".join(out)


def write_export(text: str, path: Path) -> None:
    write_atomic(path, text)


class Recorder:
    """A running conversation saved turn by turn. A turn the store cannot take (locked,
    gone) is kept and saved with the next; one never saved is written to a JSON file at the
    end (``close``), so no line is lost."""

    def __init__(self, chats: Chats, session_id: str, characters: Sequence[str]) -> None:
        self.chats = chats
        self.session_id = session_id
        self.characters = list(characters)
        self.pending: list[tuple[str, Turn]] = []

    def turn(self, rows: Sequence[tuple[str, Turn]], memory: Memory | None = None) -> str | None:
        """Save the rows (and any kept from before) with the memory; None, or why not."""
        self.pending.extend(rows)
        return self.flush(memory)

    def flush(self, memory: Memory | None = None) -> str | None:
        try:
            if self.pending:
                self.chats.save_turn(self.session_id, self.characters, self.pending, memory)
            elif memory is not None:
                self.chats.save_memory(self.session_id, memory)
        except RolecastError as exc:
            return f"{exc} (kept: saved with the next turn)"
        self.pending = []
        return None

    def close(self, memory: Memory | None = None) -> Path | None:
        """Save what is kept; if the store still cannot take it, write it to
        ``$ROLECAST_HOME/unsaved/<id>.json`` and return that path."""
        if self.flush(memory) is None:
            return None
        path = config.home() / "unsaved" / f"{self.session_id}.json"
        data = {
            "id": self.session_id,
            "characters": self.characters,
            "messages": [
                {"role": role, "speaker": t.speaker, "content": t.text} for role, t in self.pending
            ],
            "memory": memory.state() if memory is not None else {},
        }
        write_atomic(path, json.dumps(data, ensure_ascii=False, indent=2))
        return path
