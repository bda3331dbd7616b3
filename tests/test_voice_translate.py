"""Translation before speech: the prompt, the cache, the checks, and a real local model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.model import Character, Line, Scene, Voice
from rolecast.errors import VoiceError
from rolecast.voice.speaker import Speaker
from rolecast.voice.translate import (
    TranslationCache,
    Translator,
    cache_path,
    clean_translation,
)

KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30fa]")
NAMES = ["林小满", "小满", "旅人", "周伯", "煤球"]


def test_prompt_keeps_names_and_tone_and_the_cache_saves_a_call(tmp_path: Path) -> None:
    llm = ScriptedLLM().enqueue("周伯さんが言ってたよ、明日は雨だって。旅人、うろうろしないでね。")
    cache = TranslationCache(tmp_path / "t.sqlite3")
    t = Translator(llm, cache)
    text = "周伯说明天要下雨，旅人你可别乱跑咯。"
    out = t.translate(text, "zh", "ja", NAMES, speaker="林小满")
    assert out.startswith("周伯さんが言ってたよ") and t.calls == 1
    (messages, params) = llm.requests[0]
    system, user = messages[0]["content"], messages[1]["content"]
    assert user == text
    assert "from Chinese (中文) into Japanese (日本語)" in system
    assert "The names here: 旅人, 周伯." in system  # the names in the line, and only those
    assert "煤球" not in system and "林小满 talks" in system  # whose tone to keep
    assert "translation and nothing else" in system
    assert params.temperature == 0.0
    # a second time: from the cache, no backend call (none is queued: a call would fail)
    assert t.translate(text, "zh", "ja", NAMES) == out and t.calls == 1
    # a new translator with the same cache file: still a hit
    again = Translator(ScriptedLLM(), TranslationCache(tmp_path / "t.sqlite3"))
    assert again.translate(text, "zh", "ja") == out and again.calls == 0
    # another target language or another model is another entry
    other = ScriptedLLM().enqueue("Zhou Bo says it will rain tomorrow.")
    assert Translator(other, cache).translate(text, "zh", "en").startswith("Zhou Bo")
    model_b = ScriptedLLM().enqueue("明日は雨だよ。")
    model_b.model = "another-model"
    assert Translator(model_b, cache).translate(text, "zh", "ja") == "明日は雨だよ。"


def test_default_cache_lives_under_the_rolecast_home(rolecast_home: Path) -> None:
    assert cache_path() == rolecast_home / "cache" / "translations.sqlite3"
    t = Translator(ScriptedLLM().enqueue("こんにちは。"))
    t.translate("你好。", "zh", "ja")
    assert cache_path().is_file()


def test_wrong_language_is_retried_then_refused(tmp_path: Path) -> None:
    llm = ScriptedLLM().enqueue("你好，我是小满。").enqueue("こんにちは、小満です。")
    t = Translator(llm, TranslationCache(tmp_path / "c.sqlite3"))
    assert t.translate("你好，我是小满。", "zh", "ja") == "こんにちは、小満です。"
    assert t.calls == 2 and llm.requests[1][1].temperature > 0  # sampled differently
    stubborn = ScriptedLLM().enqueue("你好。").enqueue("你好！")
    t2 = Translator(stubborn, TranslationCache(tmp_path / "c.sqlite3"))
    with pytest.raises(VoiceError, match="came back in Chinese.*try a stronger model"):
        t2.translate("你好。", "zh", "ja")
    assert t2.cache is not None and t2.cache.get(t2.key("你好。", "zh", "ja")) is None


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Translation: 「こんにちは、旅人さん。」", "こんにちは、旅人さん。"),
        ("日本語：やあ。\n\nNote: I kept the name 小满.", "やあ。"),
        ("```\nこんにちは\n```", "こんにちは"),
        ('"Hello there."', "Hello there."),
    ],
)
def test_clean_translation(raw: str, clean: str) -> None:
    target = "en" if clean.startswith("Hello") else "ja"
    assert clean_translation(raw, target) == clean


def test_unusable_cache_is_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    llm = ScriptedLLM().enqueue("やあ。").enqueue("やあ。")
    t = Translator(llm, TranslationCache(blocker / "t.sqlite3"))  # cannot be created
    assert t.translate("你好", "zh", "ja") == "やあ。"
    assert t.translate("你好", "zh", "ja") == "やあ。" and t.calls == 2  # no cache, no crash


def xiaoman_in_japanese() -> Character:
    return Character(
        "xm",
        "林小满",
        "",
        language="zh",
        user_role="旅人",
        scenes=[Scene("s", "t", (Line("周伯", "嗯。"),))],
        voice=Voice("kokoro", "jf_nezumi", "ja"),
    )


@pytest.mark.e2e  # kokoro speaks
def test_speaker_translates_only_when_the_languages_differ() -> None:
    llm = ScriptedLLM().enqueue("霧が深いね、旅人さん。")
    speaker = Speaker.for_character(xiaoman_in_japanese(), translator=Translator(llm, None))
    speech = speaker.speak("（抬头）雾好大啊，旅人。")
    assert speech.translated and speech.text == "霧が深いね、旅人さん。"
    assert speech.source == "zh" and speech.language == "ja"
    assert llm.requests[0][0][1]["content"] == "雾好大啊，旅人。"  # narration is not translated
    assert speech.audio.sample_rate == 24000 and speech.audio.rms() > 0.02
    assert speech.translate_s <= speech.first_audio_s
    same = speaker.speak("ねえ、旅人さん。")  # already Japanese: no backend call
    assert not same.translated and len(llm.requests) == 1
    untranslated = Speaker.for_character(xiaoman_in_japanese(), translator=None)
    assert not untranslated.speak("你好。").translated  # --no-translate: said as it is


@pytest.fixture(scope="module")
def qwen():  # type: ignore[no-untyped-def]
    from rolecast.backends.local import LocalLLM

    # SmolLM2 speaks English only: Chinese into Japanese needs the default Qwen model
    llm = LocalLLM(model=None, n_ctx=2048, seed=7)
    yield llm
    llm.close()


def test_translation_with_the_real_local_model(qwen, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = Translator(qwen, TranslationCache(tmp_path / "c.sqlite3"))
    out = t.translate("你好，我是林小满。", "zh", "ja", NAMES, speaker="林小满")
    assert KANA.search(out), out  # Japanese, not the Chinese given
    assert "林" in out  # her name is kept
    assert t.translate("你好，我是林小满。", "zh", "ja") == out and t.calls == 1
    speech = Speaker.for_character(xiaoman_in_japanese(), translator=t).speak("你好，我是林小满。")
    assert speech.text == out and np.any(speech.audio.samples)


def test_a_lazy_backend_loads_on_first_use_and_then_is_the_backend(tmp_path: Path) -> None:
    from rolecast.voice.translate import LazyLLM

    made: list[ScriptedLLM] = []

    def make() -> ScriptedLLM:
        made.append(ScriptedLLM().enqueue("こんにちは。"))
        return made[-1]

    lazy = LazyLLM(make, "scripted", None)
    cache = TranslationCache(tmp_path / "t.sqlite3")
    t = Translator(lazy, cache)
    # the cache key needs the given name and model only: a hit loads nothing
    assert (lazy.name, lazy.model) == ("scripted", "default")
    cache.put(t.key("早。", "zh", "ja"), "おはよう。")
    assert t.translate("早。", "zh", "ja") == "おはよう。" and not made and not lazy.loaded
    lazy.close()  # closing one never loaded does not load it
    assert not made
    # a miss loads it, once; then it speaks for the backend it made
    assert t.translate("你好。", "zh", "ja") == "こんにちは。" and len(made) == 1
    assert lazy.loaded and lazy.inner is made[0] and made[0].requests
    assert lazy.prompt_order == made[0].prompt_order and lazy.requests is made[0].requests
    assert lazy.model == "default"  # still the key's model, not the backend's own name for it
    assert "requests" not in vars(lazy)  # delegated through WrappedLLM, nothing copied
    lazy.close()
    assert len(made) == 1
