"""Evaluation speed: the retrieval eval over a 1,400-scene character, and the canon eval
against a real server backend with one request in flight vs several.

    ROLECAST_CORPUS=/path/to/chatharuhi python benchmarks/bench_eval.py [--repeat 3]

1. ``rolecast eval retrieval Harry`` (1,407 scenes, the corpus's largest character; no
   synthetic one is needed) as a user runs it, in a fresh process, with the default
   embedder: *cold* (no index yet: import, index build, 300 queries x 3 modes, report)
   and *warm* (the index cached). Target: <= 60 s cold on 2 cores.
2. The canon eval (library call, as the CLI makes it) on Harry with the ``openai`` backend
   against llama.cpp's OpenAI-compatible server running SmolLM2-135M on 127.0.0.1,
   ``--n`` held-out turns x 3 conditions, no cache, with concurrency 1 and 4 (the server
   on one thread, ``--server-threads``, leaving the other core to rolecast):
   requests/s = generated replies / wall time (retrieval, prompts and scoring included).
   llama-cpp-python's server decodes one request at a time, so concurrency gains only by
   overlapping rolecast's own work (retrieval, assembly, HTTP) with generation.
3. The same against a stub OpenAI-compatible endpoint on 127.0.0.1 that answers every
   request after ``--stub-latency`` seconds, many at once (what a remote API or a batching
   server such as vLLM looks like from the client): the gain concurrency can give.

Medians over ``--repeat`` runs; everything runs under a temporary ROLECAST_HOME that is
removed at the end, and no corpus text is written anywhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # servers.py: llama.cpp on loopback


def bench_retrieval(home: Path, character: str, repeat: int) -> dict[str, object]:
    env = {**os.environ, "ROLECAST_HOME": str(home)}
    cmd = [sys.executable, "-m", "rolecast.cli.main", "eval", "retrieval", character]
    cold: list[float] = []
    warm: list[float] = []
    last = ""
    for i in range(repeat):
        shutil.rmtree(home / "index", ignore_errors=True)
        for bucket in (cold, warm):
            out = home / f"out-{i}-{len(bucket)}"
            started = time.perf_counter()
            done = subprocess.run(
                [*cmd, "--out", str(out)], env=env, capture_output=True, text=True, check=False
            )
            bucket.append(time.perf_counter() - started)
            if done.returncode:
                raise RuntimeError(f"eval retrieval failed: {done.stderr[-2000:]}")
            last = done.stdout
        print(
            f"retrieval run {i + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", file=sys.stderr
        )
    return {
        "cold_s": [round(x, 2) for x in cold],
        "warm_s": [round(x, 2) for x in warm],
        "cold_median_s": round(statistics.median(cold), 2),
        "warm_median_s": round(statistics.median(warm), 2),
        "summary": last.strip().splitlines(),
    }


def measure(
    character: str,
    base: str,
    n: int,
    repeat: int,
    max_tokens: int,
    levels: list[int],
    label: str,
) -> dict[str, object]:
    """Canon evals through the openai backend at ``base``, at each concurrency level."""
    from rolecast.backends.base import GenerationParams
    from rolecast.backends.openai_compat import OpenAILLM
    from rolecast.character import store
    from rolecast.eval.canon import run_canon_eval
    from rolecast.retrieval.index import load_index

    c = store.load(character)
    index = load_index(c)
    # the client counts tokens with an approximate tokenizer: leave SmolLM2 some room
    llm = OpenAILLM(base_url=base, model="smollm2", context_window=1700, environ={})
    params = GenerationParams(max_tokens=max_tokens, temperature=0.7)
    rates: dict[int, list[float]] = {k: [] for k in levels}
    try:
        for r in range(repeat):
            for k in levels:
                started = time.perf_counter()
                result = run_canon_eval(
                    c, llm, index.embedder, index, n=n, seed=r, params=params, workers=k
                )
                took = time.perf_counter() - started
                requests = sum(len(v) for v in result.replies.values())
                rates[k].append(requests / took)
                print(
                    f"{label} run {r + 1}, concurrency {k}: {requests} replies in {took:.1f} s "
                    f"({requests / took:.2f}/s)",
                    file=sys.stderr,
                )
    finally:
        llm.close()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "n": n,
        "requests_per_run": 3 * n,
        "max_tokens": max_tokens,
        "requests_per_s": {str(k): [round(x, 3) for x in v] for k, v in rates.items()},
        "median_requests_per_s": {str(k): round(v, 3) for k, v in medians.items()},
        "speedup": round(medians[levels[-1]] / medians[levels[0]], 2),
    }


def bench_canon(
    home: Path,
    character: str,
    n: int,
    repeat: int,
    max_tokens: int,
    levels: list[int],
    server_threads: int = 1,
) -> dict[str, object]:
    """Against llama.cpp's server with SmolLM2 (one request decoded at a time)."""
    from servers import llama_server

    from rolecast.backends.models import resolve_model

    # one thread for prompt and generation alike: the other core is rolecast's (retrieval,
    # prompts, scoring), as if the server had its own machine
    model = resolve_model("smollm2")
    with llama_server(model, home / "llama-server.log", threads=server_threads) as base:
        return measure(character, base, n, repeat, max_tokens, levels, "llama.cpp")


def stub_server(latency: float):  # type: ignore[no-untyped-def]
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers every request after
    ``latency`` seconds, many at once: what a remote API or a batching server looks like
    from the client. Returns the server (``.server_address``) running in a thread."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = b'{"object": "list", "data": [{"id": "smollm2", "object": "model"}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            words = ("I ", "would ", "rather ", "not ", "say.", "")
            for i, word in enumerate(words):
                done = "stop" if i == len(words) - 1 else None
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "smollm2",
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": done}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bench_canon_stub(
    character: str, n: int, repeat: int, levels: list[int], latency: float
) -> dict[str, object]:
    server = stub_server(latency)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        figures = measure(character, base, n, repeat, 16, levels, f"stub {latency:g} s")
        figures["latency_s"] = latency
        return figures
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=os.environ.get("ROLECAST_CORPUS"))
    p.add_argument("--character", default="Harry", help="story folder (default Harry)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n", type=int, default=4, help="held-out turns per canon run (default 4)")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--server-threads", type=int, default=1, help="llama.cpp server threads")
    p.add_argument("--concurrency", default="1,4", help="levels compared (default 1,4)")
    p.add_argument("--skip-canon", action="store_true")
    p.add_argument(
        "--stub-latency",
        type=float,
        default=1.0,
        help="also run the canon eval against a stub endpoint answering after this many "
        "seconds, many requests at once (0: skip)",
    )
    p.add_argument("--skip-retrieval", action="store_true")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if not args.corpus:
        p.error("set ROLECAST_CORPUS or pass --corpus")
    levels = [int(x) for x in args.concurrency.split(",")]
    # a kill (a time limit) still runs the clean-up below: the server must not outlive us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-eval-"))
    os.environ["ROLECAST_HOME"] = str(home)  # this process's library calls; children inherit
    try:
        from rolecast.character.package import save_character
        from rolecast.formats.chatharuhi import import_story_folder

        imported = import_story_folder(Path(args.corpus) / "characters" / args.character)
        c = imported.character
        save_character(c, home / "characters" / c.id)
        lines = sum(len(s.lines) for s in c.scenes)
        figures: dict[str, object] = {
            "character": c.id,
            "scenes": len(c.scenes),
            "lines": lines,
            "nproc": os.cpu_count(),
        }
        if not args.skip_retrieval:
            figures["retrieval"] = bench_retrieval(home, c.id, args.repeat)
        if not args.skip_canon:
            figures["canon"] = bench_canon(home, c.id, args.n, args.repeat, args.max_tokens, levels)
        if args.stub_latency > 0:
            figures["canon_stub"] = bench_canon_stub(
                c.id, args.n, args.repeat, levels, args.stub_latency
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"# rolecast eval benchmark ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})")
    print(f"\n{figures['character']}: {figures['scenes']} scenes, {figures['lines']} lines\n")
    print("| measure | median | runs |\n|---|---|---|")
    if "retrieval" in figures:
        r = figures["retrieval"]
        assert isinstance(r, dict)
        print(
            f"| eval retrieval, cold (index build included) | {r['cold_median_s']} s | "
            f"{r['cold_s']} |"
        )
        print(f"| eval retrieval, warm (index cached) | {r['warm_median_s']} s | {r['warm_s']} |")
    if "canon" in figures:
        k = figures["canon"]
        assert isinstance(k, dict)
        for level, rate in k["median_requests_per_s"].items():
            print(
                f"| eval canon, openai -> llama.cpp server, concurrency {level} | "
                f"{rate} req/s | {k['requests_per_s'][level]} |"
            )
        print(
            f"\nconcurrency speed-up: {k['speedup']}x ({k['requests_per_run']} replies per run, "
            f"max_tokens {k['max_tokens']})"
        )
    if "canon_stub" in figures:
        k = figures["canon_stub"]
        assert isinstance(k, dict)
        for level, rate in k["median_requests_per_s"].items():
            print(
                f"| eval canon, openai -> stub answering after {k['latency_s']} s, concurrency "
                f"{level} | {rate} req/s | {k['requests_per_s'][level]} |"
            )
        print(f"\nstub concurrency speed-up: {k['speedup']}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
