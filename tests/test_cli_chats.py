"""`rolecast chat` saves every chat; `chats` lists them; `--resume` and `--export` read them
back; `/remember`, `/memories` and `/forget` manage the memory; a group scene resumes too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli import scripted, typed

from rolecast.cli.main import main


def saved_id(err: str) -> str:
    found = re.search(r"saved as (c\d{8}-[0-9a-f]{6})", err)
    assert found, err
    return found[1]


def test_a_chat_is_saved_listed_resumed_and_exported(monkeypatch, capsys, tmp_path: Path) -> None:
    scripted(monkeypatch, "坐，面马上好。", "煤球？它在灶台边睡着呢。")
    typed(monkeypatch, "来一碗面", "/remember 我不吃葱", "/memories", "你的猫呢？", "/quit")
    assert main(["chat", "xiaoman"]) == 0
    out, err = capsys.readouterr()
    assert "(pinned as 1" in out and "1. 我不吃葱" in out
    sid = saved_id(err)

    assert main(["chats"]) == 0
    listed = capsys.readouterr().out
    assert sid in listed and "xiaoman" in listed and "4 msgs" in listed

    llm = scripted(monkeypatch, "记着呢，不放葱。")
    typed(monkeypatch, "今天的面别放那个", "/quit")
    assert main(["chat", "--resume", sid]) == 0
    out, err = capsys.readouterr()
    assert "林小满: 坐，面马上好。" in out  # the chat so far is shown
    assert saved_id(err) == sid
    request = llm.requests[0][0]
    assert "来一碗面" in str(request) and "煤球？它在灶台边睡着呢。" in str(request)
    assert "- 我不吃葱" in request[0]["content"]  # classic order: in the system message

    assert main(["chat", "--export", sid, "--format", "json", "-o", str(tmp_path / "c.json")]) == 0
    data = json.loads((tmp_path / "c.json").read_text("utf-8"))
    assert [m["content"] for m in data["messages"]][-2:] == ["今天的面别放那个", "记着呢，不放葱。"]
    assert data["memory"]["pins"] == ["我不吃葱"] and len(data["messages"]) == 6
    assert main(["chat", "--export", sid]) == 0
    assert "**林小满**: 记着呢，不放葱。" in capsys.readouterr().out


def test_forget_and_no_save(monkeypatch, capsys) -> None:
    scripted(monkeypatch, "好。")
    typed(monkeypatch, "/remember 我怕黑", "/forget 1", "/forget 3", "/memories", "嗯嗯嗯", "/quit")
    assert main(["chat", "xiaoman", "--no-save"]) == 0
    out, err = capsys.readouterr()
    assert "(forgotten: 我怕黑)" in out and "nothing pinned" in out
    assert "no pinned fact '3'" in err and "saved as" not in err
    assert main(["chats"]) == 0
    assert "no saved chats yet" in capsys.readouterr().out


def test_resume_errors_are_clear(monkeypatch, capsys) -> None:
    scripted(monkeypatch, "好。")
    assert main(["chat", "xiaoman", "--once", "你好"]) == 0
    sid = saved_id(capsys.readouterr().err)
    assert main(["chat", "--resume", "c20000101-000000"]) == 1
    assert "no chat 'c20000101-000000'" in capsys.readouterr().err
    assert main(["chat", "shiwen", "--resume", sid]) == 1
    assert f"chat {sid} is with xiaoman, not shiwen" in capsys.readouterr().err
    assert main(["chat", "--resume", sid, "--no-save"]) == 1
    assert "leave out --no-save" in capsys.readouterr().err


def test_another_keys_session_cannot_be_resumed(monkeypatch, capsys) -> None:
    from rolecast.chats import Chats, default_store

    store = default_store()
    sid = Chats(store, "key-of-a-server-client").start(["xiaoman"])
    store.close()
    scripted(monkeypatch)
    assert main(["chat", "--resume", sid]) == 1
    assert "belongs to another server key" in capsys.readouterr().err


def test_a_group_scene_is_saved_and_resumed_with_its_speakers(monkeypatch, capsys) -> None:
    llm = scripted(monkeypatch, "石稳在吗？", "在。")
    typed(monkeypatch, "/next yunzhou 你们俩谁先说？", "/next shiwen", "/quit")
    assert main(["chat", "yunzhou", "shiwen"]) == 0
    sid = saved_id(capsys.readouterr().err)
    assert main(["chats"]) == 0
    assert "yunzhou+shiwen" in capsys.readouterr().out

    llm.enqueue("我先走了。")
    typed(monkeypatch, "/next shiwen 然后呢？", "/quit")
    assert main(["chat", "--resume", sid]) == 0
    out, err = capsys.readouterr()
    assert "云舟: 石稳在吗？" in out and saved_id(err) == sid
    assert "石稳在吗？" in str(llm.requests[-1][0])  # the scene so far is in the prompt
    data = json.loads(_export(sid, capsys))
    assert [m["speaker"] for m in data["messages"]] == ["访客", "云舟", "石稳", "访客", "石稳"]
    assert [m["role"] for m in data["messages"]] == [
        "user",
        "assistant",
        "assistant",
        "user",
        "assistant",
    ]


def _export(sid: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["chat", "--export", sid, "--format", "json"]) == 0
    return capsys.readouterr().out


def test_a_corrupt_store_stops_the_chat_before_it_starts(
    monkeypatch, capsys, rolecast_home: Path
) -> None:
    (rolecast_home / "server.sqlite3").write_bytes(b"garbage" * 500)
    scripted(monkeypatch, "好。")
    assert main(["chat", "xiaoman", "--once", "你好"]) == 1
    err = capsys.readouterr().err
    assert "server.sqlite3 is corrupt" in err and "left as it is" in err
    assert (rolecast_home / "server.sqlite3").read_bytes() == b"garbage" * 500


def test_prompt_shows_a_saved_chats_memory(monkeypatch, capsys) -> None:
    from test_memory import ASK, FACT, long_talk

    from rolecast.chats import Chats, default_store
    from rolecast.memory import Memory
    from rolecast.retrieval.embedders import get_embedder

    store = default_store()
    chats = Chats(store)
    sid = chats.start(["xiaoman"])
    talk = long_talk(120)
    memory = Memory(get_embedder("use"))
    memory.index(talk)
    memory.pin("我叫阿青")
    chats.save_turn(
        sid,
        ["xiaoman"],
        [("user" if k % 2 == 0 else "assistant", t) for k, t in enumerate(talk)],
        memory,
    )
    store.close()
    assert main(["prompt", "xiaoman", ASK, "--resume", sid, "--backend", "echo"]) == 0
    out = capsys.readouterr().out
    section = out.split("----- from memory", 1)[1]
    assert "1 pinned facts" in section and f"* turn 3\t旅人: {FACT}" in section
    assert main(["prompt", "xiaoman", ASK, "--resume", sid, "--backend", "echo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"index": 2, "speaker": "旅人", "text": FACT} in data["memory"]
    assert data["parts"]["memory"] > 0
