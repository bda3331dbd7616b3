"""Backend figures: local decode speed against raw llama-cpp-python, KV-cache reuse per prompt
order, the time to first token that rolecast adds over the raw backend, prompt evaluation
speed with and without llama.cpp's weight repacking, and what a person waits for in
`rolecast chat`: the greeting, the first reply of `--once` with and without the persona's
saved state, and later turns; and (quant) what re-quantizing the model for llama.cpp's repacked
4-bit kernels buys in prompt speed and costs in likelihood of the canon's own text.

    python benchmarks/bench_backends.py [--model qwen2.5-coder-0.5b] [--turns 4] [--tokens 48]
        [--parts decode,kv,ttft,prompt,chat,quant]

Run it on a quiet machine: llama.cpp's threads spin and slow down badly when the cores are shared.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = [
    "你好，你是谁？",
    "今天的面多少钱一碗？",
    "你怕不怕河水？",
    "明天还开摊吗？",
    "你爹是做什么的？",
    "对面的馄饨好吃吗？",
]


def decode_speed(llm, raw, messages, tokens: int, repeat: int) -> dict[str, float]:
    """Tokens/s of generation (after the first token) through rolecast and raw, same settings."""
    from rolecast.backends.base import GenerationParams

    params = GenerationParams(max_tokens=tokens, temperature=0.0, seed=1)

    def timed(stream) -> float:
        first = end = None
        n = 0
        for _ in stream:
            n += 1
            now = time.perf_counter()
            first = first or now
            end = now
        return (n - 1) / (end - first) if n > 1 and end and first and end > first else 0.0

    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(timed(llm.stream(messages, params)))
        raw_stream = raw.create_chat_completion(
            messages=messages,
            stream=True,
            max_tokens=tokens,
            temperature=0.0,
            top_p=params.top_p,
            repeat_penalty=params.repeat_penalty,
            seed=1,
        )
        theirs.append(timed(c for c in raw_stream if c["choices"][0]["delta"].get("content")))
    o, t = statistics.median(ours), statistics.median(theirs)
    return {"rolecast_tok_s": o, "raw_tok_s": t, "ratio": o / t if t else 0.0}


def kv_reuse(llm, character, index, order: str, turns: int, tokens: int) -> list[dict]:
    """Prompt tokens evaluated per turn (the rest came from the KV cache)."""
    from rolecast.backends.base import GenerationParams
    from rolecast.session import Session

    inner = llm._llm
    evaluated: list[int] = []
    real_eval = inner.eval

    def counting_eval(tokens_):  # type: ignore[no-untyped-def]
        evaluated.append(len(tokens_))
        return real_eval(tokens_)

    inner.eval = counting_eval
    inner.reset()
    session = Session(
        character, index, llm, order=order, params=GenerationParams(max_tokens=tokens, seed=1)
    )
    rows = []
    try:
        for i in range(turns):
            evaluated.clear()
            report = session.prepare(QUESTIONS[i % len(QUESTIONS)])
            prompt = inner.tokenize(
                _render(inner, report.assembly.messages).encode(), add_bos=False, special=True
            )
            session.reply(QUESTIONS[i % len(QUESTIONS)])
            fresh = evaluated[0] if evaluated else 0
            rows.append(
                {
                    "turn": i + 1,
                    "prompt_tokens": len(prompt),
                    "evaluated": fresh,
                    "cached_share": 1 - fresh / len(prompt) if prompt else 0.0,
                }
            )
    finally:
        inner.eval = real_eval
    return rows


def _render(inner, messages) -> str:  # type: ignore[no-untyped-def]
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = inner.metadata.get("tokenizer.chat_template", "")
    eos = inner.detokenize([inner.token_eos()]).decode(errors="ignore")
    bos = inner.detokenize([inner.token_bos()]).decode(errors="ignore")
    return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages).prompt


def ttft_added(llm, raw, character, index, tokens: int, repeat: int) -> dict[str, float]:
    """Time to first token that rolecast adds over the raw backend, in two measured parts.

    Prompt evaluation of a ~1,900-token prompt takes tens of seconds on these CPUs and varies by
    more than the 30 ms being measured, so the two parts are timed where that noise is absent:
    - before the backend: Session.prepare (retrieval, assembly, token counting) per question;
    - in the backend wrapper: first-token latency of LocalLLM.stream against raw
      create_chat_completion on the same messages with the prompt already in the KV cache on
      both sides, so only the last prompt token and the first new token are computed.
    """
    from rolecast.backends.base import GenerationParams
    from rolecast.session import Session

    params = GenerationParams(max_tokens=tokens, temperature=0.0, seed=1)
    prepare, ours, theirs = [], [], []

    def first_raw(kwargs: dict) -> float:
        start = time.perf_counter()  # the call itself counts: templating is work on both sides
        for c in raw.create_chat_completion(**kwargs):
            if c["choices"][0]["delta"].get("content"):
                break
        return time.perf_counter() - start

    def first_ours(messages: list[dict[str, str]]) -> float:
        start = time.perf_counter()
        next(iter(llm.stream(messages, params)))
        return time.perf_counter() - start

    for i in range(repeat):
        for q in QUESTIONS:
            session = Session(character, index, llm, params=params)
            start = time.perf_counter()
            messages = session.prepare(q).assembly.messages
            prepare.append(time.perf_counter() - start)
        messages = (
            Session(character, index, llm, params=params).prepare(QUESTIONS[i]).assembly.messages
        )
        raw_kwargs = dict(
            messages=messages, stream=True, max_tokens=tokens, temperature=0.0, seed=1
        )
        # warm both caches with this prompt, then time with it cached
        for _ in raw.create_chat_completion(**{**raw_kwargs, "max_tokens": 1}):
            pass
        for _ in llm.stream(messages, GenerationParams(max_tokens=1, temperature=0.0, seed=1)):
            pass
        for _ in range(3):
            theirs.append(first_raw(raw_kwargs))
            ours.append(first_ours(messages))
    p, o, t = (statistics.median(x) * 1000 for x in (prepare, ours, theirs))
    return {"prepare_ms": p, "rolecast_ms": o, "raw_ms": t, "added_ms": p + o - t}


SPEED_TEXT = "旅人问林小满：今天的面多少钱一碗？她说八文，不讲价。" * 80


def repack_speeds(path: str, repeat: int, n_tokens: int) -> dict[str, float]:
    """Median prompt evaluation tokens/s of a fresh ``n_tokens`` prompt with the GGUF at
    ``path``, loaded as rolecast loads it (weight repacking off) and with repacking on."""
    import llama_cpp

    from rolecast.backends.local import _no_weight_repacking

    found: dict[str, float] = {}
    for label in ("repack_off", "repack_on"):
        if label == "repack_off":
            with _no_weight_repacking(llama_cpp.llama):
                llm = llama_cpp.Llama(model_path=path, n_ctx=4096, verbose=False)
        else:
            llm = llama_cpp.Llama(model_path=path, n_ctx=4096, verbose=False)
        tokens = llm.tokenize(SPEED_TEXT.encode())[:n_tokens]
        speeds = []
        for _ in range(repeat):
            llm.reset()
            start = time.perf_counter()
            llm.eval(tokens)
            speeds.append(len(tokens) / (time.perf_counter() - start))
        found[label] = statistics.median(speeds)
        llm.close()
    return found


def prompt_speed(model: str, repeat: int, n_tokens: int = 1000) -> dict[str, float]:
    """Prompt evaluation tokens/s with and without llama.cpp's repacking, same build."""
    from rolecast.backends.models import resolve_model

    found = repack_speeds(str(resolve_model(model)), repeat, n_tokens)
    found["ratio"] = found["repack_on"] / found["repack_off"]
    return found


def requantized(model: str, repeat: int, corpus: str | None, kinds: str) -> list[dict]:
    """What re-quantizing the model for llama.cpp's repacked 4-bit kernels would buy and
    cost: prompt evaluation tokens/s (repacking off and on) and the mean negative
    log-likelihood per token of canon text (a character's own lines: lower is better), for
    the model as shipped and for each type in ``kinds`` made from it with
    ``llama_model_quantize`` (requantizing: the shipped file is all there is offline)."""
    import ctypes
    import glob

    import llama_cpp
    import numpy as np

    from rolecast.backends.models import resolve_model

    shipped = str(resolve_model(model))
    texts = ["旅人问林小满：今天的面多少钱一碗？她说八文，不讲价。" * 30]
    if corpus:
        files = sorted(glob.glob(f"{corpus}/**/*.txt", recursive=True))
        texts = [Path(f).read_text("utf-8", "replace")[:600] for f in files[:400:20]]
    rows = []
    work = Path(tempfile.mkdtemp(prefix="rolecast-quant-"))
    for kind in ["shipped", *kinds.split(",")]:
        path = shipped
        if kind != "shipped":
            path = str(work / f"{kind}.gguf")
            q = llama_cpp.llama_model_quantize_default_params()
            q.nthread, q.allow_requantize = os.cpu_count() or 1, True
            q.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}")
            if llama_cpp.llama_model_quantize(shipped.encode(), path.encode(), ctypes.byref(q)):
                raise SystemExit(f"llama.cpp could not quantize to {kind}")
        row: dict = {"kind": kind, "mb": Path(path).stat().st_size / 2**20}
        speeds = repack_speeds(path, repeat, 700)
        row["prompt_off"], row["prompt_on"] = speeds["repack_off"], speeds["repack_on"]
        llm = llama_cpp.Llama(model_path=path, n_ctx=2048, logits_all=True, verbose=False)
        total, n = 0.0, 0
        for text in texts:
            ids = llm.tokenize(text.encode())[:400]
            llm.reset()
            llm.eval(ids)
            logits = np.array(llm.scores[: len(ids) - 1], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            total -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
            n += len(ids) - 1
        llm.close()
        row["nll"], row["tokens"] = total / n, n
        rows.append(row)
        if kind != "shipped":
            Path(path).unlink()
    work.rmdir()
    return rows


def chat_waits(model: str, repeat: int, turns: int) -> dict[str, float]:
    """What a person waits for, in seconds (medians): process start to the greeting of
    `rolecast chat`; process start to the first reply text of `rolecast chat --once` with the
    model cache warm, without and then with the persona's saved state; and the first text of
    turns 2..``turns`` of one chat (in process, the persona warmed first), the next line sent
    at once and, as `rolecast chat` has it, after the next prompt's start was prefilled."""
    import subprocess

    from rolecast.backends.base import GenerationParams
    from rolecast.backends.local import LocalLLM
    from rolecast.character import store
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    env = {**os.environ, "ROLECAST_MODEL": model}
    states = Path(os.environ["ROLECAST_HOME"]) / "cache" / "kv"

    def first_output(argv: list[str], stdin: bool = False) -> float:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rolecast.cli.main", *argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdout is not None
        proc.stdout.read(1)
        took = time.perf_counter() - start
        if proc.stdin is not None:
            proc.stdin.close()
        proc.stdout.read()
        proc.wait(timeout=600)
        return took

    line = "今天的面多少钱？"
    subprocess.run(  # the model cache assembled, the index built: what "warm" means here
        [sys.executable, "-m", "rolecast.cli.main", "chat", "--once", line],
        env=env,
        capture_output=True,
        check=True,
    )
    greeting = statistics.median(first_output(["chat"], stdin=True) for _ in range(repeat))
    cold, saved = [], []
    for _ in range(repeat):
        for f in states.glob("*.kv"):
            f.unlink()
        cold.append(first_output(["chat", "--once", line]))
        saved.append(first_output(["chat", "--once", line]))

    character = store.load(store.DEFAULT_CHARACTER)
    index = load_index(character, "use")
    llm = LocalLLM(model=model, seed=1)
    found = {"greeting_s": greeting, "once_cold_s": statistics.median(cold)}
    found["once_saved_s"] = statistics.median(saved)
    for label, prefill in (("typed_at_once", False), ("after_prefill", True)):
        llm._llm.reset()
        session = Session(
            character,
            index,
            llm,
            order=llm.prompt_order,  # type: ignore[arg-type]
            params=GenerationParams(max_tokens=64, seed=1),
        )
        session.warm()
        later = []
        for i in range(turns):
            start = time.perf_counter()
            stream = session.say(QUESTIONS[i % len(QUESTIONS)])
            next(iter(stream), None)
            took = time.perf_counter() - start
            for _ in stream:
                pass
            if i:
                later.append(took)
            if prefill:  # what `rolecast chat` does while the user reads the reply and types
                session.prefill()
        found[f"{label}_p50_s"] = statistics.median(later)
        found[f"{label}_max_s"] = max(later)
        found["later_n"] = len(later)
    llm.close()
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--parts",
        default="decode,kv,ttft,prompt,chat",
        help="comma-separated: decode,kv,ttft,prompt,chat,quant",
    )
    ap.add_argument(
        "--kinds", default="q4_0,iq4_nl", help="quant part: llama.cpp types to re-quantize to"
    )
    ap.add_argument(
        "--trait",
        action="append",
        default=[],
        help="kv part: Big Five dials on the character (O=high): the dial text must not cost "
        "the cached prefix",
    )
    ap.add_argument("--orders", default="classic,split,cache", help="kv part: prompt orders")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    os.environ.setdefault("ROLECAST_HOME", tempfile.mkdtemp(prefix="rolecast-bench-"))

    import llama_cpp

    from rolecast.backends.local import LocalLLM, _no_weight_repacking
    from rolecast.backends.models import resolve_model
    from rolecast.character import store
    from rolecast.character.personality import parse_traits, with_dials
    from rolecast.retrieval.index import load_index

    character = with_dials(store.load(store.DEFAULT_CHARACTER), parse_traits(args.trait))
    index = load_index(character, "use")
    llm = LocalLLM(model=args.model, seed=1)
    with _no_weight_repacking(llama_cpp.llama):
        raw = llama_cpp.Llama(
            model_path=str(resolve_model(args.model)),
            n_ctx=llm.context_window,
            n_threads=os.cpu_count(),
            verbose=False,
            seed=1,
        )
    messages = [
        {"role": "system", "content": character.persona},
        {"role": "user", "content": "旅人:「讲讲你的面摊吧。」"},
    ]
    print(
        f"# rolecast backend benchmark\n\n- {time.strftime('%Y-%m-%d %H:%M')} · nproc "
        f"{os.cpu_count()} · python {sys.version.split()[0]} · llama-cpp-python "
        f"{llama_cpp.__version__} · model {Path(llm.path).name}\n"
    )

    if "decode" in parts:
        print_decode(decode_speed(llm, raw, messages, args.tokens, args.repeat), args)
    if "kv" in parts:
        print_kv(llm, character, index, args)
    if "ttft" in parts:
        print_ttft(ttft_added(llm, raw, character, index, args.tokens, args.repeat), args)
    llm.close()
    raw.close()
    if "prompt" in parts:
        p = prompt_speed(args.model, args.repeat)
        print("## Prompt evaluation (tokens/s, 1,000-token prompt, median of", args.repeat, ")\n")
        print("| repacking off (rolecast) | repacking on | ratio |\n|---|---|---|")
        print(f"| {p['repack_off']:.1f} | {p['repack_on']:.1f} | {p['ratio']:.2f} |\n")
    if "quant" in parts:
        rows = requantized(args.model, args.repeat, os.environ.get("ROLECAST_CORPUS"), args.kinds)
        base = rows[0]
        print(f"## Re-quantized for repacking ({rows[0]['tokens']} tokens of canon text)\n")
        print(
            "| weights | MB | prompt tok/s, repack off | repack on | on / shipped | NLL/token | "
            "perplexity vs shipped |\n|---|---|---|---|---|---|---|"
        )
        for r in rows:
            print(
                f"| {r['kind']} | {r['mb']:.0f} | {r['prompt_off']:.1f} | {r['prompt_on']:.1f} "
                f"| {r['prompt_on'] / base['prompt_off']:.2f} | {r['nll']:.4f} "
                f"| {math.exp(r['nll'] - base['nll']):.3f} |"
            )
        print()
    if "chat" in parts:
        w = chat_waits(args.model, args.repeat, max(args.turns, 10))
        print(f"## What a person waits for (s, median of {args.repeat})\n")
        print(
            "| greeting shown | --once first text, no saved state | --once, persona saved "
            f"| turns 2-{w['later_n'] + 1} first text p50 (max), the next line typed at once "
            "| the same, the user reading first (prefill) |\n|---|---|---|---|---|"
        )
        print(
            f"| {w['greeting_s']:.2f} | {w['once_cold_s']:.2f} | {w['once_saved_s']:.2f} | "
            f"{w['typed_at_once_p50_s']:.2f} ({w['typed_at_once_max_s']:.2f}) | "
            f"{w['after_prefill_p50_s']:.2f} ({w['after_prefill_max_s']:.2f}) |\n"
        )
    return 0


def print_decode(d: dict[str, float], args: argparse.Namespace) -> None:
    print(
        "## Decode speed (tokens/s after the first, median of "
        f"{args.repeat}, {args.tokens} tokens, greedy)\n"
    )
    print("| rolecast local | raw llama-cpp-python | ratio (target >= 0.95) |\n|---|---|---|")
    print(f"| {d['rolecast_tok_s']:.1f} | {d['raw_tok_s']:.1f} | {d['ratio']:.3f} |\n")


def print_kv(llm, character, index, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    from rolecast.character.personality import format_dials

    dials = format_dials(character.personality)
    print(f"## KV cache: prompt tokens evaluated per turn (the rest reused), dials {dials}\n")
    print("| order | turn | prompt tokens | evaluated | from cache |\n|---|---|---|---|---|")
    for order in args.orders.split(","):
        rows = kv_reuse(llm, character, index, order, args.turns, args.tokens)
        for row in rows:
            print(
                f"| {order} | {row['turn']} | {row['prompt_tokens']} | {row['evaluated']} | "
                f"{row['cached_share']:.0%} |"
            )
        later = rows[1:]
        if later:
            total = sum(r["prompt_tokens"] for r in later)
            fresh = sum(r["evaluated"] for r in later)
            print(
                f"| {order} | turns 2-{len(rows)} | {total} | {fresh} | {1 - fresh / total:.0%} |"
            )
    print()


def print_ttft(t: dict[str, float], args: argparse.Namespace) -> None:
    print(
        "## Time to first token added by rolecast (medians)\n\n"
        "| before the backend (retrieval + assembly) | first token, rolecast local (prompt cached) "
        "| first token, raw (prompt cached) | added (target <= 30 ms) |\n|---|---|---|---|"
    )
    print(
        f"| {t['prepare_ms']:.1f} ms | {t['rolecast_ms']:.1f} ms | {t['raw_ms']:.1f} ms "
        f"| {t['added_ms']:.1f} ms |"
    )


if __name__ == "__main__":
    sys.exit(main())
