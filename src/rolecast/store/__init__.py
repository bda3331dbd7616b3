"""Conversations (sessions), their messages and memory: SQLite (WAL) by default,
PostgreSQL for several servers. The server, the CLI's chats and the web page share it.

A session belongs to one API key (the CLI's and the page's chats to the key ``local``): its
identity is ``(key_id, session_id)``, so a key can never name another key's session. A turn
(the line, the reply, the memory as it stands after them and the turns' vectors) is written in
one transaction, so a process killed mid-reply leaves every completed turn and nothing
half-written. Schema changes are named, append-only migrations, recorded in ``migrations``;
``{blob}`` in one stands for the dialect's binary type.
"""

from __future__ import annotations

import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, RolecastError

# name, statements; never edit one that has shipped: add a new one
MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "001_sessions_and_messages",
        [
            """CREATE TABLE sessions (
                key_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                character TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                updated DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (key_id, session_id)
            )""",
            """CREATE TABLE messages (
                key_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                role TEXT NOT NULL,
                speaker TEXT NOT NULL,
                content TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (key_id, session_id, seq),
                FOREIGN KEY (key_id, session_id) REFERENCES sessions (key_id, session_id)
            )""",
        ],
    ),
    (
        "002_messages_by_time",
        ["CREATE INDEX messages_created ON messages (created)"],
    ),
    (
        "003_memory_settings_and_vectors",
        [
            # the conversation's memory (summary, folded turns, pins) and how it was set up
            # (characters, dials, turn policy), each a JSON object; '' when none
            "ALTER TABLE sessions ADD COLUMN memory TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE sessions ADD COLUMN settings TEXT NOT NULL DEFAULT ''",
            """CREATE TABLE vectors (
                key_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                embedder TEXT NOT NULL,
                vector {blob} NOT NULL,
                PRIMARY KEY (key_id, session_id, embedder, seq),
                FOREIGN KEY (key_id, session_id) REFERENCES sessions (key_id, session_id)
            )""",
            "CREATE INDEX sessions_updated ON sessions (key_id, updated)",
        ],
    ),
    (
        "004_study_votes",
        [
            # one vote per rater per pair of a study (the study's digest), the side the
            # first system was shown on kept for the record
            """CREATE TABLE study_votes (
                study TEXT NOT NULL,
                pair_id TEXT NOT NULL,
                rater TEXT NOT NULL,
                choice TEXT NOT NULL,
                second TEXT NOT NULL DEFAULT '',
                shown_left TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (study, pair_id, rater)
            )""",
            "CREATE INDEX study_votes_rater ON study_votes (study, rater)",
        ],
    ),
]
LOCAL_KEY = "local"  # the key of the chats on this machine (CLI, web page)


class StorageError(RolecastError):
    """The database cannot be opened or written."""


@dataclass(frozen=True)
class Conversation:
    """A session as ``rolecast chats`` lists it."""

    session_id: str
    character: str  # an id, or ids joined by "+" for a group scene
    created: float
    updated: float
    messages: int
    last: str  # the newest message's text


@dataclass(frozen=True)
class SessionRow:
    character: str
    created: float
    updated: float
    memory: str
    settings: str


@dataclass(frozen=True)
class Message:
    seq: int
    role: str  # "user" or "assistant"
    speaker: str
    content: str
    created: float


class Store:
    """A DB-API connection pool with the queries the server needs; subclasses set the dialect."""

    placeholder = "?"
    blob = "BLOB"
    for_update = ""  # what locks a row read in a write transaction (SQLite's BEGIN IMMEDIATE
    # locks the whole database already)
    where = "the database"

    def __init__(self, size: int = 4) -> None:
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._size = size
        self._made = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ connections

    def _connect(self) -> Any:
        raise NotImplementedError

    def _integrity_error(self) -> type[Exception]:
        raise NotImplementedError

    @contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            with self._lock:
                can_make = self._made < self._size
                if can_make:
                    self._made += 1
            conn = self._connect() if can_make else self._pool.get(timeout=30)
        try:
            yield conn
        finally:
            self._pool.put(conn)

    def _begin(self, cur: Any, write: bool) -> None:
        """Open a transaction (PostgreSQL opens one by itself)."""

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Any]:
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                self._begin(cur, write)
                yield cur
                conn.commit()
            except self._integrity_error():
                conn.rollback()
                raise  # callers retry on these
            except self._database_error() as exc:
                conn.rollback()
                raise self._explain(exc) from None
            except BaseException:
                conn.rollback()
                raise
            finally:
                cur.close()

    def _database_error(self) -> type[Exception]:
        raise NotImplementedError

    def _explain(self, exc: Exception) -> StorageError:
        return StorageError(f"{self.where}: {exc}")

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    # ------------------------------------------------------------ schema

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, each in its own transaction; their names."""
        with self.transaction(write=True) as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(name TEXT PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
            )
        applied = []
        for name, statements in MIGRATIONS:
            try:
                with self.transaction(write=True) as cur:
                    cur.execute(self._sql("SELECT 1 FROM migrations WHERE name = ?"), (name,))
                    if cur.fetchone():
                        continue
                    for statement in statements:
                        cur.execute(statement.replace("{blob}", self.blob))
                    cur.execute(
                        self._sql("INSERT INTO migrations (name, applied) VALUES (?, ?)"),
                        (name, time.time()),
                    )
                applied.append(name)
            except self._integrity_error():  # another server applied it at the same moment
                continue
        return applied

    def applied(self) -> list[str]:
        with self.transaction() as cur:
            cur.execute("SELECT name FROM migrations ORDER BY name")
            return [r[0] for r in cur.fetchall()]

    # ------------------------------------------------------------ sessions

    def session_character(self, key_id: str, session_id: str) -> str | None:
        with self.transaction() as cur:
            cur.execute(
                self._sql("SELECT character FROM sessions WHERE key_id = ? AND session_id = ?"),
                (key_id, session_id),
            )
            row = cur.fetchone()
        return row[0] if row else None

    def session(self, key_id: str, session_id: str) -> SessionRow | None:
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT character, created, updated, memory, settings FROM sessions "
                    "WHERE key_id = ? AND session_id = ?"
                ),
                (key_id, session_id),
            )
            row = cur.fetchone()
        return SessionRow(*row) if row else None

    def keys_of(self, session_id: str) -> list[str]:
        """The keys that hold a session of this id (each key's is its own)."""
        with self.transaction() as cur:
            cur.execute(
                self._sql("SELECT key_id FROM sessions WHERE session_id = ? ORDER BY key_id"),
                (session_id,),
            )
            return [r[0] for r in cur.fetchall()]

    def conversations(self, key_id: str, limit: int = 50) -> list[Conversation]:
        """The key's sessions, the latest updated first."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT s.session_id, s.character, s.created, s.updated, "
                    "(SELECT COUNT(*) FROM messages m WHERE m.key_id = s.key_id "
                    " AND m.session_id = s.session_id), "
                    "COALESCE((SELECT m.content FROM messages m WHERE m.key_id = s.key_id "
                    " AND m.session_id = s.session_id ORDER BY m.seq DESC LIMIT 1), '') "
                    "FROM sessions s WHERE s.key_id = ? ORDER BY s.updated DESC LIMIT ?"
                ),
                (key_id, limit),
            )
            return [Conversation(*row) for row in cur.fetchall()]

    def create(self, key_id: str, session_id: str, character: str, settings: str = "") -> bool:
        """Make an empty session; False when the key has one of this id already."""
        now = time.time()
        try:
            with self.transaction(write=True) as cur:
                cur.execute(
                    self._sql(
                        "INSERT INTO sessions (key_id, session_id, character, created, updated, "
                        "settings) VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    (key_id, session_id, character, now, now, settings),
                )
        except self._integrity_error():
            return False
        return True

    def update_memory(self, key_id: str, session_id: str, change: Callable[[str], str]) -> str:
        """Read the session's memory, ``change`` it and write it back, in one transaction
        that holds the row: two servers changing one memory at once each see the other's
        change. The memory written; a StorageError when there is no such session."""
        with self.transaction(write=True) as cur:
            cur.execute(
                self._sql(
                    "SELECT memory FROM sessions WHERE key_id = ? AND session_id = ?"
                    + self.for_update
                ),
                (key_id, session_id),
            )
            row = cur.fetchone()
            if row is None:
                raise StorageError(f"no session {session_id!r} to keep a memory in")
            new = change(row[0])
            cur.execute(
                self._sql("UPDATE sessions SET memory = ? WHERE key_id = ? AND session_id = ?"),
                (new, key_id, session_id),
            )
        return new

    def save_memory(self, key_id: str, session_id: str, memory: str) -> None:
        with self.transaction(write=True) as cur:
            cur.execute(
                self._sql("UPDATE sessions SET memory = ? WHERE key_id = ? AND session_id = ?"),
                (memory, key_id, session_id),
            )
            if cur.rowcount == 0:
                raise StorageError(f"no session {session_id!r} to save a memory in")

    def vectors(
        self, key_id: str, session_id: str, embedder: str, after: int = 0
    ) -> list[tuple[int, bytes]]:
        """The (seq, vector bytes) kept for the session's messages after seq ``after``, by seq."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT seq, vector FROM vectors WHERE key_id = ? AND session_id = ? "
                    "AND embedder = ? AND seq > ? ORDER BY seq"
                ),
                (key_id, session_id, embedder, after),
            )
            return [(int(seq), bytes(v)) for seq, v in cur.fetchall()]

    def message_count(self, key_id: str, session_id: str) -> int:
        with self.transaction() as cur:
            cur.execute(
                self._sql("SELECT COUNT(*) FROM messages WHERE key_id = ? AND session_id = ?"),
                (key_id, session_id),
            )
            return int(cur.fetchone()[0])

    def messages(self, key_id: str, session_id: str) -> list[Message]:
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT seq, role, speaker, content, created FROM messages "
                    "WHERE key_id = ? AND session_id = ? ORDER BY seq"
                ),
                (key_id, session_id),
            )
            return [Message(*row) for row in cur.fetchall()]

    def append_turn(
        self,
        key_id: str,
        session_id: str,
        character: str,
        rows: Sequence[tuple[str, str, str]],
        memory: str | None = None,
        vectors: Sequence[tuple[int, str, bytes]] = (),
        keep: int | None = None,
    ) -> None:
        """Add ``(role, speaker, content)`` rows to a session (made if new), with the memory
        as it stands after them (None: unchanged) and ``(seq, embedder, vector)`` rows for
        messages' vectors, in one transaction. ``keep``: the rows after the first ``keep``
        messages are replaced (a reply regenerated or swiped, a line edited)."""
        for attempt in range(5):
            try:
                with self.transaction(write=True) as cur:
                    if keep is not None:
                        for table in ("vectors", "messages"):
                            cur.execute(
                                self._sql(
                                    f"DELETE FROM {table} "
                                    "WHERE key_id = ? AND session_id = ? AND seq > ?"
                                ),
                                (key_id, session_id, keep),
                            )
                    self._append(cur, key_id, session_id, character, rows)
                    if memory is not None:
                        cur.execute(
                            self._sql(
                                "UPDATE sessions SET memory = ? WHERE key_id = ? AND session_id = ?"
                            ),
                            (memory, key_id, session_id),
                        )
                    for seq, embedder, vector in vectors:
                        cur.execute(
                            self._sql(
                                "INSERT INTO vectors (key_id, session_id, seq, embedder, vector) "
                                "VALUES (?, ?, ?, ?, ?)"
                            ),
                            (key_id, session_id, seq, embedder, vector),
                        )
                return
            except self._integrity_error():  # another process took the same seq: read again
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _append(self, cur: Any, key_id: str, session_id: str, character: str, rows: Any) -> None:
        now = time.time()
        cur.execute(
            self._sql("SELECT character FROM sessions WHERE key_id = ? AND session_id = ?"),
            (key_id, session_id),
        )
        found = cur.fetchone()
        if found is None:
            cur.execute(
                self._sql(
                    "INSERT INTO sessions (key_id, session_id, character, created, updated) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                (key_id, session_id, character, now, now),
            )
        else:
            cur.execute(
                self._sql("UPDATE sessions SET updated = ? WHERE key_id = ? AND session_id = ?"),
                (now, key_id, session_id),
            )
        cur.execute(
            self._sql(
                "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE key_id = ? AND session_id = ?"
            ),
            (key_id, session_id),
        )
        seq = int(cur.fetchone()[0])
        for role, speaker, content in rows:
            seq += 1
            cur.execute(
                self._sql(
                    "INSERT INTO messages (key_id, session_id, seq, role, speaker, content, "
                    "created) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                (key_id, session_id, seq, role, speaker, content, now),
            )

    # ------------------------------------------------------------ study votes

    def add_vote(
        self,
        study: str,
        pair_id: str,
        rater: str,
        choice: str,
        second: str = "",
        shown_left: str = "",
    ) -> bool:
        """Keep one vote, in its own transaction; False when this rater has voted on this
        pair already (the first vote stands)."""
        try:
            with self.transaction(write=True) as cur:
                cur.execute(
                    self._sql(
                        "INSERT INTO study_votes (study, pair_id, rater, choice, second, "
                        "shown_left, created) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (study, pair_id, rater, choice, second, shown_left, time.time()),
                )
        except self._integrity_error():
            return False
        return True

    def votes(self, study: str) -> list[tuple[str, str, str, str, str, float]]:
        """(pair id, rater, choice, second, shown left, created) of a study, oldest first."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT pair_id, rater, choice, second, shown_left, created FROM study_votes "
                    "WHERE study = ? ORDER BY created, pair_id, rater"
                ),
                (study,),
            )
            return [tuple(r) for r in cur.fetchall()]

    def voted(self, study: str, rater: str) -> set[str]:
        """The pairs a rater has voted on."""
        with self.transaction() as cur:
            cur.execute(
                self._sql("SELECT pair_id FROM study_votes WHERE study = ? AND rater = ?"),
                (study, rater),
            )
            return {r[0] for r in cur.fetchall()}

    def check(self) -> str:
        """'ok' when the database is sound (SQLite's integrity check; a query on PostgreSQL)."""
        raise NotImplementedError


class SQLiteStore(Store):
    def __init__(self, path: str | Path, size: int = 4, timeout: float = 30.0) -> None:
        super().__init__(size)
        self.path = Path(path)
        self.timeout = timeout  # how long a write waits for another process's lock
        self.where = f"the database {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot make the folder of {self.where}: {exc}") from None

    def _database_error(self) -> type[Exception]:
        return sqlite3.DatabaseError

    def _explain(self, exc: Exception) -> StorageError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StorageError(
                f"{self.where} is locked by another process (waited {self.timeout:g} s): "
                "close the other rolecast using it, or try again"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StorageError(
                f"{self.where} is corrupt ({text}); it is left as it is: move it away to "
                "start a new one, or restore a backup"
            )
        return StorageError(f"{self.where}: {text}")

    def _connect(self) -> sqlite3.Connection:
        try:  # isolation_level None: transactions are ours (BEGIN), so DDL is atomic too
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DatabaseError) and "unable to open" not in str(exc):
                raise self._explain(exc) from None
            raise StorageError(f"cannot open the database {self.path}: {exc}") from None
        return conn

    def _integrity_error(self) -> type[Exception]:
        return sqlite3.IntegrityError

    def _begin(self, cur: Any, write: bool) -> None:
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def check(self) -> str:
        with self.transaction() as cur:
            cur.execute("PRAGMA integrity_check")
            result = ", ".join(r[0] for r in cur.fetchall())
            cur.execute("PRAGMA foreign_key_check")
            if cur.fetchall():
                result += "; foreign keys broken"
        return result


class PostgresStore(Store):
    placeholder = "%s"
    blob = "BYTEA"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, size: int = 8) -> None:
        super().__init__(size)
        try:
            import psycopg
        except ImportError:
            raise MissingDependencyError("PostgreSQL storage", "psycopg", "postgres") from None
        self._psycopg = psycopg
        self.url = url
        self.where = f"the database {_redact(url)}"

    def _database_error(self) -> type[Exception]:
        error: type[Exception] = self._psycopg.Error
        return error

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise StorageError(f"cannot connect to {_redact(self.url)}: {exc}") from None

    def _integrity_error(self) -> type[Exception]:
        error: type[Exception] = self._psycopg.errors.IntegrityError
        return error

    def check(self) -> str:
        with self.transaction() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM messages m LEFT JOIN sessions s "
                "ON s.key_id = m.key_id AND s.session_id = m.session_id WHERE s.key_id IS NULL"
            )
            orphans = cur.fetchone()[0]
        return "ok" if orphans == 0 else f"{orphans} messages without a session"


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_store(url: str | None, default_path: Path, timeout: float = 30.0) -> Store:
    """``postgresql://...`` -> PostgreSQL; ``sqlite:///path`` or None -> SQLite; migrated.
    ``timeout``: how long SQLite waits for another process's lock."""
    if url and url.startswith(("postgresql://", "postgres://")):
        store: Store = PostgresStore(url)
    elif url and url.startswith("sqlite:///"):
        store = SQLiteStore(url.removeprefix("sqlite:///"), timeout=timeout)
    elif url:
        raise StorageError(
            f"unsupported database URL {_redact(url)!r}: use postgresql://... or sqlite:///PATH"
        )
    else:
        store = SQLiteStore(default_path, timeout=timeout)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
