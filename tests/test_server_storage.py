"""Session storage on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rolecast.store import MIGRATIONS, SQLiteStore, StorageError, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])
def store(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s = open_store(None, tmp_path / "db.sqlite3")
    else:
        url = request.getfixturevalue("postgres_url")
        s = open_store(url, tmp_path / "unused")
        with s.transaction(write=True) as cur:  # a clean slate per test
            cur.execute("DELETE FROM study_votes")
            cur.execute("DELETE FROM vectors")
            cur.execute("DELETE FROM messages")
            cur.execute("DELETE FROM sessions")
    yield s
    s.close()


def test_migrations_are_named_applied_once_and_recorded(store) -> None:  # type: ignore[no-untyped-def]
    assert store.applied() == [name for name, _ in MIGRATIONS]
    assert store.migrate() == []  # nothing left to apply


def test_turns_are_kept_per_key_and_session(store) -> None:  # type: ignore[no-untyped-def]
    store.append_turn(
        "keyA", "s1", "xiaoman", [("user", "旅人", "你好"), ("assistant", "林小满", "坐")]
    )
    store.append_turn(
        "keyA", "s1", "xiaoman", [("user", "旅人", "面呢"), ("assistant", "林小满", "来了")]
    )
    store.append_turn("keyB", "s1", "mia", [("user", "Guest", "hi"), ("assistant", "Mia", "yo")])
    rows = store.messages("keyA", "s1")
    assert [(m.seq, m.content) for m in rows] == [(1, "你好"), (2, "坐"), (3, "面呢"), (4, "来了")]
    assert store.session_character("keyA", "s1") == "xiaoman"
    assert store.session_character("keyB", "s1") == "mia"  # same name, another key: another session
    assert store.session_character("keyC", "s1") is None and store.messages("keyC", "s1") == []
    assert store.check() == "ok"


def test_concurrent_writers_lose_nothing(store) -> None:  # type: ignore[no-untyped-def]
    def write(n: int) -> None:
        for i in range(10):
            store.append_turn(
                "k", "shared", "xiaoman", [("user", "u", f"{n}-{i}"), ("assistant", "a", "ok")]
            )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.messages("k", "shared")
    assert len(rows) == 80 and [m.seq for m in rows] == list(range(1, 81))
    users = [m.content for m in rows if m.role == "user"]
    assert sorted(users) == sorted(f"{n}-{i}" for n in range(4) for i in range(10))
    # each turn's two rows are adjacent: a turn is one transaction
    assert all(rows[i].role == "user" and rows[i + 1].role == "assistant" for i in range(0, 80, 2))


def test_bad_database_urls_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported database URL 'mysql://u:\\*\\*\\*@h/db'"):
        open_store("mysql://u:secret@h/db", tmp_path / "x")
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StorageError, match="cannot open the database"):
        SQLiteStore(tmp_path / "dir.sqlite3").migrate()


def test_postgres_connection_error_hides_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError) as err:
        open_store("postgresql://bob:hunter2@127.0.0.1:1/nodb", tmp_path / "x")
    assert "hunter2" not in str(err.value) and "bob:***@" in str(err.value)


def test_a_study_vote_is_kept_once_per_rater_and_pair(store) -> None:  # type: ignore[no-untyped-def]
    assert store.add_vote("s1", "p1", "ann", "a", "", "canon")
    assert not store.add_vote("s1", "p1", "ann", "b", "", "bare")  # the first stands
    assert store.add_vote("s1", "p1", "bob", "tie")
    assert store.add_vote("s2", "p1", "ann", "b")  # another study
    rows = store.votes("s1")
    assert [(r[0], r[1], r[2]) for r in rows] == [("p1", "ann", "a"), ("p1", "bob", "tie")]
    assert store.voted("s1", "ann") == {"p1"} and store.voted("s1", "cid") == set()
