"""A group turn's own cost: rolecast's time for one line answered in a scene of three
characters (natural turns: one answers, the closeness of the line to each canon decides who)
against the same line in a one-to-one chat, with an instant backend, so only rolecast's work
(retrieval, turn-taking, prompt assembly, history) is timed. Medians over the lines.

    .venv/bin/python benchmarks/bench_group.py --turns 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rolecast.backends.base import LLM, GenerationParams  # noqa: E402

LINES = ["今天雾好大。", "你们平时都做什么？", "船几点开？", "给我讲个故事吧。", "这碗面多少钱？"]


class Instant(LLM):
    """Answers at once with a fixed line: no model time."""

    name = "instant"
    model = "instant"

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        yield "嗯，知道了。"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=40)
    args = p.parse_args(argv)
    os.environ.setdefault("ROLECAST_HOME", tempfile.mkdtemp(prefix="rolecast-bench-"))

    from rolecast.character import store
    from rolecast.group.scene import GroupScene
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    characters = [store.load(n) for n in ("xiaoman", "yunzhou", "shiwen")]
    indexes = [load_index(c, "use") for c in characters]
    llm = Instant()

    def single() -> list[float]:
        session = Session(characters[0], indexes[0], llm, order="split")
        times = []
        for i in range(args.turns):
            started = time.perf_counter()
            session.reply(LINES[i % len(LINES)])
            times.append(time.perf_counter() - started)
        return times

    def group() -> list[float]:
        sessions = [
            Session(c, x, llm, order="split") for c, x in zip(characters, indexes, strict=True)
        ]
        scene = GroupScene.of(sessions, "natural", chime=0.0)
        times = []
        for i in range(args.turns):
            started = time.perf_counter()
            for _ in scene.say(LINES[i % len(LINES)]):
                pass
            times.append(time.perf_counter() - started)
        return times

    single(), group()  # warm: the embedder, the token counter, the indexes
    one, three = single(), group()
    m1, m3 = statistics.median(one) * 1000, statistics.median(three) * 1000
    print(f"# group turn cost ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})\n")
    print("| | median ms a turn | p90 ms |")
    print("|---|---|---|")
    for label, t in (("one character", one), ("scene of three (natural)", three)):
        q = statistics.quantiles(t, n=10)[-1] * 1000
        print(f"| {label} | {statistics.median(t) * 1000:.1f} | {q:.1f} |")
    print(f"\nadded by the scene: {m3 - m1:+.1f} ms a turn (target <= 20 ms), {args.turns} turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
