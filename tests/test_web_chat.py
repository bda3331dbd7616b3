"""The web page's conversation logic, in process (no browser, no Gradio)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.model import Line, Scene
from rolecast.character.package import load_character, save_character
from rolecast.errors import BackendError, InputError
from rolecast.retrieval.index import load_index
from rolecast.web.chat import MAX_CHARS, ChatTab

from conftest import filler, make_character


def drain(it) -> list:
    return list(it)


@pytest.fixture
def tab(tmp_path: Path, embedder) -> ChatTab:
    c = make_character()
    c.scenes.append(
        Scene("frames", "frames", (Line("小满", "煤球！给我把鱼放下！", image="images/cat.png"),))
    )
    c.portrait = "images/portrait.png"
    save_character(c, tmp_path / "pkg", images={"cat.png": b"cat", "portrait.png": b"p"})
    c = load_character(tmp_path / "pkg")
    return ChatTab(c, load_index(c, embedder), ScriptedLLM())


def test_send_streams_and_records_the_turn(tab: ChatTab) -> None:
    said = "汤刚滚，坐吧。今晚的面多放了一把葱，骨头汤熬了一下午，你来得正是时候。"
    tab.session.llm.enqueue(f"小满:「{said}」")
    states = [m.text for m in tab.send("还有面吗？")]
    assert len(states) > 2 and states[-1] == said  # grew clause by clause
    assert [m.role for m in tab.messages] == ["user", "assistant"]
    reply = tab.messages[-1]
    assert reply.canon and {"scene", "score", "dense", "bm25", "sent"} <= set(reply.canon[0])
    assert reply.parts["total"] > 0
    assert [t.speaker for t in tab.session.history] == ["旅人", "小满"]
    assert tab.shown_image()[0].endswith("portrait.png")  # no frame for this reply


def test_a_classic_line_shows_its_frame(tab: ChatTab) -> None:
    tab.session.llm.enqueue("煤球！给我把鱼放下！")
    drain(tab.send("那只黑猫又来了"))
    image, caption = tab.shown_image()
    assert image is not None and image.endswith("images/cat.png") and "cat" in caption


def test_missing_image_file_gives_a_notice_and_the_portrait(tab: ChatTab) -> None:
    root = Path(tab.character.extra["_root"])
    (root / "images" / "cat.png").unlink()
    tab.session.llm.enqueue("煤球！给我把鱼放下！")
    drain(tab.send("那只黑猫又来了"))
    assert "images/cat.png is missing" in tab.messages[-1].notice
    assert tab.shown_image()[0].endswith("portrait.png")


def test_regenerate_keeps_alternatives_and_swipe_moves_history(tab: ChatTab) -> None:
    tab.session.llm.enqueue("第一个回答。").enqueue("第二个回答。")
    drain(tab.send("你好"))
    drain(tab.regenerate())
    reply = tab.messages[-1]
    assert reply.alternatives == ["第一个回答。", "第二个回答。"] and reply.choice == 1
    assert len(tab.messages) == 2 and len(tab.session.history) == 2
    assert tab.session.history[-1].text == "第二个回答。"
    tab.swipe(-1)
    assert reply.text == "第一个回答。" and tab.session.history[-1].text == "第一个回答。"
    tab.swipe(-1)  # stays at the first
    assert reply.choice == 0
    # the regenerated request did not carry the first answer in its history
    assert "第一个回答" not in json.dumps(tab.session.llm.requests[1][0], ensure_ascii=False)


def test_edit_last_replaces_the_line_and_answers_again(tab: ChatTab) -> None:
    tab.session.llm.enqueue("答一。").enqueue("答二。")
    drain(tab.send("问一"))
    drain(tab.edit_last("问二"))
    assert [m.text for m in tab.messages] == ["问二", "答二。"]
    assert [t.text for t in tab.session.history] == ["问二", "答二。"]


def test_stop_keeps_what_was_said(tab: ChatTab) -> None:
    parts = filler(5)  # longer than what the reply cleaner holds back
    tab.session.llm.enqueue(parts)
    seen = []
    for m in tab.send("说个长的"):
        seen.append(m.text)
        if len(seen) == 2:
            tab.stop()
    reply = tab.messages[-1]
    assert reply.stopped and reply.text == seen[1] and len(seen) == 3
    assert parts[4] not in reply.text
    assert tab.session.history[-1].text == reply.text and not tab.streaming
    tab.session.llm.enqueue("好。")
    drain(tab.send("继续"))  # the tab is usable after a stop
    assert len(tab.session.history) == 4


def test_a_closed_page_mid_reply_keeps_the_partial_turn(tab: ChatTab) -> None:
    parts = filler(3)
    tab.session.llm.enqueue(parts)
    gen = tab.send("说")
    first = next(gen).text
    gen.close()
    assert first and parts[2] not in first
    assert tab.messages[-1].text == first and tab.session.history[-1].text == first
    assert not tab.streaming


@pytest.mark.parametrize(
    "text, message", [("", "empty message"), ("   ", "empty"), ("长" * (MAX_CHARS + 1), "too long")]
)
def test_bad_messages_are_refused_and_nothing_changes(
    tab: ChatTab, text: str, message: str
) -> None:
    tab.session.llm.enqueue("好。")
    drain(tab.send("先说一句"))
    before = [m.text for m in tab.messages]
    with pytest.raises(InputError, match=message):
        drain(tab.send(text))
    assert [m.text for m in tab.messages] == before and len(tab.session.history) == 2


def test_a_failed_reply_takes_nothing_from_the_chat(tab: ChatTab) -> None:
    tab.session.llm.enqueue("好。").enqueue([BackendError("server went away")])
    drain(tab.send("一"))
    with pytest.raises(BackendError):
        drain(tab.send("二"))
    assert [m.text for m in tab.messages] == ["一", "好。"]
    assert [t.text for t in tab.session.history] == ["一", "好。"]
    tab.session.llm.enqueue([BackendError("again")])
    with pytest.raises(BackendError):
        drain(tab.regenerate())
    assert tab.messages[-1].alternatives == ["好。"]
    assert [t.text for t in tab.session.history] == ["一", "好。"]


def test_narrator_lines_and_exports(tab: ChatTab) -> None:
    tab.session.llm.enqueue("雨好大。").enqueue("再来。")
    drain(tab.send("外面下起了雨", as_role="旁白"))
    drain(tab.regenerate())
    assert tab.messages[0].speaker == "旁白"
    assert tab.session.llm.requests[1][0][-1]["content"].endswith("旁白:外面下起了雨")
    data = json.loads(tab.export_json())
    assert data["character"]["name"] == "小满"
    assert [m["text"] for m in data["messages"]] == ["外面下起了雨", "再来。"]
    md = tab.export_markdown()
    assert "**旁白**: 外面下起了雨" in md and "reply 2 of 2" in md
    tab.new_chat()
    assert not tab.messages and not tab.session.history


def saved_tab(tab: ChatTab) -> ChatTab:
    from rolecast.chats import Chats, default_store

    tab.chats = Chats(default_store())
    return tab


def test_the_page_saves_the_chat_as_it_is_shown(tab: ChatTab) -> None:
    saved_tab(tab)
    llm = tab.session.llm
    llm.enqueue("坐，面马上好。").enqueue("再来一碗？").enqueue("那就两碗。")
    drain(tab.send("来碗面"))
    assert tab.session_id is not None
    chats = tab.chats
    assert [t.text for t in chats.load(tab.session_id).history] == ["来碗面", "坐，面马上好。"]
    drain(tab.regenerate())  # a new reply replaces the old in the store
    assert [t.text for t in chats.load(tab.session_id).history] == ["来碗面", "再来一碗？"]
    tab.swipe(-1)  # back to the first: the store follows
    assert [t.text for t in chats.load(tab.session_id).history] == ["来碗面", "坐，面马上好。"]
    drain(tab.edit_last("来两碗面"))
    saved = chats.load(tab.session_id)
    assert [t.text for t in saved.history] == ["来两碗面", "那就两碗。"]
    assert saved.roles == ["user", "assistant"]
    # the vectors kept are those of the turns as they are now
    vectors = chats.store.vectors("local", tab.session_id, "use")
    assert [seq for seq, _ in vectors] == [1, 2]
    first = tab.session_id
    tab.new_chat()
    llm.enqueue("又来了？")
    drain(tab.send("我又来了"))
    assert tab.session_id != first and len(chats.list()) == 2


def test_the_canon_panel_marks_what_came_from_memory(tab: ChatTab) -> None:
    from test_memory import ASK, FACT, long_talk

    from rolecast.prompt.assemble import Turn

    history = [Turn("小满" if t.speaker == "林小满" else t.speaker, t.text) for t in long_talk(120)]
    tab.session.history = history
    tab.session.llm.enqueue("煤球啊。")
    drain(tab.send(ASK))
    rows = [r for r in tab.messages[-1].canon if r["title"].startswith("from memory:")]
    assert rows and rows[0]["title"] == f"from memory: 旅人: {FACT}" and rows[0]["sent"]
    assert tab.messages[-1].parts["memory"] > 0
