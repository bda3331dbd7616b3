"""Building a training set with a stand-in backend: what augment itself costs per row.

    python benchmarks/bench_augment.py [--rows 2000] [--character xiaoman] [--workers 1]

A thread-safe stand-in backend answers at once: each request for lines gets ten distinct
lines (drawn from a grammar of speakers, verbs and things, so the near-duplicate check has
real work), each turn a fixed in-character reply. What is timed is rolecast's own part: the
canon samples, reading and keeping lines (USE embeddings, cosine against all kept), a
Session per line (retrieval, prompt assembly, clean-up, the reply checks), the cache writes
and the dataset write. Prints rows, seconds, rows/s, peak RSS, and the time per phase.
The issue's figure is 50,000 rows in <= 5 min and <= 1 GB RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rolecast.backends.base import LLM, GenerationParams  # noqa: E402

WHO = ["旅人", "周伯", "豆子", "阿婆", "胖掌柜", "船夫", "货郎", "小孩", "老板娘", "书生"]
VERB = ["修", "买", "卖", "借", "找", "送", "洗", "看", "煮", "拿", "补", "换", "做", "烧", "教"]
THING = [
    "伞",
    "钟",
    "锅",
    "船",
    "灯",
    "鱼",
    "面",
    "汤",
    "桥",
    "雨衣",
    "茶",
    "酒",
    "米",
    "盐",
    "葱",
    "竹篮",
    "铜板",
    "木哨",
    "渔网",
    "药",
    "信",
    "布",
    "碗",
    "筷子",
    "柴",
    "油",
    "蛋",
    "糖",
]
WHEN = ["今晚", "明早", "昨天", "后天", "下雨天", "过年", "赶集那天", "雾散了", "天亮前", "收摊后"]
FORM = [
    "{when}你能帮我{verb}{thing}吗？",
    "{when}谁会来{verb}{thing}？",
    "听说{when}要{verb}{thing}，真的假的？",
    "你{when}还{verb}{thing}不？",
    "{when}我想{verb}点{thing}，去哪儿好？",
]


class StandIn(LLM):
    """Answers at once; ten new lines for a request for lines, a plain reply for a turn."""

    name = "stand-in"
    thread_safe = True

    def __init__(self) -> None:
        self.model = "stand-in"
        self.calls = 0
        self.lock = threading.Lock()

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        with self.lock:
            self.calls += 1
        if "再写" in messages[-1]["content"] or "Write " in messages[-1]["content"]:
            rng = random.Random(params.seed)
            lines = []
            for i in range(10):
                text = rng.choice(FORM).format(
                    when=rng.choice(WHEN), verb=rng.choice(VERB), thing=rng.choice(THING)
                )
                lines.append(f"{i + 1}. {rng.choice(WHO)}:「{text}」")
            yield "\n".join(lines)
        else:
            yield "雾大，先坐下喝口热汤，一碗面的事儿。"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2000, help="generated samples wanted")
    p.add_argument("--character", default="xiaoman")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)

    from rolecast.character import store
    from rolecast.eval.report import Cache
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session
    from rolecast.training import dataset as ds
    from rolecast.training.augment import Settings, augment, augment_scope

    character = store.load(args.character)
    index = load_index(character, "use")
    llm = StandIn()
    prototype = Session(character, index, llm, order="split")
    settings = Settings(n=args.rows, seed=0)
    phases: dict[str, float] = {}
    marks: dict[str, float] = {}

    def progress(step: str) -> Any:
        def show(done: int, total: int) -> None:
            marks.setdefault(step, time.perf_counter())
            if done >= total:
                phases[step] = phases.get(step, 0.0) + time.perf_counter() - marks.pop(step)

        return show

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        started = time.perf_counter()
        cache = Cache(out / "cache", augment_scope(prototype, settings))
        manifest, samples = augment(
            prototype, settings, cache=cache, workers=args.workers, progress=progress
        )
        made = time.perf_counter()
        ds.write_dataset(out, manifest, samples)
        took = time.perf_counter() - started
        size = sum(f.stat().st_size for f in out.glob("samples-*.jsonl"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    generated = sum(s.kind == "generated" for s in samples)
    print("| rows | generated | canon | seconds | rows/s | peak RSS | samples file |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {len(samples)} | {generated} | {len(samples) - generated} | {took:.1f} | "
        f"{len(samples) / took:.0f} | {peak_mb:.0f} MB | {size / 1e6:.1f} MB |"
    )
    print(
        "phases (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
        + f", write {took - (made - started):.1f}; backend calls {llm.calls}; "
        f"dropped {dict(manifest.dropped)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
