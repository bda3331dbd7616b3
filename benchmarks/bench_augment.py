"""Building a training set with a stand-in backend: what augment itself costs per row.

    python benchmarks/bench_augment.py [--rows 2000] [--character xiaoman] [--workers 1]

A thread-safe stand-in backend answers at once: each request for lines gets ten lines (five
sentence forms filled with random words of the character's canon, as far apart as real
lines, so the near-duplicate check keeps most and has real work), each request for a
conversation's next line one such line, each turn an in-character reply of its own. What is
timed is rolecast's own part: the canon samples, reading and keeping lines (USE embeddings,
cosine against all kept), a Session per line (retrieval, prompt assembly, clean-up, the
reply checks), the cache writes and the dataset write. Prints rows, seconds, rows/s, peak
RSS, and the time per phase. The issue's figure is 50,000 rows in <= 5 min and <= 1 GB RSS.
"""

from __future__ import annotations

import argparse
import math
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
FORM = [
    "{a}的时候，你能帮我{b}{c}吗？",
    "听说{a}要{b}，{c}是真的假的？",
    "你说{a}和{b}，哪个更{c}？",
    "{a}我想{b}点{c}，去哪儿好？",
    "为什么{a}总是{b}{c}？",
]


def vocabulary(character: Any) -> list[str]:
    """The words of the character's canon (jieba), two characters or more: lines made of
    them are as far apart as real ones, so the near-duplicate check keeps most of them."""
    import jieba

    words = {w for s in character.scenes for ln in s.lines for w in jieba.lcut(ln.text)}
    return sorted(w for w in words if len(w) >= 2 and w.isalnum())


class StandIn(LLM):
    """Answers at once; ten new lines for a request for lines, a plain reply for a turn."""

    name = "stand-in"
    thread_safe = True

    def __init__(self, words: list[str]) -> None:
        self.model = "stand-in"
        self.words = words
        self.calls = 0
        self.lock = threading.Lock()

    def line(self, rng: random.Random) -> str:
        a, b, c = (rng.choice(self.words) for _ in range(3))
        return rng.choice(FORM).format(a=a, b=b, c=c)

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        with self.lock:
            self.calls += 1
        asked = messages[-1]["content"]
        rng = random.Random(params.seed)
        if "再写" in asked or "Write " in asked:  # lines for the character
            yield "\n".join(f"{i + 1}. {rng.choice(WHO)}:「{self.line(rng)}」" for i in range(10))
        elif "接着会对" in asked or "say to" in asked:  # the next line of a conversation
            yield f"豆子:「{self.line(rng)}」"
        else:  # a reply of its own to each line (a model's replies differ)
            said = random.Random(f"{params.seed}:{messages[-1]['content']}")
            a, b = said.choice(self.words), said.choice(self.words)
            yield f"{a}？雾大，先坐下喝口热汤，{b}的事儿待会儿再说。"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2000, help="samples wanted in all")
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
    llm = StandIn(vocabulary(character))
    prototype = Session(character, index, llm, order="split")
    # lines wanted so that the samples (canon, first turns and continued turns) reach --rows
    per_line = 1 + Settings().continued * (Settings().turns - 1)
    settings = Settings(n=math.ceil(max(0, args.rows - len(character.scenes)) / per_line))
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
        f"dropped {dict(manifest.dropped)}; {manifest.samples} (named by its content)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
