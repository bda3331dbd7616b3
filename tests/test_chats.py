"""Saved conversations: resume restores history and memory exactly, on SQLite and on a real
PostgreSQL; exports; another key's, missing, locked and corrupt stores give clear errors."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from test_memory import ASK, FACT, long_talk

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character import store as characters
from rolecast.chats import Chats, default_store
from rolecast.errors import InputError
from rolecast.memory import Memory
from rolecast.prompt.assemble import Budget
from rolecast.session import Session
from rolecast.store import SQLiteStore, StorageError, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.e2e)])
def store(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s = open_store(None, tmp_path / "db.sqlite3")
    else:
        s = open_store(request.getfixturevalue("postgres_url"), tmp_path / "unused")
        with s.transaction(write=True) as cur:
            for table in ("vectors", "messages", "sessions"):
                cur.execute(f"DELETE FROM {table}")
    yield s
    s.close()


def chat_session(embedder, counter, llm=None):  # type: ignore[no-untyped-def]
    return Session(
        characters.load("xiaoman"),
        None,
        llm or ScriptedLLM(),
        budget=Budget(history=200),
        counter=counter,
        order="split",
        memory=Memory(embedder),
    )


def play(session: Session, chats: Chats, sid: str, n: int) -> None:
    """``n`` turns of a scripted chat, each saved as it ends, the memory folded between."""
    llm = session.llm
    assert isinstance(llm, ScriptedLLM)
    talk = long_talk(2 * n)
    for k in range(0, 2 * n, 2):
        llm.enqueue(talk[k + 1].text)
        session.reply(talk[k].text)
        assert session.last is not None
        chats.save_turn(
            sid,
            ["xiaoman"],
            [("user", session.history[-2]), ("assistant", session.history[-1])],
            session.memory,
        )
        while session.memory is not None and session.memory.due(session.history, session.window()):
            llm.enqueue(f"第{k}句前，旅人讲了镇上的事。")
            session.remember()
            chats.save_memory(sid, session.memory)
    assert session.memory is not None
    session.memory.pin("我叫阿青")
    chats.save_memory(sid, session.memory)


def test_resume_restores_history_and_memory_exactly(store, embedder, counter) -> None:  # type: ignore[no-untyped-def]
    chats = Chats(store)
    sid = chats.start(["xiaoman"], {"traits": ["O=high"]})
    first = chat_session(embedder, counter)
    play(first, chats, sid, 20)
    assert first.memory is not None and first.memory.folded >= 8

    saved = chats.load(sid)
    assert saved.characters == ["xiaoman"] and saved.settings == {"traits": ["O=high"]}
    again = chat_session(embedder, counter)
    again.history = saved.history
    assert again.memory is not None
    saved.restore(again.memory, store, chats.key_id)
    assert again.history == first.history
    assert again.memory.state() == first.memory.state()
    assert np.array_equal(again.memory.vectors, first.memory.vectors)  # kept, not embedded again
    assert again.memory.index(again.history) == 0
    # the next prompt is the same, byte for byte
    assert again.prepare(ASK).assembly.messages == first.prepare(ASK).assembly.messages
    assert FACT in str(again.prepare(ASK).assembly.messages)

    listed = chats.list()
    assert [c.session_id for c in listed] == [sid] and listed[0].messages == 40


def test_sqlite_and_postgres_keep_the_same_conversation(
    embedder, counter, tmp_path, postgres_url
) -> None:  # type: ignore[no-untyped-def]
    results = []
    for url in (None, postgres_url):
        s = open_store(url, tmp_path / "same.sqlite3")
        with s.transaction(write=True) as cur:
            for table in ("vectors", "messages", "sessions"):
                cur.execute(f"DELETE FROM {table}")
        chats = Chats(s)
        sid = chats.start(["xiaoman"])
        play(chat_session(embedder, counter), chats, sid, 12)
        saved = chats.load(sid)
        exported = json.loads(chats.export(sid, "json"))
        results.append(
            (saved.history, saved.memory, len(s.vectors("local", sid, "use")), exported["messages"])
        )
        s.close()
    assert results[0] == results[1]


test_sqlite_and_postgres_keep_the_same_conversation = pytest.mark.e2e(
    test_sqlite_and_postgres_keep_the_same_conversation
)


def test_exports_are_json_and_markdown(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rolecast.prompt.assemble import Turn

    chats = Chats(store)
    sid = chats.start(["haruhi", "kyon"])
    chats.save_turn(
        sid,
        ["haruhi", "kyon"],
        [
            ("user", Turn("旅人", "你们好")),
            ("assistant", Turn("凉宫春日", "你是谁？")),
            ("assistant", Turn("阿虚", "别理她。")),
        ],
    )
    data = json.loads(chats.export(sid, "json"))
    assert data["characters"] == ["haruhi", "kyon"]
    assert [m["speaker"] for m in data["messages"]] == ["旅人", "凉宫春日", "阿虚"]
    md = chats.export(sid, "md")
    assert md.startswith(f"# haruhi + kyon ({sid})") and "**阿虚**: 别理她。" in md
    with pytest.raises(InputError, match="unknown export format 'pdf'"):
        chats.export(sid, "pdf")


def test_a_missing_id_and_another_keys_id_are_refused_by_name(store) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = Chats(store), Chats(store, "key-other")
    sid = theirs.start(["xiaoman"])
    with pytest.raises(InputError, match=f"chat '{sid}' belongs to another server key"):
        mine.load(sid)
    with pytest.raises(InputError, match="no chat 'c-nope'.*rolecast chats"):
        mine.load("c-nope")
    assert theirs.load(sid).history == []


def test_a_locked_store_is_a_clear_error_and_loses_nothing(tmp_path, embedder, counter) -> None:  # type: ignore[no-untyped-def]
    from rolecast.prompt.assemble import Turn

    path = tmp_path / "db.sqlite3"
    chats = Chats(open_store(None, path, timeout=0.3))
    sid = chats.start(["xiaoman"])
    session = chat_session(embedder, counter)
    play(session, chats, sid, 2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing for a long time
    try:
        with pytest.raises(StorageError, match="is locked by another process"):
            chats.save_turn(sid, ["xiaoman"], [("user", Turn("旅人", "还在吗？"))], session.memory)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(chats.load(sid).history) == 4  # what was saved before is all there


def test_a_corrupt_store_is_named_and_left_as_it_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "server.sqlite3"
    junk = b"this is not a database " * 200
    path.write_bytes(junk)
    with pytest.raises(StorageError, match=r"server.sqlite3 is corrupt .*left as it is"):
        default_store({"ROLECAST_HOME": str(tmp_path)})
    assert path.read_bytes() == junk


def test_concurrent_turns_of_two_chats_do_not_mix(store) -> None:  # type: ignore[no-untyped-def]
    from rolecast.prompt.assemble import Turn

    chats = Chats(store)
    sids = [chats.start(["xiaoman"]) for _ in range(2)]

    def talk(sid: str) -> None:
        for i in range(10):
            chats.save_turn(
                sid,
                ["xiaoman"],
                [("user", Turn("旅人", f"{sid}-{i}")), ("assistant", Turn("林小满", "嗯"))],
            )

    threads = [threading.Thread(target=talk, args=(s,)) for s in sids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sid in sids:
        lines = [t.text for t in chats.load(sid).history[::2]]
        assert lines == [f"{sid}-{i}" for i in range(10)]


def test_sqlite_store_folder_that_cannot_be_made_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot make the folder"):
        SQLiteStore(tmp_path / "file" / "db.sqlite3")
