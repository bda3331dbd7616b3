"""The page's handlers in process: what each returns for the components, per tab state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rolecast.backends.base import LockedLLM
from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.package import save_character
from rolecast.errors import InputError, RolecastError, UnknownNameError
from rolecast.web.app import SKIP, WebApp
from rolecast.web.views import said

from conftest import filler, make_character, make_english_character


@pytest.fixture
def app(rolecast_home: Path) -> WebApp:
    save_character(make_character(), rolecast_home / "characters" / "xm")
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    a = WebApp("xm", backend="scripted")
    a._llms[("scripted", None)] = LockedLLM(ScriptedLLM())
    a.stream_interval = 0  # every piece is shown
    return a


def scripted(app: WebApp) -> ScriptedLLM:
    inner = app.llm().inner
    assert isinstance(inner, ScriptedLLM)
    return inner


def test_load_shows_the_default_character(app: WebApp) -> None:
    state, picked, portrait, header, role, chat, image, caption, canon, parts, stage = app.on_load(
        None
    )
    assert picked == "xm" and role == "旅人" and "### 小满" in header and "来碗面？" in header
    assert chat == [] and canon == "" and parts == [] and portrait is None
    assert stage == ""  # no avatar: no stage
    assert ("小满 (xm)", "xm") in app.characters() and ("Mia (mia)", "mia") in app.characters()


def test_a_shown_character_is_warmed_in_the_background(app: WebApp) -> None:
    import threading

    warmed: list[str] = []
    done = threading.Event()
    inner = scripted(app)

    def warm(prefix):  # type: ignore[no-untyped-def]
        warmed.append(prefix[0]["content"])
        done.set()
        return "built"

    inner.warm = warm  # type: ignore[method-assign]
    state = app.on_load(None)[0]
    assert done.wait(10) and "小满" in warmed[-1]  # the persona of the character on show
    done.clear()
    app.on_pick("mia", state)
    assert done.wait(10) and "Mia" in warmed[-1]  # and of the one picked next


def test_send_streams_views_and_clears_the_box(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("小满:「煤球又来了？看我的。」")
    views = list(app.on_send("那只黑猫又来偷鱼了！", "旅人", False, state))
    assert len(views) > 2
    box, chat, image, caption, canon, parts, stage = views[-1]
    assert box == "" and chat[-1]["role"] == "assistant"
    assert said(chat[-1]["content"]) == "煤球又来了？看我的。"
    assert '<b class="rc-name">小满</b>' in chat[-1]["content"]  # whose it is
    assert '<b class="rc-name">旅人</b>' in chat[-2]["content"]  # the user's role name
    # the canon as lines: the first scene sent is s002, its lines shown, one starred
    assert canon.index('data-scene="s002"') < canon.index('data-scene="s', canon.index("s002") + 5)
    assert "rc-best" in canon and "sent</span>" in canon and "scores</summary>" in canon
    assert dict(parts)["total"] > 0
    assert views[0][2:] == (SKIP,) * 5  # while streaming only the chat changes


def test_narrator_and_another_role(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("好。").enqueue("嗯。")
    list(app.on_send("雨下大了", "旅人", True, state))
    list(app.on_send("我也来一碗", "阿青", False, state))
    chat = app.view(app.tab(state))[0]
    assert said(chat[0]["content"]) == "雨下大了" and said(chat[2]["content"]) == "我也来一碗"
    assert "rc-msg-narration" in chat[0]["content"] and ">旁白</b>" in chat[0]["content"]
    assert '<b class="rc-name">阿青</b>' in chat[2]["content"]


def test_refused_messages_raise_before_anything_changes(app: WebApp) -> None:
    state = app.on_load(None)[0]
    for text in ("", "长" * 5000):
        with pytest.raises(InputError):
            next(app.on_send(text, "旅人", False, state))
    assert app.tab(state).messages == []


def test_switching_character_mid_reply_keeps_both_chats(app: WebApp) -> None:
    state = app.on_load(None)[0]
    parts = filler(4)
    scripted(app).enqueue(parts)
    stream = app.on_send("讲个故事", "旅人", False, state)
    next(stream)
    app.on_pick("mia", state)  # while the reply streams
    rest = list(stream)  # the old stream notices and ends without touching the new view
    assert rest == []
    xm = state["tabs"]["xm"]
    assert xm.messages[-1].stopped and xm.messages[-1].text.startswith(parts[0])
    assert len(xm.session.history) == 2  # what was said is kept
    scripted(app).enqueue("Hi there, traveller!")
    list(app.on_send("Hello", "Guest", False, state))
    back = app.on_pick("xm", state)
    assert said(back[4][0]["content"]) == "讲个故事"  # the first chat is still there


def test_regenerate_swipe_export_and_new(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("一号回答。").enqueue("二号回答。")
    list(app.on_send("你好", "旅人", False, state))
    chat = list(app.on_regenerate(state))[-1][1]
    assert said(chat[-1]["content"]) == "二号回答。" and "2/2" in chat[-1]["content"]
    chat = app.on_swipe(-1, state)[0]
    assert said(chat[-1]["content"]) == "一号回答。" and "1/2" in chat[-1]["content"]
    path = Path(app.on_export("json", state))
    assert json.loads(path.read_text("utf-8"))["messages"][1]["alternatives"] == [
        "一号回答。",
        "二号回答。",
    ]
    assert "**小满**: 一号回答。" in Path(app.on_export("md", state)).read_text("utf-8")
    assert app.on_new(state)[0] == []
    with pytest.raises(InputError, match="nothing to export"):
        app.on_export("json", state)


def test_settings_change_budgets_and_refuse_unknown_backends(app: WebApp) -> None:
    state = app.on_load(None)[0]
    msg = app.on_settings("scripted", "", 300, 200, state)
    assert "canon 300, history 200" in msg
    assert app.tab(state).session.budget.canon == 300
    with pytest.raises(UnknownNameError, match="unknown llm 'nope'"):
        app.on_settings("nope", "", 300, 200, state)
    with pytest.raises(InputError, match="negative"):
        app.on_settings("scripted", "", -1, 200, state)
    assert app.tab(state).session.budget.canon == 300  # unchanged by the failures


def test_the_big_five_sliders_dial_every_tab_from_the_next_reply(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("先说一句。")
    list(app.on_send("你好", "旅人", False, state))
    # O=5, N=1, the others the character's own (0)
    msg = app.on_settings("scripted", "", 300, 200, 5, 0, 0, 0, 1, state)
    assert msg.endswith("dials O=5 N=1")
    scripted(app).enqueue("再说一句。")
    list(app.on_send("还在吗", "旅人", False, state))
    sent = scripted(app).requests[-1][0]
    assert "想象力丰富" in sent[0]["content"] and "冷静、沉稳" in sent[0]["content"]
    assert "先说一句。" in json.dumps(sent, ensure_ascii=False)  # the conversation is kept
    app.on_pick("mia", state)  # a character opened afterwards gets the dials too
    assert app.tab(state).character.personality == {"O": 5, "N": 1}
    assert app.tab(state).base.personality == {}
    app.on_pick("xm", state)
    app.on_settings("scripted", "", 300, 200, 0, 0, 0, 0, 0, state)  # all back to 0
    scripted(app).enqueue("第三句。")
    list(app.on_send("好", "旅人", False, state))
    assert "你的脾性" not in scripted(app).requests[-1][0][0]["content"]
    with pytest.raises(InputError, match="trait level for E"):
        app.on_settings("scripted", "", 300, 200, 0, 0, 2.5, 0, 0, state)


def test_two_tabs_are_two_sessions(app: WebApp) -> None:
    a, b = app.on_load(None)[0], app.on_load(None)[0]
    scripted(app).enqueue("给A的。")
    list(app.on_send("我是A", "旅人", False, a))
    assert app.tab(b).messages == [] and len(app.tab(a).messages) == 2


@pytest.mark.needs("pypinyin", extra="voice")
def test_voice_toggle_speaks_each_reply(app: WebApp) -> None:
    import shutil

    if not shutil.which("espeak-ng"):
        pytest.skip("needs espeak-ng")
    from rolecast.voice.wav import read_wav

    state = app.on_load(None)[0]
    status = app.on_voice(True, state)
    assert "espeak" in status and "cmn-latn-pinyin" in status
    scripted(app).enqueue("小满:「（擦了擦手）煤球又来了？看我的。」")
    views = list(app.on_send("那只黑猫又来偷鱼了！", "旅人", False, state))
    chat = views[-1][1]
    assert said(chat[-2]["content"]) == "（擦了擦手）煤球又来了？看我的。"
    assert '<span class="rc-narr">（擦了擦手）</span>' in chat[-2]["content"]
    first = chat[-1]["content"]["path"]
    audio = read_wav(first)
    assert audio.sample_rate == 22050 and audio.duration > 1.0 and audio.rms() > 0.01
    assert Path(first).parent == app.audio_dir
    # the mouth's timeline beside it, as long as the audio, with the reply's face
    timeline = json.loads(Path(first).with_suffix(".mouth.json").read_text("utf-8"))
    assert len(timeline["open"]) == int(np.ceil(audio.duration * timeline["fps"]))
    assert "open" in timeline["shapes"] and timeline["expression"] is None
    assert views[-1][-1] is SKIP  # no avatar: the stage is left as it was

    # a regenerated reply gets its own audio; swiping back shows the first one's
    scripted(app).enqueue("嗯。")
    chat = list(app.on_regenerate(state))[-1][1]
    second = chat[-1]["content"]["path"]
    assert second != first and read_wav(second).duration < audio.duration
    assert app.on_swipe(-1, state)[0][-1]["content"]["path"] == first

    # all narration: a notice instead of audio
    scripted(app).enqueue("（笑而不语）")
    chat = list(app.on_send("真的？", "旅人", False, state))[-1][1]
    assert "not spoken: nothing speakable" in chat[-1]["content"]

    assert app.on_voice(False, state) == "replies are not spoken"
    scripted(app).enqueue("好。")
    chat = list(app.on_send("再来一碗", "旅人", False, state))[-1][1]
    assert said(chat[-1]["content"]) == "好。"


def test_a_slow_index_load_holds_up_no_other_character_or_model(
    app: WebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import rolecast.web.app as web_app

    real, loads = web_app.load_index, []
    started, release = threading.Event(), threading.Event()

    def load_index(character, embedder):  # type: ignore[no-untyped-def]
        loads.append(character.name)
        if character.name == "Mia":
            started.set()
            assert release.wait(10)
        return real(character, embedder)

    monkeypatch.setattr(web_app, "load_index", load_index)
    got: list[object] = []
    tabs = [threading.Thread(target=lambda: got.append(app.index("mia"))) for _ in range(2)]
    tabs[0].start()
    try:
        assert started.wait(10)
        tabs[1].start()  # a second tab asks for Mia while she loads: it waits for that load
        fast: list[object] = []
        other = threading.Thread(target=lambda: fast.append((app.index("xm"), app.llm())))
        other.start()
        other.join(10)
        assert fast and not got  # 小满 and the model came while Mia was still loading
    finally:
        release.set()
    for t in tabs:
        t.join(10)
    assert len(got) == 2 and got[0] is got[1]  # one index, loaded once, shared by both tabs
    assert loads == ["Mia", "小满"]


def test_a_group_scene_from_the_scene_picker(app: WebApp) -> None:
    state = app.on_load(None)[0]
    inner = scripted(app)
    out = app.on_scene(["yunzhou", "shiwen"], state)
    assert state["current"] == "xm+yunzhou+shiwen" and "### 小满 · 云舟 · 石稳" in out[2]
    inner.enqueue("石稳，你说。").enqueue("没什么好说的。")
    list(app.on_send("云舟和石稳，你们怎么看？", "", False, state))
    chat = app.chat_view(app.tab(state))
    assert [said(m["content"]) for m in chat] == [
        "云舟和石稳，你们怎么看？",
        "石稳，你说。",
        "没什么好说的。",
    ]
    # each answer's bubble says whose it is, and its canon panel shows its speaker's scenes
    assert '<b class="rc-name">云舟</b>' in chat[1]["content"]
    assert '<b class="rc-name">石稳</b>' in chat[2]["content"]
    tab = app.tab(state)
    shiwen = tab.scene.sessions["shiwen"].character
    canon = app.canon_view(tab)
    assert all(
        f'data-scene="{row["scene"]}"' in canon and row["scene"] in {s.id for s in shiwen.scenes}
        for row in tab.messages[2].canon
        if row["kind"] == "canon"
    )
    assert tab.messages[1].canon and tab.messages[1].canon[0]["scene"] in {
        s.id for s in tab.scene.sessions["yunzhou"].character.scenes
    }
    with pytest.raises(InputError, match="each answer stands"):
        list(app.on_regenerate(state))
    # the scene is saved with its speakers; the one-to-one chat is still there
    from rolecast.chats import Chats, default_store

    store = default_store()
    saved = Chats(store).load(tab.session_id)
    store.close()
    assert saved.characters == ["xm", "yunzhou", "shiwen"]
    assert [t.speaker for t in saved.history] == ["旅人", "云舟", "石稳"]
    app.on_scene([], state)
    assert state["current"] == "xm" and app.tab(state).messages == []
    with pytest.raises(InputError, match="no character 'ghost'"):
        app.on_scene(["ghost"], state)


def test_a_card_exported_from_the_page_imports_back_beside_it(
    app: WebApp, tmp_path: Path, rolecast_home: Path
) -> None:
    state = app.on_load(None)[0]
    app.on_pick("mia", state)
    card = Path(app.on_export_card(state))
    (rolecast_home / "characters" / "mia-2").mkdir()  # a folder that is no package: kept
    assert card.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and card.name == "mia.card.png"
    assert card.is_relative_to(app.export_dir)  # Gradio copies it out for the download
    note, gallery, choices, cid = app.on_import(str(card), state)
    # mia is taken: the import gets a free id and says so; nothing is written over
    assert cid == "mia-3" and "imported Mia as mia-3" in note and "'mia' was taken" in note
    assert ("Mia (mia-3)", "mia-3") in choices and 'data-id="mia-3"' in gallery
    assert 'class="rc-card rc-current" data-id="mia-3"' in gallery
    assert any(p.endswith("mia-3/images") for p in app.allowed_paths())
    assert list((rolecast_home / "characters" / "mia-2").iterdir()) == []
    app.on_pick("mia-3", state)  # and it can be picked at once
    assert app.tab(state).character.name == "Mia"
    # a file that is no character: a clear error, nothing added
    bad = tmp_path / "notes.txt"
    bad.write_text("hello", "utf-8")
    with pytest.raises(RolecastError, match="cannot tell the format"):
        app.on_import(str(bad), state)
    assert len(app.characters()) == len(choices)
    with pytest.raises(InputError, match="no file"):
        app.on_import(None, state)


def test_the_gallery_and_the_status_line(app: WebApp) -> None:
    state = app.on_load(None)[0]
    gallery = app.gallery_view(state)
    assert 'data-id="xm"' in gallery and 'data-id="mia"' in gallery
    assert 'class="rc-card rc-current" data-id="xm"' in gallery
    assert app.on_gallery_pick(" mia ") == "mia"
    import time

    deadline = time.monotonic() + 10
    while not app.status(state)[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.status(state) == ("小满 is ready", True)


def test_a_reloaded_page_goes_on_with_the_chat_its_browser_had(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("小满:「八文一碗。」")
    list(app.on_send("面多少钱？", "旅人", False, state))
    kept = app.remembered(state, None, user="ann")
    sid = app.tab(state).session_id
    assert sid and kept["chats"]["xm"]["id"] == sid and len(kept["chats"]["xm"]["seal"]) == 64
    # a reload: a new page state, the browser's memory given back, the same user
    again = app.on_load(None, kept, user="ann")
    chat = again[5]
    assert [said(m["content"]) for m in chat] == ["面多少钱？", "八文一碗。"]
    tab = app.tab(again[0])
    assert tab.session_id == sid and tab.saved == 2
    scripted(app).enqueue("小满:「不讲价。」")
    list(app.on_send("便宜点？", "旅人", False, again[0]))
    sent = scripted(app).requests[-1][0]
    assert any("面多少钱" in m["content"] for m in sent)  # the history went on
    assert len(app.chats().load(sid).history) == 4  # and the same chat was saved on
    app.on_new(again[0])
    assert app.remembered(again[0], kept, user="ann") == {"chats": {}}


def test_a_chat_id_the_browser_did_not_get_from_this_server_is_not_resumed(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("小满:「八文一碗。」")
    list(app.on_send("面多少钱？", "旅人", False, state))
    kept = app.remembered(state, None, user="ann")
    sid = kept["chats"]["xm"]["id"]
    assert app.on_load(None, kept, user="bob")[5] == []  # another user's: sealed for ann
    forged = {"chats": {"xm": {"id": sid, "seal": "0" * 64}}}
    assert app.on_load(None, forged, user="ann")[5] == []
    bare = {"chats": {"xm": sid}}  # the bare id, as a browser could write it
    assert app.on_load(None, bare, user="ann")[5] == []
    other = {"chats": {"mia": kept["chats"]["xm"]}}  # sealed for another character
    loaded = app.on_load(None, other, user="ann")[0]
    assert app.on_pick("mia", loaded, other, user="ann")[4] == []
    gone = {"chats": {"xm": {"id": "nope", "seal": app._seal("ann", "xm", "nope")}}}
    assert app.on_load(None, gone, user="ann")[5] == []


def test_one_chat_resumed_in_two_tabs_keeps_both_tabs_turns(app: WebApp) -> None:
    state = app.on_load(None)[0]
    scripted(app).enqueue("小满:「八文一碗。」")
    list(app.on_send("面多少钱？", "旅人", False, state))
    kept = app.remembered(state, None)
    sid = kept["chats"]["xm"]["id"]
    one, two = app.on_load(None, kept)[0], app.on_load(None, kept)[0]
    scripted(app).enqueue("小满:「一号。」").enqueue("小满:「二号。」")
    list(app.on_send("第一个标签", "旅人", False, one))
    list(app.on_send("第二个标签", "旅人", False, two))
    first, second = app.tab(one), app.tab(two)
    assert first.session_id == sid  # the first to write goes on in the chat
    assert second.session_id != sid  # the second finds it changed: a chat of its own
    texts = [t.text for t in app.chats().load(sid).history]
    assert texts == ["面多少钱？", "八文一碗。", "第一个标签", "一号。"]
    forked = [t.text for t in app.chats().load(second.session_id).history]
    assert forked == ["面多少钱？", "八文一碗。", "第二个标签", "二号。"]


def test_the_browser_secret_is_made_once_and_kept_private(rolecast_home: Path) -> None:
    first = WebApp.browser_secret()
    assert len(first) == 64 and WebApp.browser_secret() == first
    path = rolecast_home / "web-secret"
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("short", "ascii")  # a damaged one is made again
    assert WebApp.browser_secret() not in (first, "short")


def test_new_chat_clicked_as_a_reply_ends_waits_for_it(app: WebApp) -> None:
    import threading

    state = app.on_load(None)[0]
    scripted(app).enqueue("小满:「汤刚滚，面刚醒，坐下先喝口热的。」")
    views = app.on_send("来碗面", "旅人", False, state)
    next(views)  # the reply is coming
    cleared = threading.Thread(target=app.on_new, args=(state,))
    cleared.start()
    rest = list(views)  # the turn ends cleanly (it used to fail on a cleared session)
    cleared.join(10)
    assert not cleared.is_alive() and rest
    tab = app.tab(state)
    assert tab.messages == [] and tab.session.history == [] and tab.session.last is None
    scripted(app).enqueue("小满:「好。」")
    list(app.on_send("再来", "旅人", False, state))  # and the next chat works
    assert [said(m["content"]) for m in app.chat_view(tab)] == ["再来", "好。"]


def test_new_chat_gives_up_on_a_turn_that_has_not_begun(
    app: WebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolecast.web import chat as chat_module

    state = app.on_load(None)[0]
    tab = app.tab(state)
    monkeypatch.setattr(chat_module, "NEW_CHAT_WAIT_S", 0.05)
    tab._turn.acquire()  # a turn holding the tab (its model still loading)
    try:
        with pytest.raises(InputError, match="press Stop, then New chat"):
            app.on_new(state)
    finally:
        tab._turn.release()
    app.on_new(state)  # once it is over, New chat goes through


def test_a_scene_has_no_loading_line(app: WebApp) -> None:
    state = app.on_load(None)[0]
    app.on_scene(["mia"], state)
    assert app.status(state) == ("", True)
