"""``eval dials`` against llama.cpp's OpenAI-compatible server: the wall time of one dial
evaluation (interview low and high, essays, blind sorting) with 1 and with K requests in
flight, and what share of it the server was busy.

llama-cpp-python's server decodes one request at a time, so K in flight overlaps only
rolecast's own work (retrieval, prompts, scoring) with the server's; a server that batches
(vLLM, llama.cpp's own llama-server with --parallel) gains more. Each run starts from an
empty cache.

    ROLECAST_CORPUS=... .venv/bin/python benchmarks/bench_dials.py --items 2 --essays 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from servers import llama_server  # noqa: E402

from rolecast.backends.base import LLM, GenerationParams, WrappedLLM  # noqa: E402


class Busy(WrappedLLM):
    """Counts the seconds at least one request is in flight (the server's busy time as the
    client sees it) and the requests."""

    def __init__(self, inner: LLM) -> None:
        super().__init__(inner)
        self.thread_safe = inner.thread_safe  # type: ignore[misc]
        self.lock = threading.Lock()
        self.active = 0
        self.since = 0.0
        self.busy = 0.0
        self.requests = 0

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        with self.lock:
            if self.active == 0:
                self.since = time.perf_counter()
            self.active += 1
            self.requests += 1
        try:
            yield from self.inner.stream(messages, params)
        finally:
            with self.lock:
                self.active -= 1
                if self.active == 0:
                    self.busy += time.perf_counter() - self.since


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--character", default="yunzhou")
    p.add_argument("--factor", default="O")
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--items", type=int, default=2, help="interview items per factor")
    p.add_argument("--essays", type=int, default=2, help="essays per dial")
    p.add_argument("--essay-tokens", type=int, default=200)
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--server-threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("ROLECAST_HOME", tempfile.mkdtemp(prefix="rolecast-bench-"))

    from rolecast.backends.models import resolve_model
    from rolecast.backends.openai_compat import OpenAILLM
    from rolecast.character import store
    from rolecast.eval import interview as iv
    from rolecast.eval.canon import condition_session
    from rolecast.eval.dials import run_dials_eval
    from rolecast.eval.report import Cache
    from rolecast.retrieval.index import load_index

    character = store.load(args.character)
    index = load_index(character, "use")
    params = GenerationParams(max_tokens=160, temperature=0.7)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        model = resolve_model(args.model)
        with llama_server(model, log, n_ctx=4096, threads=args.server_threads) as base:
            client = OpenAILLM(model=args.model, base_url=base, api_key="none")
            list(client.stream([{"role": "user", "content": "hi"}], GenerationParams(4, 0.0)))
            for k in (int(x) for x in args.concurrency.split(",")):
                busy = Busy(client)
                prototype = condition_session("canon", character, busy, index, params)
                out = Path(tmp) / f"run-{k}"
                started = time.perf_counter()
                result = run_dials_eval(
                    prototype,
                    None,
                    args.factor,
                    items=iv.items_for(per_factor=args.items),
                    essays=args.essays,
                    essay_dir=out,
                    essay_tokens=args.essay_tokens,
                    cache=Cache(out / "cache", {"k": k}),
                    judge_cache=Cache(out / "cache", {"judge": k}),
                    workers=k,
                )
                wall = time.perf_counter() - started
                shift = result.shifts[args.factor].difference
                rows.append((k, busy.requests, wall, busy.busy, shift, result.accuracy))
    print(
        f"# eval dials against llama.cpp's server ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"nproc {os.cpu_count()}, server threads {args.server_threads})\n"
    )
    print(
        f"{args.character}, --trait {args.factor}, {args.items} items per factor, "
        f"{args.essays} essays per dial of at most {args.essay_tokens} tokens, model {args.model}\n"
    )
    print("| in flight | requests | wall s | server busy s | busy share | shift | essays right |")
    print("|---|---|---|---|---|---|---|")
    for k, n, wall, busy_s, shift, (right, sorted_, _) in rows:
        print(
            f"| {k} | {n} | {wall:.1f} | {busy_s:.1f} | {busy_s / wall:.0%} | "
            f"{shift.mean:+.2f} [{shift.low:+.2f}, {shift.high:+.2f}] | {right}/{sorted_} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
