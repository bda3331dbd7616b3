"""Server load: concurrent streaming clients against `rolecast serve` with a real backend.

    python benchmarks/bench_server.py [--clients 50] [--seconds 60] [--max-tokens 8]

Everything runs on 127.0.0.1: llama.cpp's OpenAI-compatible server with SmolLM2-135M on one
thread is the backend (the other core is rolecast's, as if the backend had its own machine),
`rolecast serve --backend openai` sits in front of it (SQLite sessions, half the clients in
session mode), and ``--clients`` asyncio clients stream replies for ``--seconds``.
The server writes one timing line per request (ROLECAST_SERVER_TIMINGS): the time rolecast
adds before the first token (request received until the backend is called), per request
(everything but waiting on the backend), and how long the reply cleaner held the first
characters back waiting for more tokens (so a name prefix can be removed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = ["Where is the cat?", "Why the lamp?", "How much for noodles?", "Is it raining?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def client(n: int, base: str, until: float, max_tokens: int, stats: dict) -> None:  # type: ignore[type-arg]
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30)) as http:
        i = 0
        while time.monotonic() < until:
            body = {
                "model": "mia",
                "messages": [{"role": "user", "content": QUESTIONS[(n + i) % len(QUESTIONS)]}],
                "max_tokens": max_tokens,
                "stream": True,
            }
            if n % 2:
                body["user"] = f"load-{n}"  # session mode for half the clients
            start = time.perf_counter()
            try:
                async with http.stream("POST", f"{base}/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        stats["errors"].append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                        continue
                    first = None
                    done = False
                    async for line in r.aiter_lines():
                        if line.startswith('data: {"error"'):
                            stats["errors"].append(line[:200])
                            break
                        if first is None and '"content": "' in line and '"content": ""' not in line:
                            first = time.perf_counter() - start
                        if line == "data: [DONE]":
                            done = True
                    if done:
                        stats["ok"] += 1
                        stats["ttft"].append(first or 0.0)
                        stats["latency"].append(time.perf_counter() - start)
                    elif not stats["errors"] or "error" not in stats["errors"][-1]:
                        stats["errors"].append("stream ended without [DONE]")
            except httpx.HTTPError as exc:
                stats["errors"].append(f"{type(exc).__name__}: {exc}")
            i += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-server-"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from rolecast.backends.models import resolve_model
    from rolecast.character.package import save_character

    from conftest import make_english_character

    save_character(make_english_character(), home / "characters" / "mia")
    timings = home / "timings.jsonl"
    env = {**os.environ, "ROLECAST_HOME": str(home), "ROLECAST_SERVER_TIMINGS": str(timings)}
    llama_port, port = free_port(), free_port()
    llama = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(resolve_model("smollm2")),
            "--host",
            "127.0.0.1",
            "--port",
            str(llama_port),
            "--n_ctx",
            "2048",
            "--interrupt_requests",
            "False",
            "--verbose",
            "False",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = None
    try:
        wait_for(f"http://127.0.0.1:{llama_port}/v1/models", llama)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rolecast.cli.main",
                "serve",
                "--port",
                str(port),
                "--backend",
                "openai",
                "--base-url",
                f"http://127.0.0.1:{llama_port}/v1",
                "--backend-api-key",
                "none",
                "--model",
                "smollm2",
                "--rate",
                "0",
            ],
            env={**env, "ROLECAST_TIMEOUT": "600"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/v1"
        wait_for(f"{base}/models", server)
        stats: dict = {"ok": 0, "errors": [], "ttft": [], "latency": []}  # type: ignore[type-arg]
        start = time.monotonic()

        async def run() -> None:
            until = time.monotonic() + args.seconds
            await asyncio.gather(
                *(client(n, base, until, args.max_tokens, stats) for n in range(args.clients))
            )

        asyncio.run(run())
        wall = time.monotonic() - start
    finally:
        for p in (server, llama):
            if p is not None:
                p.terminate()
                p.wait(timeout=20)
    rows = [json.loads(x) for x in timings.read_text().splitlines()] if timings.exists() else []
    first = [r["to_backend_ms"] for r in rows if "to_backend_ms" in r]
    hold = [r["holdback_ms"] for r in rows if "holdback_ms" in r]
    added = [r["added_ms"] for r in rows]
    print(f"# rolecast server load ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})\n")
    print(
        f"{args.clients} streaming clients for {args.seconds:.0f} s (all done after {wall:.0f} s), "
        f"max_tokens {args.max_tokens}, backend llama.cpp server + SmolLM2-135M on loopback\n"
    )
    print(f"- requests completed: {stats['ok']}; errors: {len(stats['errors'])}")
    for e in stats["errors"][:5]:
        print(f"  - {e}")
    print(
        f"- client-side time to first token: p50 {pct(stats['ttft'], 0.5):.1f} s, "
        f"p99 {pct(stats['ttft'], 0.99):.1f} s (queueing at the single backend)\n"
    )
    print("| rolecast adds | p50 | p99 | n |\n|---|---|---|---|")
    for label, xs in (
        ("before the first token (request in -> backend called)", first),
        ("per request (all but waiting on the backend)", added),
        ("(first characters held back, waiting for more tokens)", hold),
    ):
        print(f"| {label} | {pct(xs, 0.5):.1f} ms | {pct(xs, 0.99):.1f} ms | {len(xs)} |")
    if rows:
        prepare = statistics.median(r["prepare_ms"] for r in rows)
        print(f"\nmedian prepare (retrieval + assembly + history): {prepare:.1f} ms")
    return 1 if stats["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
