"""Issue 15, the security review: the web page's exposure (3), the config file's mode and
concurrent writers (6) and the reply cleaner's cost on a long reply (11). Each test makes
the attack or the failure the review found, and fails without its fix."""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import free_port

from rolecast import config
from rolecast.backends.base import LockedLLM
from rolecast.backends.scripted import ScriptedLLM
from rolecast.backends.spec import BackendSpec
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.errors import InputError
from rolecast.session import _HOLD, ReplyCleaner, _join
from rolecast.web.access import AUTH_ENV
from rolecast.web.app import WebApp
from rolecast.web.page import launch_options

from conftest import make_character, make_english_character

CLEANER = ReplyCleaner.for_character(make_character())

# ---------------------------------------------------------------- 11: ReplyCleaner.stream


def opening(load: Any) -> Any:
    """BackendSpec.open as ``load(name, model=..., **extra)``: what a test sees loaded."""
    return lambda spec, **extra: load(spec.name, model=spec.model, **extra)


def reference_clean(cleaner: ReplyCleaner, raw: str) -> str:
    """What ``clean`` did before it folded lines into a list."""
    out = ""
    for line in raw.splitlines():
        text, stop = cleaner._line(line)
        out = _join(out, text)
        if stop:
            break
    return out.strip()


def reference_stream(cleaner: ReplyCleaner, chunks: Iterable[str]) -> Iterator[str]:
    """What ``stream`` did before it was incremental (the whole text cleaned per chunk):
    the new one must yield the same pieces wherever a line is shorter than LONG_LINE."""
    raw, sent = "", ""
    for chunk in chunks:
        raw += chunk
        cut = raw.rfind("\n") + 1
        tail = raw[cut:]
        if len(tail) < _HOLD and not re.search(r"[:：]", tail):
            visible = raw[:cut]
        else:
            close = tail.rfind("」")
            visible = raw[: cut + close] if close != -1 else raw
        text = reference_clean(cleaner, visible)
        if text.startswith(sent) and len(text) > len(sent):
            yield text[len(sent) :]
            sent = text
    final = reference_clean(cleaner, raw)
    if final.startswith(sent) and len(final) > len(sent):
        yield final[len(sent) :]


STREAM_LIMIT_S = 8.0  # CPU seconds for a megabyte; it takes about one (the old way: minutes)
MEGABYTE_LINES = (
    "小满:「今天的汤特别鲜，你尝尝看，不好喝不要钱咯。」(端上一碗面)\n"
    "Sure, one bowl coming right up, with extra spring onions on top.\n"
    "满老板：「雨下大了，进来坐，  伞放门口。」\n"
    "好咧，马上来。\n"
)


def _stream_within(raw: str, limit_s: float) -> tuple[str, float]:
    """Stream ``raw`` one character at a time; stop (and fail later) past ``limit_s``."""
    started = time.process_time()
    pieces = []
    for piece in CLEANER.stream(iter(raw)):
        pieces.append(piece)
        if time.process_time() - started > limit_s:
            break
    return "".join(pieces), time.process_time() - started


@pytest.mark.e2e  # a load test: a megabyte through the cleaner
def test_a_megabyte_reply_streams_in_one_character_chunks_quickly() -> None:
    raw = MEGABYTE_LINES * (1_000_000 // len(MEGABYTE_LINES))
    out, took = _stream_within(raw, STREAM_LIMIT_S)
    assert took < STREAM_LIMIT_S, f"{took:.1f} s of CPU for {len(raw)} characters"
    assert out == CLEANER.clean(raw)


@pytest.mark.e2e  # a load test: a megabyte through the cleaner
def test_a_megabyte_line_that_never_ends_streams_quickly() -> None:
    for raw in ("小满:「" + "好" * 1_000_000, "So I said: " + "word, " * 170_000):
        out, took = _stream_within(raw, STREAM_LIMIT_S)
        assert took < STREAM_LIMIT_S, f"{took:.1f} s of CPU for {len(raw)} characters"
        assert out == CLEANER.clean(raw)


SPEECH = st.text(alphabet="今天汤鲜好面猫雨灯，。！？abc xyz", min_size=1, max_size=30)
SELF = st.sampled_from(["小满", "满老板"])
OTHER = st.sampled_from(["旅人", "旁白", "Narrator"])
COLON = st.sampled_from([":", "：", ": "])
LINE = st.one_of(
    st.builds(lambda n, c, s: f"{n}{c}「{s}」", SELF, COLON, SPEECH),
    st.builds(lambda n, c, s: f"{n}{c}「{s}」(端上一碗面)", SELF, COLON, SPEECH),
    st.builds(lambda n, c, s: f"{n}{c}{s}", SELF, COLON, SPEECH),
    st.builds(
        lambda n, c, s, o, t: f"{n}{c}「{s}」{o}:「{t}」", SELF, COLON, SPEECH, OTHER, SPEECH
    ),
    st.builds(lambda o, c, s: f"{o}{c}「{s}」", OTHER, COLON, SPEECH),
    st.builds(lambda o, c, s: f"{o}{c}{s}", OTHER, COLON, SPEECH),
    SPEECH,
)


def _chunks(raw: str, cuts: list[int]) -> list[str]:
    out, i = [], 0
    for n in cuts:
        out.append(raw[i : i + n])
        i += n
    return [c for c in [*out, raw[i:]] if c]


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=8), st.lists(st.integers(1, 9), max_size=80))
def test_streaming_random_lines_equals_cleaning_the_whole(
    lines: list[str], cuts: list[int]
) -> None:
    raw = "\n".join(lines)
    assert "".join(CLEANER.stream(_chunks(raw, cuts))) == CLEANER.clean(raw)


ANY_TEXT = st.lists(
    st.sampled_from(
        [*"今天好a ", "  ", "\t", "\u3000", "\n", "\r", "\r\n", "\u2028", ":", "：", "「", "」"]
        + ["(", ")", "（", "）", "小满:", "满老板：「", "旅人:「", "」(笑)", "注意：", "Narrator: "]
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(ANY_TEXT, st.lists(st.integers(1, 6), max_size=60), st.booleans())
def test_incremental_stream_yields_what_the_whole_text_way_did(
    tokens: list[str], cuts: list[int], by_token: bool
) -> None:
    raw = "".join(tokens)
    chunks = [t for t in tokens if t] if by_token else _chunks(raw, cuts)
    assert list(CLEANER.stream(chunks)) == list(reference_stream(CLEANER, chunks))
    assert CLEANER.clean(raw) == reference_clean(CLEANER, raw)


# ---------------------------------------------------------------- 6: the config file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_config_file_stays_600_after_the_key_is_written(rolecast_home: Path) -> None:
    umask = os.umask(0o022)  # the usual umask, under which a plain write makes the file 644
    try:
        _write_and_check_modes()
    finally:
        os.umask(umask)


def _write_and_check_modes() -> None:
    path = config.write_setting("api_key", "sk-secret-123")
    assert _mode(path) == 0o600
    config.write_setting("model", "smollm2-135m")  # the next write used to make it 644
    assert _mode(path) == 0o600 and config.read_file()["api_key"] == "sk-secret-123"
    config.write_setting("api_key", None)
    assert _mode(path) == 0o600  # always 600, with or without a key in it
    path.chmod(0o644)  # a file from an older version
    config.write_setting("base_url", "https://user:pass@example.invalid/v1")
    assert _mode(path) == 0o600
    assert not [p.name for p in path.parent.iterdir() if ".tmp" in p.name]


def test_concurrent_writers_in_threads_all_keep_their_setting(
    rolecast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ["model", "base_url", "timeout", "embedder", "tts_model", "tts_base_url"]
    real = config.read_file

    def slow_read(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        data = real(environ)
        time.sleep(0.05)  # every writer has read the file before any has written it back
        return data

    monkeypatch.setattr(config, "read_file", slow_read)
    start = threading.Barrier(len(keys))
    errors: list[BaseException] = []

    def write(key: str) -> None:
        start.wait()
        try:
            config.write_setting(key, f"{key}-value")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert real() == {k: f"{k}-value" for k in keys}


WRITER = """
import sys, time
from rolecast import config
key, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for i in range(rounds):
    config.write_setting(key, f"{key}-{i}")
"""


@pytest.mark.e2e  # a real server / real processes
def test_concurrent_writer_processes_lose_no_update(rolecast_home: Path) -> None:
    keys, rounds = ["model", "base_url", "timeout", "tts_model"], 30
    start = time.time() + 2  # all of them have imported rolecast by then
    env = {**os.environ, "ROLECAST_HOME": str(rolecast_home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, k, str(start), str(rounds)], env=env)
        for k in keys
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(keys)
    assert config.read_file() == {k: f"{k}-{rounds - 1}" for k in keys}


# ---------------------------------------------------------------- 3: rolecast web's exposure


@pytest.fixture
def web(rolecast_home: Path) -> WebApp:
    save_character(make_character(), rolecast_home / "characters" / "xm")
    app = WebApp("xm", backend="scripted")
    app._llms[("scripted", None)] = LockedLLM(ScriptedLLM())
    return app


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """``rolecast web`` runs up to the launch, which is recorded instead of listening."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("rolecast.web.page.launch", lambda *args, **kw: calls.append(args))
    monkeypatch.delenv(AUTH_ENV, raising=False)
    return calls


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0"],
        ["--host", "::"],
        ["--host", "192.168.1.20"],
        ["--host", "example.org"],
        ["--share"],  # a public gradio.live link
    ],
)
def test_web_refuses_to_be_reachable_without_credentials(
    argv: list[str], launched: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["web", "--backend", "echo", *argv]) != 0
    assert launched == []
    err = capsys.readouterr().err
    assert "without credentials" in err and "--auth USER:PASSWORD" in err


def test_web_on_a_network_asks_for_the_credentials_given(
    launched: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        main(["web", "--backend", "echo", "--host", "0.0.0.0", "--auth", "ann:correct-horse"]) == 0
    )
    monkeypatch.setenv(AUTH_ENV, "bob:battery-staple,cy:tr0ub4dor&3")
    assert main(["web", "--backend", "echo", "--host", "0.0.0.0"]) == 0
    monkeypatch.delenv(AUTH_ENV)
    assert main(["web", "--backend", "echo"]) == 0  # loopback: no login needed
    (app, host, port, share, by_flag), (_, _, _, _, by_env), (_, _, _, _, none) = launched
    auth = launch_options(app, host, port, share, by_flag)["auth"]
    assert auth("ann", "correct-horse")
    assert not auth("ann", "correct-horsE") and not auth("bob", "correct-horse")
    auth = launch_options(app, host, port, share, by_env)["auth"]
    assert auth("bob", "battery-staple") and auth("cy", "tr0ub4dor&3") and not auth("ann", "")
    assert launch_options(app, "127.0.0.1", port, False, none)["auth"] is None
    assert "correct-horse" not in repr(by_flag)  # never in a log line
    with pytest.raises(InputError, match="without credentials"):
        launch_options(app, "0.0.0.0", port, False, none)  # whoever calls launch is checked


@pytest.mark.parametrize(
    "auth, message",
    [("ann", "USER:PASSWORD"), (":correct-horse", "USER:PASSWORD"), ("ann:short", "8 characters")],
)
def test_web_refuses_unusable_credentials(
    auth: str, message: str, launched: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["web", "--backend", "echo", "--host", "0.0.0.0", "--auth", auth]) != 0
    assert launched == [] and message in capsys.readouterr().err


def _recording_get_llm(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What the web app asks the backends to load (a scripted model stands in for each)."""
    loaded: list[tuple[str, Any]] = []

    def get_llm(name: str, **options: Any) -> ScriptedLLM:
        loaded.append((name, options.get("model")))
        return ScriptedLLM()

    monkeypatch.setattr(BackendSpec, "open", opening(get_llm))
    return loaded


def test_the_settings_panel_loads_no_path_and_downloads_nothing(
    web: WebApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _recording_get_llm(monkeypatch)
    weights = tmp_path / "private.gguf"
    weights.write_bytes(b"GGUF")
    state = web.on_load(None)[0]
    for model in (
        str(weights),
        "/etc/passwd",
        "../../private.gguf",
        "~/.ssh/id_ed25519",
        "hf:someone/repo/huge.gguf",  # a download
        "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf",
    ):
        for backend in ("local", "openai", ""):
            with pytest.raises(InputError, match="may not load the model"):
                web.on_settings(backend, model, 300, 200, state)
    assert loaded == []  # nothing was loaded, read or downloaded
    assert state.get("model") is None and web.tab(state).session.budget.canon != 300
    assert "canon 300" in web.on_settings("local", "smollm2-135m", 300, 200, state)
    assert state["model"] == "smollm2-135m"
    web.on_settings("local", "qwen", 300, 200, state)  # an alias in the catalogue
    assert loaded == [("local", "smollm2-135m"), ("local", "qwen")]


@pytest.mark.e2e  # the gradio page
def test_the_refusal_is_a_message_in_the_page(web: WebApp, monkeypatch: pytest.MonkeyPatch) -> None:
    gr = pytest.importorskip("gradio")
    from rolecast.web.page import _shown

    loaded = _recording_get_llm(monkeypatch)
    state = web.on_load(None)[0]
    with pytest.raises(gr.Error, match="may not load the model '/etc/passwd'.*smollm2-135m"):
        _shown(web.on_settings)("local", "/etc/passwd", 300, 200, state)
    assert loaded == []


def test_the_starting_model_of_a_backend_spec_may_be_picked_again(
    rolecast_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rolecast web --model PATH` hands the page a BackendSpec: its model is the one started."""
    save_character(make_character(), rolecast_home / "characters" / "xm")
    started = str(tmp_path / "started.gguf")
    app = WebApp("xm", backend=BackendSpec("local", model=started))
    loaded = _recording_get_llm(monkeypatch)
    app.on_settings("local", started, 300, 200, {})
    assert loaded == [("local", started)]
    with pytest.raises(InputError, match="may not load"):
        app.on_settings("local", str(tmp_path / "other.gguf"), 300, 200, {})


def test_models_the_operator_allowed_may_be_picked(
    rolecast_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_character(make_character(), rolecast_home / "characters" / "xm")
    started, allowed = tmp_path / "started.gguf", tmp_path / "allowed.gguf"
    app = WebApp(
        "xm",
        backend="local",
        model=str(started),
        allowed_models=[str(allowed), "hf:me/repo/ok.gguf", "gpt-4o-mini"],
    )
    loaded = _recording_get_llm(monkeypatch)
    state: dict[str, Any] = {}
    for model in (
        str(started),
        str(allowed),
        f"{tmp_path}/./sub/../allowed.gguf",  # the same file, written another way
        "hf:me/repo/ok.gguf",
        "",  # the starting model
    ):
        app.on_settings("local", model, 300, 200, state)
    app.on_settings("openai", "gpt-4o-mini", 300, 200, state)
    for model in ("hf:me/repo/other.gguf", str(tmp_path / "other.gguf"), "gpt-4o"):
        with pytest.raises(InputError, match="may not load"):
            app.on_settings("local", model, 300, 200, state)
    assert [m for _, m in loaded] == [
        str(started),
        str(allowed),
        f"{tmp_path}/./sub/../allowed.gguf",
        "hf:me/repo/ok.gguf",
        "gpt-4o-mini",
    ]  # the empty box was the starting model, loaded already


def test_a_character_is_picked_by_id_never_by_path(web: WebApp, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    save_character(make_english_character(), elsewhere)
    state = web.on_load(None)[0]
    with pytest.raises(InputError, match="no character"):
        web.on_pick(str(elsewhere), state)
    assert state["current"] == "xm"


def test_the_page_serves_the_packages_images_and_nothing_else_of_them(
    web: WebApp, rolecast_home: Path
) -> None:
    served = [p.resolve() for p in web.served_paths()]
    xm = (rolecast_home / "characters" / "xm").resolve()
    assert xm / "images" in served and web.audio_dir.resolve() in served
    for folder in served:  # no package folder, nor the folder that holds them
        assert not (folder / "persona.md").exists() and not (folder / "character.toml").exists()
        assert folder != xm.parent
    # an image name that points out of the images folder is not shown (nor served)
    c = make_character()
    c.portrait = "persona.md"
    save_character(c, rolecast_home / "characters" / "sly")
    state = web.on_load(None)[0]
    assert web.on_pick("sly", state)[1] is None  # no portrait: not the persona's path


def _png() -> bytes:
    from PIL import Image  # comes with gradio

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.e2e  # a real server / real processes
def test_a_served_page_asks_for_login_and_never_serves_the_persona(rolecast_home: Path) -> None:
    """The attack itself, against ``rolecast web``: the package's files by Gradio's file route."""
    pytest.importorskip("gradio")
    import httpx

    c = make_english_character()
    c.portrait = "images/portrait.png"
    package = rolecast_home / "characters" / "mia"
    save_character(c, package, images={"portrait.png": _png()})
    port = free_port()
    env = {**os.environ, "ROLECAST_HOME": str(rolecast_home), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop(AUTH_ENV, None)
    argv = ["web", "mia", "--backend", "echo", "--port", str(port), "--auth", "ann:correct-horse"]
    log = rolecast_home / "web.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rolecast.cli.main", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "rolecast web did not start in 120 s"
                time.sleep(0.3)
        files = {
            name: f"{base}/gradio_api/file={package.resolve() / name}"
            for name in ("persona.md", "character.toml", "canon.jsonl", "images/portrait.png")
        }
        with httpx.Client(timeout=30) as client:
            for url in files.values():  # nothing without a login, not even the images
                assert client.get(url).status_code == 401
            refused = client.post(f"{base}/login", data={"username": "ann", "password": "nope"})
            assert refused.status_code == 400
            ok = client.post(f"{base}/login", data={"username": "ann", "password": "correct-horse"})
            assert ok.status_code == 200
            for name in ("persona.md", "character.toml", "canon.jsonl"):
                got = client.get(files[name])
                assert got.status_code == 403, (name, got.status_code)
                assert c.persona not in got.text
            portrait = client.get(files["images/portrait.png"])
            assert portrait.status_code == 200 and portrait.content[:4] == b"\x89PNG"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
