"""augment against llama.cpp's server with 4 requests in flight: samples/s, and the share of
the backend's raw throughput that augment achieves.

    python benchmarks/bench_augment_server.py [--n 24] [--character xiaoman]
        [--model qwen2.5-coder-0.5b] [--concurrency 4] [--server-threads 1]

1. llama-cpp-python's OpenAI-compatible server starts on 127.0.0.1 with the model (one
   thread by default: the other core is rolecast's, as if the server had a machine of its
   own; ``--server-threads 2`` shares both).
2. ``augment`` runs with the openai backend pointed at it, ``--concurrency`` requests in
   flight, fresh (no cache); every request it makes is recorded (messages, parameters).
3. The same requests are sent again through the same client (the openai backend's
   ``stream``: no retrieval, no prompt assembly, no checks), with the same concurrency.

The share is (time of 3) / (time of 2): 1.0 means augment costs nothing beyond the backend.
The issue's target is >= 85 %. Generation is seeded, so both runs decode the same tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from servers import llama_server  # noqa: E402

from rolecast.backends.base import LLM, GenerationParams, WrappedLLM  # noqa: E402


class Recorder(WrappedLLM):
    """Every request the inner backend gets, and how many characters came back."""

    def __init__(self, inner: LLM) -> None:
        super().__init__(inner)
        self.requests: list[tuple[list[dict[str, str]], GenerationParams]] = []
        self.chars = 0
        self.lock = threading.Lock()

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        with self.lock:
            self.requests.append(([dict(m) for m in messages], params))
        for chunk in self.inner.stream(messages, params):
            with self.lock:
                self.chars += len(chunk)
            yield chunk


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=24, help="generated lines wanted (default 24)")
    p.add_argument("--character", default="xiaoman")
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--server-threads", type=int, default=1)
    args = p.parse_args(argv)

    from rolecast.backends.models import resolve_model
    from rolecast.backends.openai_compat import OpenAILLM
    from rolecast.character import store
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session
    from rolecast.training.augment import Settings, augment

    character = store.load(args.character)
    index = load_index(character, "use")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(os.environ.get("BENCH_SERVER_LOG", Path(tmp) / "server.log"))
        model = resolve_model(args.model)
        with llama_server(model, log, n_ctx=4096, threads=args.server_threads) as base:
            # the window prompts are fitted to, counted with a qwen3 encoding: SmolLM2 spends
            # about three times as many tokens on Chinese, and a prompt fitted to 4096 came to
            # 4,103 of its tokens (the server refused it mid-stream), so it gets a third
            window = 1400 if "smollm" in args.model.lower() else 4096
            client = OpenAILLM(
                model=args.model, base_url=base, api_key="none", context_window=window
            )
            recorder = Recorder(client)
            prototype = Session(character, index, recorder, order="split")
            # the server's first request pays for loading: not either run's
            list(client.stream([{"role": "user", "content": "hi"}], GenerationParams(4, 0.0)))
            started = time.perf_counter()
            manifest, samples = augment(
                prototype, Settings(n=args.n, seed=0), workers=args.concurrency
            )
            augment_s = time.perf_counter() - started
            chars = recorder.chars

            def replay(request: tuple[list[dict[str, str]], GenerationParams]) -> int:
                return sum(len(c) for c in client.stream(*request))

            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                replayed = sum(pool.map(replay, recorder.requests))
        raw_s = time.perf_counter() - started
    generated = sum(s.kind == "generated" for s in samples)
    sizes = [len(m[0][-1]["content"]) for m in recorder.requests]
    print(f"model {args.model}, server threads {args.server_threads}, {args.concurrency} in flight")
    # unseeded requests (the questions) come back at other lengths when replayed: the fair
    # share compares characters per second, not seconds
    per_char = (chars / augment_s) / (replayed / raw_s) if replayed and raw_s else 0.0
    print(
        "| requests | generated samples | augment s | raw s | samples/s | share of raw (time) "
        "| share of raw (characters/s) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {len(recorder.requests)} | {generated} | {augment_s:.1f} | {raw_s:.1f} | "
        f"{generated / augment_s:.2f} | {raw_s / augment_s:.0%} | {per_char:.0%} |"
    )
    print(
        f"characters back: augment {chars}, replay {replayed}; median last message "
        f"{statistics.median(sizes):.0f} characters; dropped {dict(manifest.dropped)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
