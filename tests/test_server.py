"""The OpenAI-compatible server: in process for the rules, on 127.0.0.1 with the official SDK
and a real model for the rest, and killed with SIGKILL mid-reply for crash safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TestClient = pytest.importorskip("starlette.testclient", reason="needs the server extra").TestClient

from servers import free_port, uvicorn_thread

from rolecast.backends.base import LockedLLM
from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.package import save_character
from rolecast.errors import InputError
from rolecast.server.app import create_app
from rolecast.server.keys import Keys, RateLimiter, check_bind
from rolecast.server.run import build_state

from conftest import filler, make_character, make_english_character

KEY_A, KEY_B = "key-aaaa-1111", "key-bbbb-2222"


@pytest.fixture
def chars(rolecast_home: Path) -> Path:
    save_character(make_character(), rolecast_home / "characters" / "xm")
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    return rolecast_home


def make_client(home: Path, keys=(), rate: int = 0, max_body: int = 1 << 20):  # type: ignore[no-untyped-def]
    state = build_state(api_keys=keys, backend="scripted", rate=rate, max_body=max_body)
    llm = ScriptedLLM()
    state._llms[None] = LockedLLM(llm)
    return TestClient(create_app(state)), llm, state


def ask(client, text: str, key: str | None = None, **body):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"model": "xm", "messages": [{"role": "user", "content": text}], **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


def test_models_list_the_characters(chars: Path) -> None:
    client, _, _ = make_client(chars)
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert {"xm", "mia", "xiaoman"} <= set(ids)


def test_stateless_request_uses_the_client_history(chars: Path) -> None:
    client, llm, _ = make_client(chars)
    llm.enqueue("小满:「两文钱。」")
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "xm",
            "messages": [
                {"role": "system", "content": "ignored: the character's persona is used"},
                {"role": "user", "content": "伞破了"},
                {"role": "assistant", "content": "拿来我补。"},
                {"role": "user", "content": "多少钱？"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "两文钱。"}
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    sent = llm.requests[0][0]
    assert [m["content"] for m in sent[1:3]] == ["伞破了", "拿来我补。"]
    assert "ignored" not in json.dumps(sent, ensure_ascii=False)
    assert float(r.headers["X-Rolecast-Prepare-Ms"]) > 0


def test_a_request_sets_big_five_dials_for_its_turn_only(chars: Path) -> None:
    from rolecast.character.personality import dial_text

    client, llm, _ = make_client(chars)
    llm.enqueue("行。")
    llm.enqueue("好。")
    r = ask(client, "你好", personality={"O": "high", "neuroticism": 1})
    assert r.status_code == 200, r.text
    system = llm.requests[-1][0][0]["content"]
    assert dial_text({"O": 5, "N": 1}, "zh") in system  # in the persona's system message
    assert ask(client, "你好").status_code == 200
    assert "你的脾性" not in llm.requests[-1][0][0]["content"]  # the next request: none
    for bad, says in (
        ({"O": "loud"}, "a trait level for O"),
        ({"Q": 3}, "unknown Big Five factor 'Q'"),
        ("high", "must be an object"),
    ):
        r = ask(client, "你好", personality=bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == "personality", r.text
        assert says in r.json()["error"]["message"]


def test_personas_are_warmed_at_start_and_before_each_reply(chars: Path) -> None:
    client, llm, state = make_client(chars)
    warmed: list[str] = []
    llm.warm = lambda prefix: warmed.append(prefix[0]["content"]) or "built"  # type: ignore[method-assign]
    with client:  # start-up: every character's persona, in the background
        assert state.warming is not None
        state.warming.join(10)
        assert any("小满" in w for w in warmed) and any("Mia" in w for w in warmed)
        warmed.clear()
        llm.enqueue("小满:「两文钱。」")
        r = client.post(
            "/v1/chat/completions",
            json={"model": "xm", "messages": [{"role": "user", "content": "多少钱？"}]},
        )
        assert r.status_code == 200, r.text
        assert len(warmed) == 1 and "小满" in warmed[0]  # through the request's timed view


def test_session_mode_keeps_the_history_on_the_server(chars: Path) -> None:
    client, llm, state = make_client(chars)
    llm.enqueue("坐。").enqueue("面来了。")
    assert ask(client, "你好", user="s1").status_code == 200
    r = client.post(
        "/v1/chat/completions",
        json={"model": "xm", "messages": [{"role": "user", "content": "面呢？"}]},
        headers={"X-Session-Id": "s1"},
    )
    assert r.json()["choices"][0]["message"]["content"] == "面来了。"
    assert [m["content"] for m in llm.requests[1][0][1:3]] == ["你好", "坐。"]
    got = client.get("/v1/sessions/s1").json()
    assert [m["content"] for m in got["messages"]] == ["你好", "坐。", "面呢？", "面来了。"]
    r = ask(client, "x", user="s1", model="mia")
    assert r.status_code == 409 and r.json()["error"]["code"] == "session_character_mismatch"


def test_streaming_sends_openai_chunks_and_usage(chars: Path) -> None:
    client, llm, _ = make_client(chars)
    llm.enqueue("汤刚滚，面刚醒，坐下先喝口热的吧。")
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "xm",
            "messages": [{"role": "user", "content": "冷死了"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "汤刚滚，面刚醒，坐下先喝口热的吧。"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_keys_isolate_sessions(chars: Path) -> None:
    client, llm, _ = make_client(chars, keys=[KEY_A, KEY_B])
    assert ask(client, "hi").status_code == 401
    assert ask(client, "hi", key="wrong-key-123").json()["error"]["code"] == "invalid_api_key"
    llm.enqueue("A的秘密。").enqueue("B的回答。")
    assert ask(client, "我的暗号是青雾", key=KEY_A, user="s").status_code == 200
    # B names A's session: it cannot read it ...
    r = client.get("/v1/sessions/s", headers={"Authorization": f"Bearer {KEY_B}"})
    assert r.status_code == 404
    # ... nor continue it: B's "s" is B's own, empty session
    assert ask(client, "我的暗号是什么？", key=KEY_B, user="s").status_code == 200
    assert "青雾" not in json.dumps(llm.requests[1][0], ensure_ascii=False)
    a = client.get("/v1/sessions/s", headers={"Authorization": f"Bearer {KEY_A}"}).json()
    assert [m["content"] for m in a["messages"]] == ["我的暗号是青雾", "A的秘密。"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "JSON object"),
        (json.dumps({"model": "xm", "messages": []}).encode(), 400, "non-empty list"),
        (
            json.dumps(
                {"model": "nobody", "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            404,
            "does not exist",
        ),
        (
            json.dumps({"model": "xm", "messages": [{"role": "robot", "content": "x"}]}).encode(),
            400,
            "role must be",
        ),
        (
            json.dumps(
                {
                    "model": "xm",
                    "messages": [{"role": "user", "content": "x"}],
                    "max_tokens": "many",
                }
            ).encode(),
            400,
            "'max_tokens' must be a number",
        ),
        (
            json.dumps({"model": "xm", "messages": [{"role": "user", "content": "  "}]}).encode(),
            400,
            "empty message",
        ),
    ],
)
def test_bad_requests_get_clear_errors(chars: Path, body: bytes, status: int, message: str) -> None:
    client, _, _ = make_client(chars)
    r = client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status and message in r.json()["error"]["message"], r.text


def test_size_and_rate_limits(chars: Path) -> None:
    client, llm, _ = make_client(chars, max_body=2000, rate=3)
    r = ask(client, "长" * 3000)
    assert r.status_code == 413 and "over 2000 bytes" in r.json()["error"]["message"]
    for _ in range(2):
        llm.enqueue("好。")
        assert ask(client, "一").status_code == 200
    r = ask(client, "再来")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_no_keys_means_loopback_only() -> None:
    check_bind("127.0.0.1", Keys())
    check_bind("::1", Keys())
    check_bind("0.0.0.0", Keys([KEY_A]))
    with pytest.raises(InputError, match="refusing to listen on 0.0.0.0 without API keys"):
        check_bind("0.0.0.0", Keys())
    with pytest.raises(InputError, match="at least 8"):
        Keys(["short"])


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=60)
    assert all(limiter.check("k") == 0 for _ in range(60))
    wait = limiter.check("k")
    assert 0 < wait <= 1.0 and limiter.check("other") == 0


# ---------------------------------------------------------------- on 127.0.0.1, real model


@pytest.fixture
def live_server(chars: Path):  # type: ignore[no-untyped-def]

    state = build_state(api_keys=[KEY_A], backend="local", model="smollm2-135m")
    with uvicorn_thread(create_app(state), seconds=30) as base:
        yield f"{base}/v1"
    state.store.close()


def test_official_sdk_streaming_and_not_with_a_real_model(live_server: str) -> None:
    from openai import AuthenticationError, BadRequestError, NotFoundError, OpenAI

    client = OpenAI(base_url=live_server, api_key=KEY_A, max_retries=0)
    assert "mia" in [m.id for m in client.models.list()]
    r = client.chat.completions.create(
        model="mia",
        messages=[{"role": "user", "content": "Where is the cat?"}],
        max_tokens=24,
        seed=1,
        user="sdk-session",
    )
    assert r.choices[0].message.content.strip() and r.usage.completion_tokens > 0
    pieces = []
    stream = client.chat.completions.create(
        model="mia@smollm2-135m",
        messages=[{"role": "user", "content": "Tell me about the lamp."}],
        max_tokens=32,
        stream=True,
        user="sdk-session",
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) > 1 and "".join(pieces).strip()
    dialled = client.chat.completions.create(
        model="mia",
        messages=[{"role": "user", "content": "Where is the cat?"}],
        max_tokens=8,
        extra_body={"personality": {"O": "high", "N": 1}},  # the dials, through the SDK
    )
    assert dialled.choices[0].message.content is not None
    with pytest.raises(BadRequestError, match="a trait level for O"):
        client.chat.completions.create(
            model="mia",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"personality": {"O": 9}},
        )
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=live_server, api_key="bad-key-000", max_retries=0).models.list()
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "x"}])


# ---------------------------------------------------------------- crash safety

KILLS = 20


@pytest.mark.e2e  # `rolecast serve` with a real model, killed
def test_kill_9_mid_reply_loses_no_completed_turn(chars: Path, tmp_path: Path) -> None:
    import httpx

    db = tmp_path / "sessions.sqlite3"
    env = {**os.environ, "ROLECAST_HOME": str(chars), "ROLECAST_DATABASE_URL": f"sqlite:///{db}"}
    cmd = [
        sys.executable,
        "-m",
        "rolecast.cli.main",
        "serve",
        "--backend",
        "local",
        "--model",
        "smollm2-135m",
        "--rate",
        "0",
    ]
    completed = 0
    for i in range(KILLS):
        port = free_port()
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/models", timeout=1)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, (
                        "server did not start"
                    )
                    time.sleep(0.1)
            # after every restart the turns completed so far are all there
            got = httpx.get(f"{base}/sessions/crash", timeout=10)
            kept = got.json()["messages"] if got.status_code == 200 else []
            # every completed turn is there, whole; a killed reply is there only if it was
            # complete before its first text went out (the session holds a reply's first
            # words back, so a short one can be): then it is a completed turn too
            assert len(kept) % 2 == 0 and len(kept) >= 2 * completed, (i, len(kept), completed)
            completed = len(kept) // 2
            body = {
                "model": "mia",
                "max_tokens": 8,
                "user": "crash",
                "seed": i,
                "messages": [{"role": "user", "content": f"Turn {i}: the cat?"}],
            }
            r = httpx.post(f"{base}/chat/completions", json=body, timeout=60)
            assert r.status_code == 200, r.text
            completed += 1
            # a second reply, killed once its first tokens have arrived
            body = {
                **body,
                "max_tokens": 200,
                "stream": True,
                "messages": [{"role": "user", "content": "Tell me a long story."}],
            }
            with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=60) as s:
                for line in s.iter_lines():
                    if '"content": "' in line and '"content": ""' not in line:
                        os.kill(proc.pid, signal.SIGKILL)
                        break
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute(
        "SELECT role, content FROM messages WHERE session_id = 'crash' ORDER BY seq"
    ).fetchall()
    con.close()
    assert len(rows) % 2 == 0 and len(rows) >= 2 * KILLS  # every completed turn, no half turn
    said = [r[1] for r in rows[::2]]
    turns = [t for t in said if t.startswith("Turn ")]
    assert turns == [f"Turn {i}: the cat?" for i in range(KILLS)]
    assert all(t.startswith("Turn ") or t == "Tell me a long story." for t in said)
    assert all(role == "assistant" and text for role, text in rows[1::2])


def test_two_servers_share_sessions_through_postgres(chars: Path, postgres_url: str) -> None:
    """Behind a load balancer: a session begun on one server goes on on another."""
    clients, states = [], []
    for _ in range(2):
        state = build_state(api_keys=[KEY_A], backend="scripted", database_url=postgres_url)
        llm = ScriptedLLM()
        state._llms[None] = LockedLLM(llm)
        clients.append((TestClient(create_app(state)), llm))
        states.append(state)
    (one, llm1), (two, llm2) = clients
    sid = f"pg-{time.time_ns()}"
    llm1.enqueue("坐。")
    assert ask(one, "你好", key=KEY_A, user=sid).status_code == 200
    llm2.enqueue("面来了。")
    assert ask(two, "面呢？", key=KEY_A, user=sid).status_code == 200
    assert [m["content"] for m in llm2.requests[0][0][1:3]] == ["你好", "坐。"]
    got = one.get(f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {KEY_A}"}).json()
    assert [m["content"] for m in got["messages"]] == ["你好", "坐。", "面呢？", "面来了。"]
    for state in states:
        state.store.close()


class RoutingLLM(ScriptedLLM):
    """Replies from the queue; a request to summarise gets a summary of its own."""

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        if "记录员" in messages[0]["content"]:
            self.requests.append(([dict(m) for m in messages], params))
            last = messages[-1]["content"].splitlines()[-2]  # the block's last line of the user's
            yield "旅人说" + last.split("：", 1)[-1]
            return
        yield from super().stream(messages, params)


def memory_client(home: Path, url: str | None = None):  # type: ignore[no-untyped-def]
    state = build_state(backend="scripted", database_url=url)
    llm = RoutingLLM(context_window=2400)
    state._llms[None] = LockedLLM(llm)
    return TestClient(create_app(state)), llm, state


def test_a_server_session_remembers_beyond_its_history(chars: Path) -> None:
    client, llm, state = memory_client(chars)
    assert client.post("/v1/sessions/m1/memory", json={"remember": "x"}).status_code == 404
    lines = ["我家的猫叫煤球，是一只黑猫，最爱偷鱼。"] + [
        f"第{k}回听说{t}。"
        for k, t in enumerate(
            [
                "渡口的雾很浓",
                "码头来了盐船",
                "铁匠铺换了招牌",
                "河水涨了两寸",
                "糖人卖完了",
                "周伯要修台阶",
                "豆子丢了本子",
                "茶馆来了说书人",
                "灯笼被吹灭",
                "枫叶红了一半",
                "桥上结了霜",
                "渔船回来了",
                "庙会要开了",
                "雨下了三天",
            ]
            * 2
        )
    ]
    replies = filler(len(lines), 12)
    with client:
        for k, line in enumerate(lines):
            llm.enqueue(replies[k])
            assert ask(client, line, user="m1").status_code == 200
            state.memory_work.submit(lambda: None).result()  # the summary written after it
        r = client.post("/v1/sessions/m1/memory", json={"remember": "我叫阿青"})
        assert r.status_code == 200 and r.json()["pins"] == ["我叫阿青"]
        got = client.get("/v1/sessions/m1/memory").json()
        assert got["summarised_messages"] >= 16 and got["summarised_messages"] % 8 == 0
        assert got["summary"].startswith("旅人说第2回听说铁匠铺换了招牌。")
        llm.enqueue("煤球啊，昨晚又来偷鱼了。")
        assert ask(client, "你还记得我家的猫叫什么名字吗？", user="m1").status_code == 200
        sent = [r for r, _ in llm.requests if "记录员" not in r[0]["content"]][-1]
        assert (
            "- 我叫阿青" in sent[0]["content"]
            and "旅人说第2回听说铁匠铺换了招牌。" in sent[0]["content"]
        )
        # recalled beside the canon (classic order: in the system message), not as history
        assert "我家的猫叫煤球，是一只黑猫" in sent[0]["content"].split("片段")[-1]
        assert all("我家的猫叫煤球" not in m["content"] for m in sent[1:])
        assert client.post("/v1/sessions/m1/memory", json={"forget": 1}).json()["pins"] == []
        bad = client.post("/v1/sessions/m1/memory", json={"forget": 5})
        assert bad.status_code == 400 and "no pinned fact" in bad.json()["error"]["message"]
        bad = client.post("/v1/sessions/m1/memory", json={"pin": "x"})
        assert bad.status_code == 400
    # vectors are kept with the turns: the next request embeds nothing again
    assert [seq for seq, _ in state.store.vectors("local", "m1", "use")] == list(
        range(1, 2 * len(lines) + 3)
    )


@pytest.mark.e2e
def test_two_servers_share_a_sessions_memory_through_postgres(
    chars: Path, postgres_url: str
) -> None:
    (one, llm1, s1), (two, llm2, s2) = (
        memory_client(chars, postgres_url),
        memory_client(chars, postgres_url),
    )
    sid = f"pgm-{time.time_ns()}"
    llm1.enqueue("坐。")
    assert ask(one, "你好", user=sid).status_code == 200
    assert one.post(f"/v1/sessions/{sid}/memory", json={"remember": "我不吃葱"}).status_code == 200
    llm2.enqueue("不放葱。")
    assert ask(two, "来碗面", user=sid).status_code == 200
    assert "- 我不吃葱" in llm2.requests[-1][0][0]["content"]
    for state in (s1, s2):
        state.store.close()


def test_a_group_scene_through_the_api(chars: Path) -> None:
    client, llm, _ = make_client(chars)
    llm.enqueue("雾里有船。").enqueue("没船。")
    r = ask(client, "你们看见什么了？", model="yunzhou+shiwen", turns="all", user="g1")
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "云舟: 雾里有船。\n\n石稳: 没船。"
    assert [(x["character"], x["content"]) for x in message["replies"]] == [
        ("yunzhou", "雾里有船。"),
        ("shiwen", "没船。"),
    ]
    # each character's prompt has its own persona; the second answers the first
    assert (
        "云舟" in llm.requests[0][0][0]["content"][:20]
        and "石稳" in llm.requests[1][0][0]["content"][:20]
    )
    assert "雾里有船。" in str(llm.requests[1][0][-1])
    llm.enqueue("看清楚了，是渔船。")
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "yunzhou+shiwen",
            "messages": [{"role": "user", "content": "再看看？"}],
            "stream": True,
            "next": "石稳",
            "user": "g1",
        },
    ) as s:
        chunks = [json.loads(ln[6:]) for ln in s.iter_lines() if ln and ln != "data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "石稳: 看清楚了，是渔船。"
    assert chunks[-1]["choices"][0]["delta"]["replies"][0]["character"] == "shiwen"
    got = client.get("/v1/sessions/g1").json()
    assert got["character"] == "yunzhou+shiwen"
    assert [m["name"] for m in got["messages"]] == ["访客", "云舟", "石稳", "访客", "石稳"]
    # stateless: the client's own history, the scene's message split back into its speakers
    llm.enqueue("嗯。")
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "yunzhou+shiwen",
            "next": "yunzhou",
            "messages": [
                {"role": "user", "content": "你们好"},
                {"role": "assistant", "content": "云舟: 你好呀。\n\n石稳: 嗯。"},
                {"role": "user", "content": "云舟，你呢？"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    sent = llm.requests[-1][0]
    assert {"role": "assistant", "content": "你好呀。"} in sent
    assert any(
        m["role"] == "user" and "石稳" in m["content"] and "嗯。" in m["content"] for m in sent
    )


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"model": "yunzhou+yunzhou"}, 400, "each character once"),
        ({"model": "yunzhou+nobody"}, 404, "does not exist"),
        ({"model": "xm", "turns": "all"}, 400, "for a group scene"),
        ({"model": "yunzhou+shiwen", "turns": "loud"}, 400, "'turns' must be one of"),
        ({"model": "yunzhou+shiwen", "next": "阿虚"}, 400, "not in this scene"),
        ({"model": "yunzhou+shiwen", "user": "solo"}, 409, "is with 'xm'"),
    ],
)
def test_bad_group_requests_are_clear(chars: Path, body: dict, status: int, says: str) -> None:  # type: ignore[type-arg]
    client, llm, _ = make_client(chars)
    llm.enqueue("坐。")
    assert ask(client, "你好", user="solo").status_code == 200  # a one-to-one session with xm
    r = ask(client, "你好", **body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]
