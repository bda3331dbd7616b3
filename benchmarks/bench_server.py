"""Server load: concurrent streaming clients against `rolecast serve` with a real backend.

    python benchmarks/bench_server.py [--clients 50] [--seconds 60] [--max-tokens 8]
    python benchmarks/bench_server.py --backend echo --clients 30 --seconds 20
    python benchmarks/bench_server.py --backend local --dropped-stream [--rounds 5]

Everything runs on 127.0.0.1. With ``--backend openai`` (the default) llama.cpp's
OpenAI-compatible server with SmolLM2-135M on one thread is the backend (the other core is
rolecast's, as if the backend had its own machine) and `rolecast serve --backend openai` sits in
front of it; ``--backend echo`` (no model: the pipeline alone) and ``--backend local`` (the model
in rolecast's process) start `rolecast serve` alone. SQLite sessions, half the clients in session
mode; ``--clients`` asyncio clients stream replies for ``--seconds``.
The server writes one timing line per request (ROLECAST_SERVER_TIMINGS): the time rolecast
adds before the first token (request received until the backend is called), per request
(everything but waiting on the backend), and how long the reply cleaner held the first
characters back waiting for more tokens (so a name prefix can be removed).

``--dropped-stream`` measures instead what a client that drops its stream mid-way costs the
next one (meant for ``--backend local``, where one model serves every request in turn): client
B's time to first token after client A's reply finished (unloaded), and right after A dropped
its stream after ``--drop-after`` content events. Target: not above 2x the unloaded value, and
no dropped turn recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = ["Where is the cat?", "Why the lamp?", "How much for noodles?", "Is it raining?"]


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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=20)


def serve_command(args: argparse.Namespace, port: int, llama_url: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "rolecast.cli.main", "serve", "--port", str(port)]
    cmd += ["--backend", args.backend, "--rate", "0"]
    if args.backend == "openai":
        assert llama_url is not None
        cmd += ["--base-url", llama_url, "--backend-api-key", "none", "--model", "smollm2"]
    elif args.backend == "local":
        cmd += ["--model", args.model]
    return cmd


def first_token(http, base: str, body: dict) -> float | None:  # type: ignore[type-arg,no-untyped-def]
    """Seconds from sending a streamed request until its first content event (the stream is
    then read to its end); None for a reply with no content."""
    start = time.perf_counter()
    first = None
    with http.stream("POST", f"{base}/chat/completions", json={**body, "stream": True}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:200]!r}")
        for line in r.iter_lines():
            if first is None and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter() - start
    return first


def drop_stream(base: str, body: dict, after: int) -> bool:  # type: ignore[type-arg]
    """Stream ``body`` and hang up after ``after`` content events: whether it hung up mid-reply
    (not when the reply was over first)."""
    import httpx

    seen = 0
    with httpx.Client(timeout=httpx.Timeout(600, connect=30)) as http:  # its own connection
        with http.stream("POST", f"{base}/chat/completions", json={**body, "stream": True}) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    return False
                if '"content": "' in line and '"content": ""' not in line:
                    seen += 1
                    if seen >= after:
                        return True
    return False


def dropped_stream(args: argparse.Namespace, base: str) -> int:
    """Client B's time to first token after client A's reply, finished or dropped mid-way."""
    import httpx

    long = {
        "model": "mia",
        "messages": [{"role": "user", "content": "Tell me a long story about the bridge."}],
        "max_tokens": 256,
    }
    ask = {"model": "mia", "messages": [{"role": "user", "content": QUESTIONS[0]}]}
    ask["max_tokens"] = max(args.max_tokens, 32)  # enough for some text after clean-up
    short_a = {**long, "max_tokens": args.drop_after, "stream": True}
    unloaded, dropped, recorded, hung_up = [], [], 0, 0
    with httpx.Client(timeout=httpx.Timeout(600, connect=30)) as http:
        first_token(http, base, ask)  # warm-up
        for i in range(args.rounds):
            # unloaded: A's (short) reply is over before B asks; the model's cache holds A's
            # prompt either way, so both cases evaluate B's prompt alike
            with http.stream("POST", f"{base}/chat/completions", json=short_a) as r:
                r.read()
            if (took := first_token(http, base, ask)) is not None:
                unloaded.append(took)
            sid = f"dropped-{i}"
            mid_reply = drop_stream(base, {**long, "user": sid}, args.drop_after)
            if (took := first_token(http, base, ask)) is not None:
                dropped.append(took)
            time.sleep(0.5)  # the dropped turn would have been saved by now
            hung_up += mid_reply
            if mid_reply and http.get(f"{base}/sessions/{sid}").status_code == 200:
                recorded += 1
    if not unloaded or not dropped:
        print("no reply with text to time: try more --rounds or another --model")
        return 1
    u, d = statistics.median(unloaded), statistics.median(dropped)
    print(f"# rolecast server: a dropped stream ({time.strftime('%Y-%m-%d %H:%M')}, ", end="")
    print(f"nproc {os.cpu_count()})\n")
    model = f" ({args.model})" if args.backend == "local" else ""
    print(
        f"backend {args.backend}{model}, {args.rounds} rounds; client A drops its "
        f"stream after {args.drop_after} content events, client B asks at once "
        f"(max_tokens {ask['max_tokens']}; a reply with no text is not counted)\n"
    )
    print("| client B's time to first token | median | max | n |\n|---|---|---|---|")
    for label, xs in (
        ("unloaded (A's reply finished first)", unloaded),
        ("right after A dropped its stream mid-way", dropped),
    ):
        print(
            f"| {label} | {statistics.median(xs) * 1000:.0f} ms | {max(xs) * 1000:.0f} ms "
            f"| {len(xs)} |"
        )
    ratio = d / u if u else float("inf")
    print(f"\n- ratio dropped / unloaded: {ratio:.2f}x (target <= 2x)")
    print(f"- A hung up mid-reply in {hung_up} of {args.rounds} rounds (else its reply was over)")
    print(f"- dropped turns recorded: {recorded} of {hung_up} (target 0)")
    return 0 if ratio <= 2 and not recorded and hung_up == args.rounds else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument(
        "--backend",
        choices=("openai", "echo", "local"),
        default="openai",
        help="openai: a llama.cpp server on loopback (default); echo: no model; "
        "local: the model in rolecast's process",
    )
    ap.add_argument("--model", default="smollm2", help="--backend local: the model (smollm2)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument(
        "--dropped-stream",
        action="store_true",
        help="measure one client's time to first token unloaded and right after another\n"
        "client dropped its stream mid-way (use with --backend local) instead of the load",
    )
    ap.add_argument("--rounds", type=int, default=5, help="--dropped-stream: rounds (5)")
    ap.add_argument(
        "--drop-after",
        type=int,
        default=4,
        help="--dropped-stream: content events before A hangs up (4)",
    )
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="rolecast-bench-server-"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from servers import free_port, llama_server, wait_for_url

    from rolecast.backends.models import resolve_model
    from rolecast.character.package import save_character

    from conftest import make_english_character

    save_character(make_english_character(), home / "characters" / "mia")
    timings = home / "timings.jsonl"
    env = {**os.environ, "ROLECAST_HOME": str(home), "ROLECAST_SERVER_TIMINGS": str(timings)}
    port = free_port()
    with contextlib.ExitStack() as stack:
        llama_url = None
        if args.backend == "openai":  # SmolLM2-135M on llama.cpp's default threads
            model = resolve_model("smollm2")
            llama_url = stack.enter_context(llama_server(model, env=env))
        server = subprocess.Popen(
            serve_command(args, port, llama_url),
            env={**env, "ROLECAST_TIMEOUT": "600"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/v1"
        stack.callback(_stop, server)
        wait_for_url(f"{base}/models", server, seconds=600)
        if args.dropped_stream:
            return dropped_stream(args, base)
        stats: dict = {"ok": 0, "errors": [], "ttft": [], "latency": []}  # type: ignore[type-arg]
        start = time.monotonic()

        async def run() -> None:
            until = time.monotonic() + args.seconds
            await asyncio.gather(
                *(client(n, base, until, args.max_tokens, stats) for n in range(args.clients))
            )

        asyncio.run(run())
        wall = time.monotonic() - start
    rows = [json.loads(x) for x in timings.read_text().splitlines()] if timings.exists() else []
    first = [r["to_backend_ms"] for r in rows if "to_backend_ms" in r]
    hold = [r["holdback_ms"] for r in rows if "holdback_ms" in r]
    added = [r["added_ms"] for r in rows]
    backends = {
        "openai": "llama.cpp server + SmolLM2-135M on loopback",
        "echo": "echo (no model)",
        "local": f"local ({args.model} in process)",
    }
    print(f"# rolecast server load ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})\n")
    print(
        f"{args.clients} streaming clients for {args.seconds:.0f} s (all done after {wall:.0f} s), "
        f"max_tokens {args.max_tokens}, backend {backends[args.backend]}\n"
    )
    print(f"- requests completed: {stats['ok']}; errors: {len(stats['errors'])}")
    for e in stats["errors"][:5]:
        print(f"  - {e}")
    print(
        f"- client-side time to first token: p50 {pct(stats['ttft'], 0.5) * 1000:.0f} ms, "
        f"p99 {pct(stats['ttft'], 0.99) * 1000:.0f} ms (queueing at the single backend)"
    )
    print(
        f"- client-side total latency: p50 {pct(stats['latency'], 0.5) * 1000:.0f} ms, "
        f"p99 {pct(stats['latency'], 0.99) * 1000:.0f} ms\n"
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
