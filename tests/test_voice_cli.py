"""`rolecast say`, `rolecast chat --speak [--play]`, and `/v1/audio/speech` end to end: the
official SDK and rolecast's own openai TTS backend against a real server on 127.0.0.1."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from servers import uvicorn_thread

from rolecast.character.model import Character
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.voice.translate import TranslationCache, Translator, cache_path
from rolecast.voice.wav import read_wav

RMS_FLOOR = 0.02
KEY = "key-voice-1234"


def assert_speech(path: Path, rate: int, seconds: float = 0.3) -> None:
    audio = read_wav(path)
    assert audio.sample_rate == rate
    assert audio.duration > seconds and audio.rms() > RMS_FLOOR


@pytest.fixture
def haruhi(rolecast_home: Path) -> Path:
    c = Character("haruhi", "涼宮ハルヒ", "あなたは涼宮ハルヒ。", language="ja", user_role="キョン")
    return save_character(c, rolecast_home / "characters" / "haruhi")


@pytest.mark.e2e  # a real speech engine
def test_say_speaks_xiaoman_in_chinese(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.wav"
    assert main(["say", "xiaoman", "（擦手）哟，旅人！坐，先来碗面。", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and "espeak cmn-latn-pinyin" in printed
    assert "translated" not in printed
    assert_speech(out, 22050, 1.0)


@pytest.mark.e2e  # a real speech engine
def test_say_japanese_with_kokoro_and_choices(haruhi: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "h.wav"
    assert main(["say", "haruhi", "ねえ、キョン！", "-o", str(out), "--voice", "jf_tebukuro"]) == 0
    assert "kokoro jf_tebukuro" in capsys.readouterr().out
    assert_speech(out, 24000)
    english = tmp_path / "e.wav"  # another backend and voice: spoken as given
    args = ["say", "haruhi", "Hello there.", "-o", str(english), "--tts", "espeak", "--voice", "en"]
    assert main([*args, "--speed", "1.5"]) == 0
    assert_speech(english, 22050)


@pytest.mark.e2e  # a real speech engine
def test_say_translates_through_the_cache(haruhi: Path, tmp_path: Path, capsys) -> None:
    # the echo backend cannot translate: a cached translation for it proves the CLI path
    # (backend -> cache key -> translation -> Japanese voice) without loading a model
    from rolecast.voice.translate import LazyLLM

    echo = LazyLLM(lambda: None, "echo", "m1")  # type: ignore[arg-type,return-value]
    t = Translator(echo, TranslationCache(cache_path()))
    t.cache.put(t.key("雾好大。", "zh", "ja"), "霧が深いね。")  # type: ignore[union-attr]
    out = tmp_path / "t.wav"
    assert (
        main(["say", "haruhi", "雾好大。", "-o", str(out), "--backend", "echo", "--model", "m1"])
        == 0
    )
    assert "translated zh->ja: 霧が深いね。" in capsys.readouterr().out
    assert_speech(out, 24000)
    plain = tmp_path / "p.wav"  # --no-translate: no translation is looked for
    assert main(["say", "haruhi", "雾好大。", "-o", str(plain), "--no-translate"]) == 0
    assert "translated" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["hi", "--tts", "festival"], "unknown TTS backend 'festival'; known TTS backends: espeak"),
        (["hi", "--tts", "espeak", "--voice", "klingon"], "unknown espeak voice 'klingon'"),
        (["", "--tts", "espeak"], "empty text"),
        (["（叹气）*摇头*", "--tts", "espeak"], "nothing speakable in '（叹气）*摇头*'"),
        (["hi", "--tts", "espeak", "--speed", "9"], "speed must be between 0.25 and 4.0"),
    ],
)
def test_say_bad_input_is_a_clean_error(tmp_path: Path, capsys, args, message: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o.wav"
    assert main(["say", "xiaoman", *args[:1], "-o", str(out), *args[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rolecast: error: ") and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.needs("pypinyin", extra="voice")
def test_say_output_problems(tmp_path: Path, capsys) -> None:
    assert main(["say", "xiaoman", "你好"]) == 1
    assert "say needs -o FILE.wav to write, or --play" in capsys.readouterr().err
    assert main(["say", "xiaoman", "你好", "-o", str(tmp_path)]) == 1
    assert "it is a folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["say", "xiaoman", "你好", "-o", str(blocker / "a.wav")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def fake_player(folder: Path) -> Path:
    """An `aplay` that records its arguments and the audio it was fed."""
    folder.mkdir()
    script = folder / "aplay"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/args"\ncat >> "{folder}/played.raw"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.e2e  # a real speech engine
def test_say_play_streams_the_audio_to_a_player(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    bin_dir = fake_player(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    out = tmp_path / "p.wav"
    assert main(["say", "xiaoman", "你好。今天下雨了。", "-o", str(out), "--play"]) == 0
    args = (bin_dir / "args").read_text()
    assert "-f S16_LE -c 1 -r 22050 -" in args  # raw PCM on stdin, started once
    played = np.frombuffer((bin_dir / "played.raw").read_bytes(), "<i2")
    written = read_wav(out)
    assert len(played) == len(written.samples)  # both sentences and the pause between
    assert np.allclose(played / 32768.0, written.samples, atol=1e-3)


@pytest.mark.e2e  # a real speech engine
def test_chat_play_plays_every_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    bin_dir = fake_player(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    lines = iter(["你好。", "雨停了。", "/quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(lines))
    audio = tmp_path / "a"
    args = ["chat", "xiaoman", "--backend", "echo", "--speak", "--play", "--audio-dir", str(audio)]
    assert main(args) == 0
    assert len((bin_dir / "args").read_text().splitlines()) == 2  # one player per reply
    played = len((bin_dir / "played.raw").read_bytes()) // 2
    assert played == sum(len(read_wav(f).samples) for f in audio.iterdir())


def test_play_without_a_player(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no player at all
    assert main(["say", "xiaoman", "你好", "--play"]) == 1
    assert "no audio player found: install aplay" in capsys.readouterr().err
    out = tmp_path / "o.wav"
    assert main(["say", "xiaoman", "你好", "--play", "-o", str(out), "--tts", "espeak"]) == 1
    assert "apt-get install espeak-ng" in capsys.readouterr().err  # espeak-ng is not on PATH


@pytest.mark.e2e  # a real speech engine
def test_chat_speak_writes_a_wav_per_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    audio = tmp_path / "audio"
    assert (
        main(["chat", "--once", "你好", "--backend", "echo", "--speak", "--audio-dir", str(audio)])
        == 0
    )
    out = capsys.readouterr().out
    (first,) = sorted(audio.glob("xiaoman-*-001.wav"))
    assert out.startswith("林小满: 你好\n[audio: ") and str(first) in out
    assert_speech(first, 22050)
    lines = iter(["（笑）", "雨停了，面好了。", "/quit"])  # the first reply has nothing to say
    monkeypatch.setattr("builtins.input", lambda _prompt: next(lines))
    again = tmp_path / "again"
    assert main(["chat", "xiaoman", "--backend", "echo", "--speak", "--audio-dir", str(again)]) == 0
    captured = capsys.readouterr()
    assert "rolecast: voice: nothing speakable" in captured.err  # said, and the chat went on
    (second,) = again.iterdir()
    assert second.name.endswith("-002.wav")  # named by its turn
    assert f"[audio: {second}" in captured.out
    assert_speech(second, 22050, 1.0)


def test_chat_once_voice_error_fails_the_command(tmp_path: Path, capsys) -> None:
    args = ["chat", "--once", "hi", "--backend", "echo", "--speak", "--tts", "espeak"]
    assert main([*args, "--voice", "klingon", "--audio-dir", str(tmp_path)]) == 1
    assert "unknown espeak voice 'klingon'" in capsys.readouterr().err


# ---------------------------------------------------------------- /v1/audio/speech


@pytest.fixture
def speech_server(rolecast_home: Path):  # type: ignore[no-untyped-def]
    from rolecast.server.app import create_app
    from rolecast.server.run import build_state

    state = build_state(api_keys=[KEY], backend="echo")
    with uvicorn_thread(create_app(state)) as base:
        yield f"{base}/v1"
    state.store.close()


def test_openai_tts_backend_against_rolecast_serve(speech_server: str, tmp_path: Path) -> None:
    from openai import OpenAI

    from rolecast.errors import UnknownNameError, VoiceError
    from rolecast.voice.base import get_tts
    from rolecast.voice.wav import parse_wav

    # the official SDK, as any client would call it
    client = OpenAI(base_url=speech_server, api_key=KEY, max_retries=0)
    r = client.audio.speech.create(model="espeak", voice="en", input="Hello there.")
    assert parse_wav(r.read()).sample_rate == 22050
    # rolecast's openai TTS backend: wav and pcm (24 kHz, as OpenAI sends it)
    tts = get_tts("openai", base_url=speech_server, api_key=KEY, model="espeak")
    short, long = tts.synthesize("Hello.", "en"), tts.synthesize("Hello there, how are you?", "en")
    assert short.sample_rate == 22050 and long.duration > 1.5 * short.duration
    assert long.rms() > RMS_FLOOR
    pcm = get_tts(
        "openai", base_url=speech_server, api_key=KEY, model="kokoro", response_format="pcm"
    )
    ja = pcm.synthesize("こんにちは。", "jf_alpha")
    assert ja.sample_rate == 24000 and ja.rms() > RMS_FLOOR
    # a character as the model: her own voice
    xm = get_tts("openai", base_url=speech_server, api_key=KEY, model="xiaoman")
    assert xm.synthesize("你好。", voice="cmn-latn-pinyin").sample_rate == 22050
    with pytest.raises(VoiceError, match="unknown espeak voice 'klingon'"):
        tts.synthesize("Hello.", "klingon")
    with pytest.raises(VoiceError, match="neither a TTS backend .* nor a character"):
        get_tts("openai", base_url=speech_server, api_key=KEY, model="nobody").synthesize("x")
    with pytest.raises(VoiceError, match="refused the API key"):
        get_tts("openai", base_url=speech_server, api_key="wrong", model="espeak").synthesize("x")
    bad = get_tts("openai", voices=["alloy"], base_url=speech_server, api_key=KEY, model="espeak")
    with pytest.raises(
        UnknownNameError, match="unknown openai voice 'nova'; known openai voices: alloy"
    ):
        bad.synthesize("x", "nova")
    # and the command line through it
    out = tmp_path / "o.wav"
    args = ["say", "xiaoman", "你好，旅人。", "-o", str(out), "--tts", "openai"]
    args += ["--tts-base-url", speech_server, "--tts-api-key", KEY, "--tts-model", "espeak"]
    assert main([*args, "--voice", "cmn-latn-pinyin"]) == 0
    assert_speech(out, 22050)


@pytest.mark.needs("starlette", extra="server")
def test_speech_endpoint_rules(rolecast_home: Path) -> None:
    from starlette.testclient import TestClient

    from rolecast.server.app import create_app
    from rolecast.server.run import build_state

    client = TestClient(create_app(build_state(backend="echo")))
    ok = client.post("/v1/audio/speech", json={"model": "espeak", "input": "Hi.", "voice": "en"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "audio/wav"
    for body, status, message in [
        ({"model": "espeak", "input": "Hi.", "response_format": "mp3"}, 400, "use one of"),
        ({"model": "espeak", "input": ""}, 400, "empty text"),
        ({"model": "espeak", "input": "x" * 5000}, 400, "at most 4096"),
        ({"model": "espeak", "input": "Hi", "voice": "klingon"}, 400, "unknown espeak voice"),
        ({"model": "nobody", "input": "Hi"}, 404, "neither a TTS backend"),
        ({"input": "Hi"}, 400, "'model' must name a TTS backend"),
        ({"model": "espeak", "input": "Hi", "speed": "fast"}, 400, "'speed' must be a number"),
    ]:
        r = client.post("/v1/audio/speech", json=body)
        assert r.status_code == status and message in r.json()["error"]["message"], body


def test_speech_can_come_with_the_mouths_timeline(rolecast_home: Path) -> None:
    import base64

    from starlette.testclient import TestClient

    from rolecast.server.app import create_app
    from rolecast.server.run import build_state
    from rolecast.voice.mouth import mouth_timeline
    from rolecast.voice.wav import parse_wav

    client = TestClient(create_app(build_state(backend="echo")))
    body = {"model": "espeak", "input": "Drop that fish.", "voice": "en", "response_format": "json"}
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    data = r.json()
    audio = parse_wav(base64.b64decode(data["audio"]))
    assert data["duration"] == pytest.approx(audio.duration, abs=1e-3)
    # the timeline is the audio's own, frame for frame
    assert data["mouth"]["open"] == mouth_timeline(audio).to_dict()["open"]
    assert data["mouth"]["fps"] == 30 and "open" in data["mouth"]["shapes"]
