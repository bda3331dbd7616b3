"""Speaker attribution by voice, on speech synthesised here (espeak-ng) with known speakers."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import wave

import numpy as np
import pytest

from rolecast.errors import InputError
from rolecast.ingest.attribution import accuracy_against, attribute

VOICES = {  # distinct espeak-ng voices: variant, pitch and speed differ
    "Aki": ["-v", "en-us", "-p", "20", "-s", "150"],
    "Bea": ["-v", "en-gb+f3", "-p", "80", "-s", "170"],
    "Cid": ["-v", "en-us+m3", "-p", "50", "-s", "130"],
}
WORDS = "river lamp bridge fog noodle coin rain umbrella clock street road boat tea cat".split()


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {binary}")
        pytest.skip(f"needs {binary}")


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    _need("espeak-ng")
    from rolecast.ingest.attribution import VoiceEmbedder

    folder = tmp_path_factory.mktemp("voices")
    rng = random.Random(3)
    embedder = VoiceEmbedder()
    vectors, truth = {}, {}
    line = 0
    for name, args in VOICES.items():
        for _ in range(10):
            text = "The " + " and the ".join(rng.sample(WORDS, 3)) + " are here."
            f = folder / f"{line}.wav"
            subprocess.run(["espeak-ng", *args, "-w", str(f), text], check=True)
            with wave.open(str(f)) as w:
                audio = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
                rate = w.getframerate()
            vectors[line], truth[line] = embedder.embed(audio, rate), name
            line += 1
    vectors[line], truth[line] = embedder.embed(np.zeros(1000), 16000), "Aki"  # too short
    return vectors, truth


def test_three_labels_per_speaker_attribute_the_rest(voices) -> None:  # type: ignore[no-untyped-def]
    vectors, truth = voices
    labels = {}
    for name in VOICES:
        for line in [k for k, s in truth.items() if s == name][:3]:
            labels[line] = name
    report = attribute(vectors, labels)
    rest = [k for k in truth if k not in labels and vectors[k] is not None]
    result = accuracy_against(report, truth, rest)
    assert result["accuracy"] >= 0.95, result
    assert report.accuracy is not None and report.accuracy >= 0.9 and report.checked == 9
    short = max(truth)
    assert vectors[short] is None and report.attributions[short].band == "unknown"
    assert all(report.attributions[k].band == "label" for k in labels)


def test_an_unlabelled_voice_is_not_forced_onto_a_speaker(voices) -> None:  # type: ignore[no-untyped-def]
    vectors, truth = voices
    labels = {k: s for k, s in truth.items() if s == "Aki" and vectors[k] is not None}
    labels = dict(list(labels.items())[:3])
    report = attribute(vectors, labels)
    others = [k for k, s in truth.items() if s != "Aki"]
    wrong = [k for k in others if report.attributions[k].band == "assigned"]
    assert len(wrong) <= len(others) // 10  # Bea and Cid mostly stay maybe or unknown


def test_no_usable_labels_is_a_clear_error(voices) -> None:  # type: ignore[no-untyped-def]
    vectors, _ = voices
    with pytest.raises(InputError, match="label a few lines per speaker"):
        attribute(vectors, {})
