"""The server's rules for what a client sends (security review, issue 15): ``model`` picks only
among what the operator allowed and never loads a file; every field is checked as OpenAI checks
it, before anything is done; no error body shows a server path; API keys are ASCII."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

TestClient = pytest.importorskip("starlette.testclient", reason="needs the server extra").TestClient


import rolecast.server.app as server_app
from rolecast.backends.base import LockedLLM
from rolecast.backends.scripted import ScriptedLLM
from rolecast.backends.spec import BackendSpec
from rolecast.character.package import save_character
from rolecast.errors import BackendError, InputError, ParseError
from rolecast.resources import ResourceCache
from rolecast.server.allowed import Allowed
from rolecast.server.app import create_app
from rolecast.server.keys import Keys
from rolecast.server.run import build_state

from conftest import make_character, make_english_character

KEY = "key-aaaa-1111"


def opening(load: Any) -> Any:
    """BackendSpec.open as ``load(name, model=..., **extra)``: what a test sees loaded."""
    return lambda spec, **extra: load(spec.name, model=spec.model, **extra)


@pytest.fixture
def chars(rolecast_home: Path) -> Path:
    save_character(make_character(), rolecast_home / "characters" / "xm")
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    return rolecast_home


def client_for(**options: Any) -> tuple[TestClient, ScriptedLLM, Any]:
    state = build_state(backend="scripted", rate=0, **options)
    llm = ScriptedLLM()
    state._llms[state.model] = LockedLLM(llm)
    return TestClient(create_app(state)), llm, state


def post(client: TestClient, body: Any, headers: dict[str, Any] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json", **(headers or {})},
    )


def line(text: str = "你好", **fields: Any) -> dict[str, Any]:
    return {"model": "xm", "messages": [{"role": "user", "content": text}], **fields}


def assert_openai_error(r: Any, status: int, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    if param is not None:
        assert error["param"] == param and f"'{param}'" in error["message"], error
    return dict(error)


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call to load a backend model or a package, which these requests must not make."""
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise AssertionError(f"loaded {args} {kwargs}")

    monkeypatch.setattr(BackendSpec, "open", opening(refuse))
    monkeypatch.setattr(server_app, "load_character", refuse)
    return calls


def outside_package(tmp_path: Path) -> Path:
    """A good character package that is not installed: a client must not reach it."""
    path = tmp_path / "elsewhere" / "secret"
    save_character(make_character(), path)
    return path


# ---------------------------------------------------------------- 2: model picks, never loads


def test_a_path_or_hub_reference_as_model_loads_nothing(
    chars: Path, tmp_path: Path, no_loading: list[Any]
) -> None:
    client, llm, state = client_for()
    pkg = outside_package(tmp_path)
    zipped = Path(shutil.make_archive(str(tmp_path / "secret"), "zip", pkg))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    spellings = [
        str(pkg),
        str(zipped),
        f"xm@{gguf}",
        f"xm@{tmp_path / 'missing.gguf'}",
        "xm@hf:someone/some-repo/model.gguf",
        "../characters/xm",
        f"{chars}/characters/xm",
        "xm@smollm2-135m",  # a real backend model, but not one the operator allowed
        "XM",
        "小满",  # names and aliases are not ids: only what /v1/models lists is a model
    ]
    messages = set()
    for spelling in spellings:
        error = assert_openai_error(post(client, line(model=spelling)), 404)
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        assert str(tmp_path) not in error["message"] and str(chars) not in error["message"]
        messages.add(re.sub(r"^The model '.*' does not", "The model M does not", error["message"]))
    # the same words whether the path exists or not, is a folder, a zip or a GGUF
    assert len(messages) == 1, messages
    assert not no_loading and not llm.requests
    assert state._indexes.keys() == [] and state._llms.keys() == [None]


def test_forty_spellings_load_nothing_new(chars: Path, tmp_path: Path) -> None:
    client, llm, state = client_for()
    for i in range(40):
        assert post(client, line(model=f"xm@{tmp_path}/m{i}.gguf")).status_code == 404
        assert post(client, line(model=f"{tmp_path}/pkg{i}")).status_code == 404
    llm.enqueue("坐。")
    assert post(client, line()).status_code == 200
    assert state._indexes.keys() == ["xm"] and state._llms.keys() == [None]


def test_only_the_allowed_characters_and_models(chars: Path) -> None:
    client, llm, state = client_for(model="small", models="xm, mia@big")
    big = ScriptedLLM()
    state._llms["big"] = LockedLLM(big)
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["xm", "mia@big"]  # what is allowed, not every installed package
    llm.enqueue("坐。").enqueue("面来了。")
    assert post(client, line(model="xm")).status_code == 200
    r = post(client, line(model="xm@small"))  # the default model, by its name
    assert r.status_code == 200 and r.json()["model"] == "xm@scripted"
    big.enqueue("Hello.")
    r = post(client, line("hi", model="mia@big"))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello."
    for refused in ("mia", "mia@small", "xm@big", "xiaoman", "mia@"):
        assert post(client, line(model=refused)).json()["error"]["code"] == "model_not_found"
    assert len(llm.requests) == 2 and len(big.requests) == 1


def test_the_default_allows_every_installed_character_with_the_default_model(
    chars: Path,
) -> None:
    client, llm, _ = client_for(model="small")
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert {"xm", "mia", "xiaoman"} <= set(ids) and not any("@" in i for i in ids)
    llm.enqueue("好。")
    assert post(client, line(model="mia@small")).status_code == 200
    assert post(client, line(model="mia@other")).status_code == 404


@pytest.mark.parametrize(
    "spec, message",
    [
        ("xm@/srv/models/big.gguf", "by name, not as a file"),
        ("xm@~/big.gguf", "by name, not as a file"),
        ("xm@big.gguf", "by name, not as a file"),
        ("*@hf:someone/repo/model.gguf", "by name, not as a file"),
        ("../elsewhere/secret", "named by its id"),
        ("/srv/characters/x", "named by its id"),
        ("xm@", "no backend model"),
        ("nobody", "not installed: nobody"),
    ],
)
def test_the_allowed_list_is_names(chars: Path, spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_state(backend="scripted", models=spec)


def test_the_allowed_list_from_the_environment_and_the_config_file(chars: Path) -> None:
    from rolecast import config

    assert config.resolve("server_models", environ={"ROLECAST_SERVER_MODELS": "xm"}) == "xm"
    assert config.resolve("server_models", environ={}, file={"server_models": "mia"}) == "mia"
    assert config.resolve("server_models", environ={}, file={}) is None
    assert Allowed.parse("xm,*@big", "small").ids(["mia", "xm"]) == ["xm", "mia@big", "xm@big"]


def test_a_slow_model_load_holds_up_no_other_request(
    chars: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, llm, state = client_for(models="*, xm@slow")
    release, loading = threading.Event(), threading.Event()

    def slow_get_llm(name: str, **options: Any) -> Any:
        loading.set()
        assert release.wait(30)
        return ScriptedLLM(["慢。"])

    monkeypatch.setattr(BackendSpec, "open", opening(slow_get_llm))
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(post(client, line(model="xm@slow"))))
    waiting.start()
    try:
        assert loading.wait(30)
        llm.enqueue("快。").enqueue("也快。")
        started = time.monotonic()
        assert post(client, line(model="xm")).status_code == 200
        assert post(client, line("hi", model="mia")).status_code == 200
        assert client.get("/v1/models").status_code == 200
        assert time.monotonic() - started < 20 and not got  # the load is still going on
    finally:
        release.set()
        waiting.join(30)
    assert got[0].status_code == 200 and got[0].json()["choices"][0]["message"]["content"]


def test_loaded_characters_are_bounded(chars: Path) -> None:
    client, llm, state = client_for()
    state._indexes = ResourceCache(1)
    llm.enqueue("坐。").enqueue("Hi.").enqueue("又来了？")
    assert post(client, line()).status_code == 200
    assert post(client, line("hi", model="mia")).status_code == 200
    assert state._indexes.keys() == ["mia"]
    assert post(client, line()).status_code == 200  # loaded again
    assert state._indexes.keys() == ["xm"]


# ---------------------------------------------------------------- 7: session ids


@pytest.mark.parametrize(
    "fields, headers, param",
    [
        ({"user": "张三"}, {}, "user"),
        ({"user": "a\r\nX-Evil: 1"}, {}, "user"),
        ({"user": "with space"}, {}, "user"),
        ({"user": "x" * 129}, {}, "user"),
        ({"user": ""}, {}, "user"),
        ({"user": 42}, {}, "user"),
        ({}, {"X-Session-Id": "caf\xe9".encode("latin-1")}, None),
        ({}, {"X-Session-Id": "\u5f20\u4e09".encode()}, None),
    ],
)
def test_a_bad_session_id_is_refused_before_the_turn(
    chars: Path, fields: dict[str, Any], headers: dict[str, Any], param: str | None
) -> None:
    client, llm, state = client_for()
    llm.enqueue("坐。")
    error = assert_openai_error(post(client, line(**fields), headers), 400, param)
    assert "session id" in error["message"] or "'user'" in error["message"]
    assert not llm.requests  # nothing generated, so nothing saved to be duplicated on retry
    for sid in ("张三", "café", "with space", "a\r\nX-Evil: 1"):
        assert state.store.session_character("local", sid) is None


def test_a_good_session_id_comes_back_in_the_header(chars: Path) -> None:
    client, llm, _ = client_for()
    llm.enqueue("坐。")
    sid = "user-42@example.com:tab/3"
    r = post(client, line(user=sid))
    assert r.status_code == 200 and r.headers["X-Session-Id"] == sid


# ---------------------------------------------------------------- 8: fields as OpenAI's

BIG = "9" * 5000


@pytest.mark.parametrize(
    "raw, param",
    [
        ('"max_tokens": 1e400', "max_tokens"),
        ('"max_tokens": NaN', "max_tokens"),
        (f'"max_tokens": {BIG}', "max_tokens"),
        ('"max_tokens": 0', "max_tokens"),
        ('"max_tokens": 8193', "max_tokens"),
        ('"max_tokens": 1.5', "max_tokens"),
        ('"max_tokens": true', "max_tokens"),
        ('"max_completion_tokens": -1', "max_completion_tokens"),
        ('"seed": 1e400', "seed"),
        ('"seed": NaN', "seed"),
        (f'"seed": {BIG}', "seed"),
        (f'"seed": -{BIG}', "seed"),
        ('"seed": 9223372036854775808', "seed"),
        ('"seed": "1"', "seed"),
        ('"temperature": -5', "temperature"),
        ('"temperature": NaN', "temperature"),
        ('"temperature": Infinity', "temperature"),
        ('"temperature": 2.5', "temperature"),
        ('"top_p": -5', "top_p"),
        ('"top_p": NaN', "top_p"),
        ('"top_p": -Infinity', "top_p"),
        ('"top_p": 1.5', "top_p"),
        ('"presence_penalty": 3', "presence_penalty"),
        ('"frequency_penalty": "high"', "frequency_penalty"),
        ('"n": 2', "n"),
        ('"n": 0', "n"),
        ('"n": "1"', "n"),
        ('"stream": "false"', "stream"),
        ('"stream": 0', "stream"),
        ('"stream_options": "yes"', "stream_options"),
        ('"stream_options": {"include_usage": "true"}', "include_usage"),
        ('"stop": [1]', "stop"),
    ],
)
def test_each_field_is_checked_as_openai_does(chars: Path, raw: str, param: str) -> None:
    client, llm, _ = client_for()
    llm.enqueue("坐。")
    body = '{"model": "xm", "messages": [{"role": "user", "content": "hi"}], ' + raw + "}"
    error = assert_openai_error(post(client, body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert not llm.requests


def test_n_other_than_one_says_so(chars: Path) -> None:
    client, _, _ = client_for()
    error = assert_openai_error(post(client, line(n=2)), 400, "n")
    assert "must be 1" in error["message"]


def test_a_message_name_must_be_a_string(chars: Path) -> None:
    client, _, _ = client_for()
    body = line()
    body["messages"][0]["name"] = 5
    error = assert_openai_error(post(client, body), 400, "messages[0].name")
    assert "must be a string" in error["message"]


def test_valid_fields_reach_the_backend(chars: Path) -> None:
    client, llm, _ = client_for()
    llm.enqueue("坐。")
    body = line(
        temperature=0,
        top_p=1,
        max_tokens=5.0,
        seed=-1,
        n=1,
        stream=False,
        presence_penalty=-2,
        frequency_penalty=2.0,
        stream_options=None,
        user=None,
    )
    assert post(client, body).status_code == 200
    params = llm.requests[0][1]
    assert (params.temperature, params.top_p, params.max_tokens, params.seed) == (0.0, 1.0, 5, -1)
    assert (params.presence_penalty, params.frequency_penalty) == (-2.0, 2.0)


# ---------------------------------------------------------------- 9: broken packages, paths


def break_package(home: Path, cid: str = "broken") -> Path:
    path = home / "characters" / cid
    path.mkdir(parents=True)
    (path / "character.toml").write_text("id = [unclosed\n", encoding="utf-8")
    return path


def test_a_broken_package_is_skipped_with_a_warning(
    chars: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = break_package(chars)
    client, llm, state = client_for()
    llm.enqueue("坐。").enqueue("Hi.")
    with caplog.at_level(logging.WARNING, logger="rolecast.server.app"):
        error = assert_openai_error(post(client, line(model="broken")), 404)
    assert error["code"] == "model_not_found" and str(chars) not in json.dumps(error)
    assert any("broken" in r.getMessage() for r in caplog.records)
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "broken" not in ids and {"xm", "mia"} <= set(ids)
    assert post(client, line()).status_code == 200
    assert post(client, line("hi", model="mia")).status_code == 200
    # mended, it is served again
    shutil.rmtree(broken)
    save_character(make_english_character(), broken)
    llm.enqueue("Hello again.")
    assert post(client, line("hi", model="broken")).status_code == 200
    assert "broken" in [m["id"] for m in client.get("/v1/models").json()["data"]]


def test_no_error_body_shows_a_server_path(
    chars: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_package(chars)
    client, llm, state = client_for(models="*,xm@gone")
    home = str(Path.home())
    bodies = []
    for model in ("broken", str(outside_package(tmp_path)), f"xm@{chars}/models/x.gguf"):
        bodies.append(post(client, line(model=model)).text)
    # an upstream error that names a file
    llm.enqueue([BackendError(f"llama.cpp could not load {chars}/models/x.gguf: bad magic")])
    bodies.append(post(client, line()).text)
    llm.enqueue([BackendError(f"could not read {home}/.cache/x: denied")])
    bodies.append(post(client, line()).text)
    # ... and one that comes after the first streamed bytes, as an error event
    llm.enqueue(["好", BackendError(f"could not read {chars}/models/x.gguf")])
    streamed = post(client, line(stream=True)).text
    event = [ln for ln in streamed.splitlines() if '"error"' in ln]
    assert len(event) == 1 and "<path>" in event[0]
    bodies.append(event[0].removeprefix("data: "))
    # a backend model whose file is missing, and a character whose index cannot be read

    def missing_model(name: str, **options: Any) -> Any:
        raise BackendError(f"no GGUF model file at {chars}/models/gone.gguf")

    def unreadable_index(character: Any, embedder: str) -> Any:
        raise ParseError("bad index", chars / "indexes" / "mia.npz")

    monkeypatch.setattr(BackendSpec, "open", opening(missing_model))
    bodies.append(post(client, line(model="xm@gone")).text)
    monkeypatch.setattr(server_app, "load_index", unreadable_index)
    bodies.append(post(client, line("hi", model="mia")).text)
    bodies.append(client.post("/v1/audio/speech", json={"model": str(tmp_path), "input": "x"}).text)
    statuses = [json.loads(b)["error"]["type"] for b in bodies]
    assert "server_error" in statuses and "upstream_error" in statuses
    for body in bodies:
        assert home not in body and str(chars) not in body and str(tmp_path) not in body, body
        assert json.loads(body)["error"]["message"]


def test_a_500_gives_a_reference_to_the_log(
    chars: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, _ = client_for()

    def fail(c: Any, e: Any) -> Any:
        raise ParseError("bad index", chars / "index.npz")

    monkeypatch.setattr(server_app, "load_index", fail)
    with caplog.at_level(logging.ERROR, logger="rolecast.server.errors"):
        error = assert_openai_error(post(client, line()), 500)
    ref = error["message"].rsplit("ref ", 1)[1].rstrip(")")
    assert any(ref in r.getMessage() and str(chars) in r.getMessage() for r in caplog.records)
    assert str(chars) not in error["message"]

    def bug(c: Any, e: Any) -> Any:  # not a RolecastError: still OpenAI's shape, no path
        raise AssertionError(f"index at {chars} failed")

    monkeypatch.setattr(server_app, "load_index", bug)
    error = assert_openai_error(post(client, line()), 500)
    assert error["type"] == "server_error" and str(chars) not in error["message"]


# ---------------------------------------------------------------- 14: API keys


@pytest.mark.parametrize("key", ["clé-secrète-1", "schlüssel-12345", "key with a space"])
def test_a_key_that_no_header_can_carry_is_refused_at_start(rolecast_home: Path, key: str) -> None:
    with pytest.raises(InputError, match="visible ASCII"):
        Keys([key])
    with pytest.raises(InputError, match="visible ASCII"):
        build_state(backend="scripted", environ={"ROLECAST_SERVER_KEYS": f"{KEY},{key}"})


def test_a_latin1_bearer_is_a_401(chars: Path) -> None:
    client, _, _ = client_for(api_keys=[KEY])
    for given in ("clé-secrète-1".encode("latin-1"), b"\xff" * 12, f"{KEY}\xe9".encode("latin-1")):
        r = client.get("/v1/models", headers={"Authorization": b"Bearer " + given})
        assert_openai_error(r, 401)
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
