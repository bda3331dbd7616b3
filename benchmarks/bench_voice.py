"""Voice figures: real-time factor of each TTS backend, and how soon the speech of a reply starts
with the default Japanese voice (kokoro jf_alpha) when it is made sentence by sentence, against
one synthesis of the whole text.

    python benchmarks/bench_voice.py [--repeat 5] [--skip-openai] [--translate] [--json out.json]

RTF here is audio seconds per wall second: above 1 is faster than real time. The openai backend
is measured against `rolecast serve`'s own /v1/audio/speech on 127.0.0.1 (in this process), so it
is the local backend behind it plus HTTP. Time to first audio runs from the moment a reply's text
is complete (the model loaded and warmed up) to the first piece of audio being ready; the target
is <= 1.5 s. ``--translate`` adds a Chinese reply spoken with the Japanese voice through the local
model (uncached, then cached). Run it on a quiet machine: ONNX Runtime's threads slow down badly
when the two cores are shared; the footer says how much CPU others used meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_core import CpuWatch  # this folder is on sys.path when run as a script

RTF_TEXTS = {
    "ja": [
        "こんにちは。",
        "霧が深いね、旅人さん。座って、まず麺を一杯どうぞ。",
        "今日は雨が降りそうだから、傘を持っていったほうがいいよ。八文で直してあげる。値切りはなしね。",
    ],
    "zh": [
        "你好。",
        "雾这么大，旅人，坐下先来碗面吧。",
        "哟，雾这么大还摸得到石桥头？坐，先来碗面，八文，不讲价。好吧，讲也行咯。",
    ],
    "en": [
        "Hello.",
        "Sit down, the soup is hot and the noodles are fresh.",
        "The black cat stole a fish again, so no soup for him tonight. Two coins and I will fix "
        "your umbrella too.",
    ],
}
# replies of a few sentences, as a Japanese character would say them
REPLIES = [
    "ねえ、キョン！今日の部活は絶対に休んじゃだめよ。わかった？",
    "霧が深いね、旅人さん。座って、まず麺を一杯どうぞ。八文、値切りはなしよ。",
    "（腕を組んで）遅い！罰金よ、罰金。次はもっと早く来なさい。",
    "だから言ったでしょう、宇宙人も未来人も超能力者も、きっとこの町にいるって。",
]
ZH_REPLY = "哟，旅人，雾这么大你还来了。坐，先来碗面吧。"
OTHERS_WARN = 0.05


def rtf(tts, voice: str | None, texts: list[str], repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median real-time factor over ``repeat`` rounds of ``texts`` (after one warm-up)."""
    tts.synthesize(texts[0], voice)
    factors, audio_s = [], 0.0
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            audio = tts.synthesize(text, voice)
            wall = time.perf_counter() - start
            factors.append(audio.duration / wall)
            audio_s += audio.duration
    return {"rtf": statistics.median(factors), "audio_s": audio_s / repeat}


def first_audio(speaker_factory, replies: list[str], repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Medians: time to the first audio with the default first piece, with whole sentences,
    and with one synthesis of the whole text; plus the whole reply's synthesis time."""
    short, sentences, whole, total = [], [], [], []
    cut = speaker_factory(None)
    uncut = speaker_factory(0)
    tts = cut.tts
    for _ in range(repeat):
        for reply in replies:
            short.append(cut.speak(reply).first_audio_s)
            s = uncut.speak(reply)
            sentences.append(s.first_audio_s)
            total.append(s.total_s)
            start = time.perf_counter()
            tts.synthesize(s.text, cut.voice)  # the whole reply at once: nothing until the end
            whole.append(time.perf_counter() - start)
    return {
        "first_piece_s": statistics.median(short),
        "first_sentence_s": statistics.median(sentences),
        "whole_text_s": statistics.median(whole),
        "all_sentences_s": statistics.median(total),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path):  # type: ignore[no-untyped-def]
    import uvicorn

    from rolecast.server.app import create_app
    from rolecast.server.run import build_state

    state = build_state(backend="echo", environ={"ROLECAST_HOME": str(home)})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}/v1"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds per measure (median)")
    ap.add_argument("--skip-openai", action="store_true", help="leave out the openai backend")
    ap.add_argument("--translate", action="store_true", help="add zh -> ja through the local model")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-voice-"))
    os.environ["ROLECAST_HOME"] = str(home)
    from rolecast.character.model import Character
    from rolecast.voice.base import get_tts
    from rolecast.voice.speaker import Speaker

    watch = CpuWatch()
    figures: dict[str, object] = {"repeat": args.repeat, "nproc": os.cpu_count()}
    print(
        f"# rolecast voice benchmark\n\n- {time.strftime('%Y-%m-%d %H:%M')} · nproc "
        f"{os.cpu_count()} · python {sys.version.split()[0]} · median of {args.repeat}\n"
    )
    print("## Real-time factor (audio seconds per wall second; > 1 is faster than real time)\n")
    print("| backend | voice | language | RTF | audio per round |\n|---|---|---|---|---|")
    kokoro, espeak = get_tts("kokoro"), get_tts("espeak")
    cases = [
        ("kokoro", kokoro, "jf_alpha", "ja"),
        ("espeak", espeak, "cmn-latn-pinyin", "zh"),
        ("espeak", espeak, "en", "en"),
    ]
    server = None
    if not args.skip_openai:
        server, thread, url = start_server(home)
        for model, voice, lang in (
            ("kokoro", "jf_alpha", "ja"),
            ("espeak", "cmn-latn-pinyin", "zh"),
        ):
            tts = get_tts("openai", base_url=url, api_key="x", model=model)
            cases.append((f"openai -> serve ({model})", tts, voice, lang))
    rows = []
    for name, tts, voice, lang in cases:
        r = rtf(tts, voice, RTF_TEXTS[lang], args.repeat)
        rows.append({"backend": name, "voice": voice, "language": lang, **r})
        print(f"| {name} | {voice} | {lang} | {r['rtf']:.2f} | {r['audio_s']:.1f} s |")
    figures["rtf"] = rows
    if server is not None:
        server.should_exit = True
        thread.join(timeout=10)

    print("\n## The mouth's timeline: its cost against the speech's own (target <= 5%)\n")
    print("What the web page writes beside each spoken WAV: the timeline, the vowels of a")
    print("Japanese reply (its kana read by pyopenjtalk), the reply's face, as JSON.\n")
    from rolecast.avatar.expression import expression
    from rolecast.voice.mouth import mouth_timeline, with_vowels

    print("| backend | voice | TTS s | timeline ms | share |\n|---|---|---|---|---|")
    mouth_rows = []
    for name, tts, voice, lang in cases[:3]:
        spoken, timed = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            text = "".join(RTF_TEXTS[lang])
            audio = tts.synthesize(text, voice)
            spoken.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            timeline = with_vowels(mouth_timeline(audio), [(0.0, audio.duration, text)])
            json.dumps(timeline.to_dict() | {"expression": expression(text)})
            timed.append(time.perf_counter() - t0)
        tts_s, mouth_s = statistics.median(spoken), statistics.median(timed)
        mouth_rows.append({"backend": name, "voice": voice, "tts_s": tts_s, "mouth_s": mouth_s})
        print(f"| {name} | {voice} | {tts_s:.2f} | {mouth_s * 1000:.2f} | {mouth_s / tts_s:.2%} |")
    figures["mouth"] = mouth_rows

    print("\n## Time to first audio, default Japanese voice (kokoro jf_alpha), warm model\n")
    ja = Character("bench", "ハルヒ", "", language="ja")

    def japanese(first_chars):  # type: ignore[no-untyped-def]
        s = Speaker.for_character(ja, tts=kokoro)
        s.first_chars = first_chars
        return s

    f = first_audio(japanese, REPLIES, args.repeat)
    figures["first_audio"] = f
    verdict = "yes" if f["first_piece_s"] <= 1.5 else "NO"
    print(
        "| sentence by sentence, short first piece (default) | whole first sentence | "
        "whole text at once | all sentences done | <= 1.5 s |\n|---|---|---|---|---|"
    )
    print(
        f"| {f['first_piece_s']:.2f} s | {f['first_sentence_s']:.2f} s | "
        f"{f['whole_text_s']:.2f} s | {f['all_sentences_s']:.2f} s | {verdict} |"
    )

    if args.translate:
        from rolecast.backends.local import LocalLLM
        from rolecast.character.model import Voice
        from rolecast.voice.translate import TranslationCache, Translator

        print("\n## A Chinese reply with the Japanese voice (translated by the local model)\n")
        llm = LocalLLM(model=None, n_ctx=2048, seed=7)
        xm = Character("xm", "林小满", "", voice=Voice("kokoro", "jf_nezumi", "ja"))
        translator = Translator(llm, TranslationCache(home / "t.sqlite3"))
        speaker = Speaker.for_character(xm, translator=translator, tts=kokoro)
        cold = speaker.speak(ZH_REPLY)
        warm = speaker.speak(ZH_REPLY)
        figures["translated"] = {
            "translate_s": cold.translate_s,
            "first_audio_s": cold.first_audio_s,
            "cached_first_audio_s": warm.first_audio_s,
            "text": cold.text,
        }
        print("| translation | first audio (uncached) | first audio (cached) | said |")
        print("|---|---|---|---|")
        print(
            f"| {cold.translate_s:.2f} s | {cold.first_audio_s:.2f} s | "
            f"{warm.first_audio_s:.2f} s | {cold.text} |"
        )
        llm.close()

    others = watch.summary().get("others_cpu_share")
    if others is not None:
        figures["others_cpu_share"] = others
        print(f"\nCPU used by other processes during the run: {others:.0%} of the machine")
        if others > OTHERS_WARN:
            print("WARNING: the machine was busy; these timings are pessimistic")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, ensure_ascii=False, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
