"""The rating page under load (issue 21): ``rolecast study serve`` on 127.0.0.1 with its SQLite
store, and N concurrent raters, each judging every pair as a quick person would (the next pair,
then a vote, at most one vote per MIN_VOTE_GAP_S). Reports vote latency percentiles and checks
that every vote answered 200 is in the store once (lost = answered but missing; doubled = more
rows than 200s). Target: p99 <= 100 ms, 0 lost, with 100 raters on 2 cores.

    .venv/bin/python benchmarks/bench_study.py [--raters 100] [--pairs 30]
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
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rolecast.backends.base import LLM, GenerationParams  # noqa: E402


class Numbered(LLM):
    """Instant, every reply different."""

    name = "numbered"
    model = "numbered"

    def __init__(self) -> None:
        self.n = 0

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        self.n += 1
        yield f"第{self.n}句：" + "".join(chr(0x4E00 + 29 * self.n + k) for k in range(10))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


class Conn:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a load generator light enough
    not to be what is measured (httpx spent five times the server's CPU)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
            "Content-Type: application/json\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        length = 0
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), json.loads(payload) if payload else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def rater(port: int, name: str, gap: float, latencies: list[float], codes: Counter) -> None:  # type: ignore[type-arg]
    conn = Conn(port)
    last = 0.0
    try:
        while True:
            _, nxt = await conn.request("GET", f"/api/next?rater={name}")
            if nxt["pair"] is None:
                return
            wait = gap - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)
            t = time.perf_counter()
            body = {"rater": name, "pair": nxt["pair"], "choice": "left"}
            status, _ = await conn.request("POST", "/api/vote", body)
            latencies.append((time.perf_counter() - t) * 1000)
            codes[status] += 1
            last = time.monotonic()
            if status not in (200, 409):
                await asyncio.sleep(1)  # as the page does: try again
    finally:
        conn.close()


async def load(port: int, raters: int, gap: float) -> tuple[list[float], Counter, float]:  # type: ignore[type-arg]
    latencies: list[float] = []
    codes: Counter = Counter()  # type: ignore[type-arg]
    start = time.perf_counter()
    await asyncio.gather(*(rater(port, f"r{k}", gap, latencies, codes) for k in range(raters)))
    return latencies, codes, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raters", type=int, default=100)
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds between a rater's votes (default: the page's flood limit, the quickest "
        "a rater may go)",
    )
    args = p.parse_args(argv)
    from rolecast.study.serve import MIN_VOTE_GAP_S

    args.pace = max(args.pace, MIN_VOTE_GAP_S + 0.01)
    home = Path(tempfile.mkdtemp(prefix="rolecast-study-bench-"))
    os.environ["ROLECAST_HOME"] = str(home)
    from rolecast.character import store
    from rolecast.study.definition import read_study
    from rolecast.study.prepare import prepare_study, study_folder

    lines = ", ".join(f'"第{k}个问题：你今天过得怎么样？"' for k in range(args.pairs))
    toml = home / "bench.toml"
    toml.write_text(
        f'title = "bench"\ncharacters = ["xiaoman"]\n[prompts]\nlines = [{lines}]\n'
        '[[systems]]\nid = "persona"\ncondition = "persona"\n'
        '[[systems]]\nid = "bare"\ncondition = "bare"\n',
        encoding="utf-8",
    )
    study = read_study(toml)
    llm = Numbered()
    prepare_study(study, study_folder(study), {"xiaoman": store.load("xiaoman")}, {}, lambda _: llm)
    port = free_port()
    log = open(home / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rolecast.cli.main",
            "study",
            "serve",
            str(toml),
            "--port",
            str(port),
            "--admin-key",
            "k",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((home / "serve.log").read_text()) from None
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        mine = time.process_time()
        latencies, codes, took = asyncio.run(load(port, args.raters, args.pace))
        mine = time.process_time() - mine
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        server_cpu = (int(fields[11]) + int(fields[12])) / ticks
        import httpx

        counts = httpx.get(f"{url}/api/admin/counts", headers={"Authorization": "Bearer k"}).json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    ok = codes[200]
    print(
        f"# rolecast study serve under load\n\n- {time.strftime('%Y-%m-%d %H:%M')} · nproc "
        f"{os.cpu_count()} · SQLite · {args.raters} raters x {args.pairs} pairs, a vote "
        f"every {args.pace:.2f} s each · CPU s: server {server_cpu:.1f}, load generator "
        f"{mine:.1f}, wall {took:.1f}\n"
    )
    print("| votes | p50 ms | p95 ms | p99 ms | max ms | votes/s | answers | in the store | lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    answers = " ".join(f"{k}:{v}" for k, v in sorted(codes.items()))
    print(
        f"| {len(latencies)} | {statistics.median(latencies):.1f} | "
        f"{percentile(latencies, 0.95):.1f} | {percentile(latencies, 0.99):.1f} | "
        f"{max(latencies):.1f} | {len(latencies) / took:.0f} | {answers} | {counts['votes']} | "
        f"{ok - counts['votes']} |"
    )
    return 0 if counts["votes"] == ok == args.raters * args.pairs else 1


if __name__ == "__main__":
    sys.exit(main())
