"""A backend is resolved once: BackendSpec from argument > environment > file > default, and
backends that take explicit values and refuse what they do not take."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rolecast import config
from rolecast.backends.scripted import EchoLLM, ScriptedLLM
from rolecast.backends.spec import BackendSpec, backend_spec, embedder_name
from rolecast.cli.main import main
from rolecast.errors import InputError, UnknownNameError


def test_each_setting_comes_from_the_argument_then_the_environment_then_the_file(
    rolecast_home: Path,
) -> None:
    env = {"ROLECAST_HOME": str(rolecast_home)}
    assert backend_spec(environ=env) == BackendSpec("local", timeout=60.0)
    config.write_setting("backend", "echo", env)
    config.write_setting("model", "from-file", env)
    assert backend_spec(environ=env).name == "echo"
    assert backend_spec(environ=env).model == "from-file"
    env["ROLECAST_MODEL"] = "from-env"
    env["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"
    spec = backend_spec("scripted", environ=env)
    assert (spec.name, spec.model) == ("scripted", "from-env")
    assert spec.base_url == env["OPENAI_BASE_URL"]
    assert backend_spec("scripted", "explicit", environ=env).model == "explicit"
    assert backend_spec(environ=env, file={}).name == "local"  # the file given, not read
    assert embedder_name(environ=env) == "use" and embedder_name("e5", environ=env) == "e5"


def test_an_unknown_name_fails_at_once_listing_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown llm 'nonsense'.*local.*openai"):
        backend_spec("nonsense", environ={}, file={})
    with pytest.raises(UnknownNameError, match="unknown embedder 'bert'"):
        embedder_name("bert", environ={}, file={})


def test_a_setting_given_to_a_backend_that_does_not_take_it_is_refused() -> None:
    spec = backend_spec("echo", model="qwen", environ={}, file={})
    with pytest.raises(InputError, match="the echo backend takes no model"):
        spec.open()
    # found in the environment, not given: it goes only where it is taken
    quiet = backend_spec("echo", environ={"ROLECAST_MODEL": "qwen"}, file={})
    assert isinstance(quiet.open(), EchoLLM)
    scripted = backend_spec("scripted", "stand-in", environ={}, file={}).open(seed=3)
    assert isinstance(scripted, ScriptedLLM) and scripted.model == "stand-in"  # seed not taken
    assert spec.with_model(None) is spec and spec.with_model("x").model == "x"


def test_backends_refuse_options_they_do_not_know() -> None:
    with pytest.raises(TypeError):
        ScriptedLLM(colour="blue")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        EchoLLM(model="x")  # type: ignore[call-arg]


def test_chat_with_a_wrong_backend_fails_before_anything_loads(monkeypatch, capsys) -> None:
    def no_index(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("the index was built before the backend name was checked")

    monkeypatch.setattr("rolecast.retrieval.index.load_index", no_index)
    started = time.perf_counter()
    assert main(["chat", "xiaoman", "--backend", "nonsense", "--once", "你好"]) == 1
    assert time.perf_counter() - started < 0.5
    assert "unknown llm 'nonsense'" in capsys.readouterr().err
