"""The mouth timeline follows the audio's envelope: closed in silence, open in speech."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from rolecast.voice.base import Audio
from rolecast.voice.mouth import FPS, frame_rms, mouth_timeline, shape


def tone(seconds: float, amplitude: float, rate: int = 24000, hz: float = 220) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_silence_closes_and_a_tone_opens_the_mouth() -> None:
    rate = 24000
    samples = np.concatenate(
        [np.zeros(rate // 2, np.float32), tone(0.5, 0.3), np.zeros(rate // 2, np.float32)]
    )
    t = mouth_timeline(Audio(samples, rate))
    assert t.fps == FPS and t.duration == pytest.approx(1.5, abs=1 / FPS)
    assert all(x == 0 for x in t.open[:15])  # the first half second is silent
    assert all(x > 0.6 for x in t.open[16:29]) and set(t.shapes[16:29]) == {"open"}
    # after the tone the mouth closes within a few frames, and stays closed
    assert t.open[30 + 8] == 0 and all(x == 0 for x in t.open[40:])
    assert t.at(0.75) > 0.6 and t.at(0.1) == 0 and t.at(9) == 0
    data = t.to_dict()
    assert data["fps"] == FPS and len(data["open"]) == len(data["shapes"]) == 45


def test_a_quiet_voice_opens_as_wide_as_a_loud_one_and_noise_does_not_move_it() -> None:
    rate = 16000
    quiet = np.concatenate([tone(0.4, 0.05, rate), np.zeros(rate // 5, np.float32)])
    loud = np.concatenate([tone(0.4, 0.8, rate), np.zeros(rate // 5, np.float32)])
    assert max(mouth_timeline(Audio(quiet, rate)).open) == pytest.approx(
        max(mouth_timeline(Audio(loud, rate)).open), abs=0.05
    )
    noise = (np.random.default_rng(0).standard_normal(rate) * 0.003).astype(np.float32)
    assert max(mouth_timeline(Audio(noise, rate)).open) == 0  # below the floor


def test_the_timeline_follows_a_real_voice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    from rolecast.voice.base import get_tts

    tts = get_tts("espeak")
    start = time.perf_counter()
    audio = tts.synthesize("Coal! Drop that fish. Right now, or no soup tonight.")
    spoken = time.perf_counter() - start
    start = time.perf_counter()
    t = mouth_timeline(audio)
    took = time.perf_counter() - start
    rms = frame_rms(audio)
    assert len(rms) == len(t.open)
    # the opening rises and falls with the envelope: strongly correlated, closed where silent
    assert np.corrcoef(rms, np.asarray(t.open))[0, 1] > 0.8
    # closed once the voice has been silent for six frames (it closes over a few, as a mouth does)
    quiet = [all(r < 0.005 for r in rms[max(0, i - 5) : i + 1]) for i in range(len(rms))]
    assert any(quiet) and all(o == 0 for o, q in zip(t.open, quiet, strict=True) if q)
    assert {"closed", "open"} <= set(t.shapes)
    assert took < 0.05 * spoken + 0.005  # well under 5% of the speech's own time
    assert shape(0.1) == "closed" and shape(0.3) == "half" and shape(0.9) == "open"


def test_kana_become_one_vowel_per_mora() -> None:
    from rolecast.voice.kana import is_japanese, vowels

    assert vowels("こんにちは") == ["o", "n", "i", "i", "a"]
    assert vowels("キョーカ") == ["o", "o", "a"]  # キョ is one mora, ー holds its vowel
    assert vowels("やった！") == ["a", "", "a"]  # ッ: a held silence
    assert vowels("ｱｲｳ") == ["a", "i", "u"]  # half-width kana too
    assert vowels("面四文") == [] and not is_japanese("面四文") and is_japanese("雪だ")


def test_a_japanese_piece_lays_its_vowels_over_its_own_open_frames() -> None:
    from rolecast.voice.mouth import speech_timeline, with_vowels

    rate = 16000
    gap = 0.3
    first, second = Audio(tone(0.5, 0.3, rate), rate), Audio(tone(0.5, 0.3, rate), rate)
    joined = Audio(
        np.concatenate([first.samples, np.zeros(int(gap * rate), np.float32), second.samples]),
        rate,
    )
    t = speech_timeline(joined, [("あい", first, 0.0), ("お", second, gap)])
    assert len(t.vowels) == len(t.open)
    opened = [i for i, x in enumerate(t.open) if x > 0]
    assert all(t.vowels[i] == "" for i in range(len(t.open)) if t.open[i] == 0)
    assert t.vowels[opened[0]] == "a" and "i" in t.vowels[:24]
    assert t.vowels[opened[-1]] == "o" and "o" not in t.vowels[:15]
    assert t.to_dict()["vowels"] == list(t.vowels)
    # Chinese or English: no vowels (the amplitude alone moves the mouth)
    plain = with_vowels(mouth_timeline(joined), [(0.0, 1.3, "面四文一碗")])
    assert plain.vowels == () and "vowels" not in plain.to_dict()


@pytest.mark.needs("pyopenjtalk", extra="voice")
def test_kanji_are_read_by_the_tts_front_end() -> None:
    from rolecast.voice.kana import reading, vowels

    read = reading("今日は雨です")
    assert "キョー" in read and "アメ" in read
    assert vowels(read)[:2] == ["o", "o"]
