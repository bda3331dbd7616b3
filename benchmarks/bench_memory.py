"""Memory figures (issue 20): what a conversation's memory costs and keeps.

- prepare: rolecast's time to prepare one turn (canon retrieval, memory recall, assembly) in a
  conversation with 1,000 remembered turns (summary folded up to the history window, 3 pinned
  facts, every turn indexed), against the same turn with no memory, and with a fresh chat.
  Target: p50 <= 15 ms, p99 <= 40 ms on 2 cores. Also the cost of indexing a turn when it is
  recorded (two embeddings, after the reply).
- kv: the local model over 20 turns with memory on, as `rolecast chat` runs it: between turns
  the summary is folded (a backend call) and the next prompt's start prefilled while the user
  types; the share of each turn's prompt that comes from the KV cache, turns 2-20 (target
  >= 60%), against memory off; the summaries the model wrote are printed, to read.

    .venv/bin/python benchmarks/bench_memory.py --parts prepare,kv [--lines 200] [--turns 20]
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
from rolecast.prompt.assemble import Turn  # noqa: E402

TOPICS = [
    "渡口的雾",
    "码头的盐船",
    "铁匠铺的招牌",
    "河水涨了",
    "集市的糖人",
    "周伯修台阶",
    "豆子的作业本",
    "茶馆的说书先生",
    "灯笼被吹灭",
    "山上的枫叶",
    "桥上的霜",
    "渔船回港",
    "庙会",
    "连下三天的雨",
    "面摊的新汤",
    "县城的大夫",
    "镇口的老槐树",
    "奶奶的咳嗽",
    "煤球抓老鼠",
    "对岸的灯塔",
]
ASKS = ["还记得我说过的{t}吗？", "{t}后来怎么样了？", "你觉得{t}怎么样？", "再说说{t}吧。"]
CHAT = [  # the kv part's conversation: a fact early, asked for later
    "你好，我是从下游来的旅人。",
    "我家的猫叫雪团，是一只白猫，最怕打雷。",
    "今天的面多少钱一碗？",
    "你怕不怕河水？",
    "明天还开摊吗？",
    "对面的馄饨好吃吗？",
    "你平时都修些什么？",
    "桥头的灯是谁点的？",
    "镇上最近有什么新鲜事？",
    "你去过县城吗？",
    "下雨天生意好吗？",
    "你奶奶身体还好吗？",
    "有人欠你面钱不还吗？",
    "你最拿手的是哪碗面？",
    "雾天出船危险吗？",
    "你想过离开青雾渡吗？",
    "你还记得我家的猫叫什么吗？",
    "我刚才说我是从哪来的？",
    "给我讲讲你爹的事吧。",
    "天晚了，我该走了。",
]


class Instant(LLM):
    """Answers at once: no model time."""

    name = "instant"
    model = "qwen2.5-coder-0.5b"  # its token counter, as the default model's
    context_window = 4096

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams) -> Iterator[str]:
        yield "嗯。"


def remembered(n: int) -> list[Turn]:
    turns = []
    for k in range(n // 2):
        topic = TOPICS[k % len(TOPICS)]
        turns.append(Turn("旅人", f"第{k}天，我跟你说说{topic}：那天的事我一直记得。"))
        turns.append(Turn("林小满", f"{topic}啊，第{k}天你讲过，我记得清清楚楚。"))
    return turns


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def prepare_part(lines: int, turns: int) -> None:
    from rolecast.character import store
    from rolecast.memory import Memory
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    character = store.load("xiaoman")
    index = load_index(character, "use")
    history = remembered(turns)
    memory = Memory(index.embedder)
    t = time.perf_counter()
    memory.index(history)
    index_s = time.perf_counter() - t
    rows = {}
    for label in ("1,000 turns, memory on", "1,000 turns, memory off", "a new chat"):
        session = Session(character, index, Instant(), order="split")
        if label != "a new chat":
            session.history = list(history)
        if "on" in label:
            session.memory = memory
            window = session.window()
            memory.folded = window - window % memory.every
            memory.pieces = [
                "旅人这些天每天都来面摊，讲了镇上的许多事：渡口的雾、码头的盐船、庙会。"
            ] * 3
            memory.pins = ["旅人怕黑", "旅人不吃葱", "旅人叫阿青"]
        times, recalled, parts = [], 0, []
        for i in range(lines):
            topic = TOPICS[(7 * i) % len(TOPICS)]
            line = ASKS[i % len(ASKS)].format(t=topic) + f"（{len(rows)}-{i}）"  # never cached
            t = time.perf_counter()
            report = session.prepare(line)
            times.append((time.perf_counter() - t) * 1000)
            recalled += bool(report.assembly.memory_ids)
            parts.append(report.assembly.parts.get("memory", 0))
        rows[label] = (times, recalled, statistics.median(parts))
    # what recording a turn adds: its two turns embedded for recall
    rec = []
    for i in range(20):
        extra = remembered(2 * (i + 1))[-2:]
        t = time.perf_counter()
        memory.embedder.embed_documents([x.text + str(i) for x in extra])
        rec.append((time.perf_counter() - t) * 1000)
    print(f"## Prepare time per turn (ms, {lines} lines, instant backend, split order)\n")
    print("| conversation | p50 | p99 | max | lines that recalled | memory tokens (median) |")
    print("|---|---|---|---|---|---|")
    for label, (times, recalled, mem) in rows.items():
        print(
            f"| {label} | {statistics.median(times):.2f} | {percentile(times, 0.99):.2f} | "
            f"{max(times):.2f} | {recalled}/{lines} | {mem:.0f} |"
        )
    print(
        f"\nTargets: p50 <= 15 ms, p99 <= 40 ms. Indexing {turns} turns at once (a resumed chat "
        f"without saved vectors): {index_s:.2f} s; a recorded turn's two embeddings: "
        f"{statistics.median(rec):.1f} ms median (after the reply, not in the prepare time).\n"
    )


def store_part(lines: int, turns: int) -> None:
    """A server's turn in a long session: the session, its messages and vectors read from
    SQLite, the memory restored, the turn prepared (what ``server.app._prepare`` does)."""
    from rolecast.character import store
    from rolecast.chats import Chats, load_memory
    from rolecast.memory import Memory
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session
    from rolecast.store import open_store

    character = store.load("xiaoman")
    index = load_index(character, "use")
    db = open_store(None, Path(tempfile.mkdtemp(prefix="rolecast-db-")) / "bench.sqlite3")
    chats = Chats(db, "bench")
    sid = chats.start(["xiaoman"])
    history = remembered(turns)
    memory = Memory(index.embedder)
    memory.index(history)
    rows = [("user" if k % 2 == 0 else "assistant", t) for k, t in enumerate(history)]
    chats.save_turn(sid, ["xiaoman"], rows, memory)
    results = {}
    for label in ("vectors read each turn", "vectors kept between turns (the server)"):
        times, known = [], None
        for i in range(lines):
            line = ASKS[i % len(ASKS)].format(t=TOPICS[i % len(TOPICS)]) + f"（s{len(results)}{i}）"
            t = time.perf_counter()
            row = db.session("bench", sid)
            assert row is not None
            session = Session(character, index, Instant(), order="split")
            session.history = [Turn(m.speaker, m.content) for m in db.messages("bench", sid)]
            session.memory = load_memory(
                Memory(index.embedder), {}, db, "bench", sid, len(session.history), known
            )
            session.prepare(line)
            times.append((time.perf_counter() - t) * 1000)
            if "kept" in label:
                known = session.memory.vectors
        results[label] = times
    db.close()
    print(f"## A server's turn in a {turns}-message session, from SQLite (ms, {lines} lines)\n")
    print("| | p50 | p99 | max |\n|---|---|---|---|")
    for label, times in results.items():
        p50, p99 = statistics.median(times), percentile(times, 0.99)
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {max(times):.2f} |")
    print()


def kv_part(model: str, turns: int, tokens: int, history_budget: int) -> None:
    from dataclasses import replace

    from rolecast.backends.local import LocalLLM
    from rolecast.character import store
    from rolecast.memory import Memory
    from rolecast.retrieval.index import load_index
    from rolecast.session import Session

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_backends import _render

    character = store.load("xiaoman")
    index = load_index(character, "use")
    llm = LocalLLM(model=model, seed=1)
    inner = llm._llm
    evaluated: list[int] = []
    real_eval = inner.eval

    def counting(toks):  # type: ignore[no-untyped-def]
        evaluated.append(len(toks))
        return real_eval(toks)

    inner.eval = counting
    results = {}
    try:
        for with_memory in (True, False):
            inner.reset()
            session = Session(
                character,
                index,
                llm,
                order="split",
                params=GenerationParams(max_tokens=tokens, seed=1),
            )
            assert session.budget is not None
            session.budget = replace(session.budget, history=history_budget)
            if with_memory:
                session.memory = Memory(index.embedder)
            rows, between, notes = [], [], []
            for i in range(turns):
                line = CHAT[i % len(CHAT)]
                evaluated.clear()
                t = time.perf_counter()
                session.reply(line)
                wait = time.perf_counter() - t
                fresh = evaluated[0] if evaluated else 0
                assert session.last is not None
                rendered = _render(inner, session.last.assembly.messages)
                prompt = len(inner.tokenize(rendered.encode(), add_bos=False, special=True))
                rows.append((i + 1, fresh, prompt, wait, session.last.reply))
                evaluated.clear()
                t = time.perf_counter()
                did = session.remember() if with_memory else "none"
                summary_s = time.perf_counter() - t
                session.prefill()
                between.append(sum(evaluated))
                if did != "none":
                    notes.append(
                        (i + 1, did, summary_s, session.memory.summary if session.memory else "")
                    )
            results[with_memory] = (rows, between, notes, session)
    finally:
        inner.eval = real_eval
    print(f"## KV cache over {turns} turns, history budget {history_budget} tokens, ", end="")
    print("prefill between turns\n")
    print("| memory | turns 2-N tokens evaluated at the turn | prompt tokens | from cache ", end="")
    print("| median wait s |")
    print("|---|---|---|---|---|")
    for with_memory, (rows, _, _, _) in results.items():
        later = rows[1:]
        fresh = sum(r[1] for r in later)
        total = sum(r[2] for r in later)
        print(
            f"| {'on' if with_memory else 'off'} | {fresh} | {total} | {1 - fresh / total:.0%} | "
            f"{statistics.median(r[3] for r in later):.2f} |"
        )
    rows, between, notes, session = results[True]
    print("\n### With memory: per turn\n")
    print("| turn | evaluated | between turns (summary + prefill) | reply |\n|---|---|---|---|")
    for (turn, fresh, _, _, reply), b in zip(rows, between, strict=True):
        print(f"| {turn} | {fresh} | {b} | {reply[:60]} |")
    print("\n### Summaries the model wrote\n")
    for turn, did, secs, summary in notes:
        print(f"- after turn {turn} ({did}, {secs:.1f} s): {summary}")
    llm.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="prepare,store,kv")
    p.add_argument("--lines", type=int, default=200)
    p.add_argument("--remembered", type=int, default=1000)
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--history-budget", type=int, default=400)
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    args = p.parse_args(argv)
    os.environ.setdefault("ROLECAST_HOME", tempfile.mkdtemp(prefix="rolecast-bench-"))
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"# rolecast memory benchmark\n\n- {when} · nproc {os.cpu_count()}\n")
    parts = set(args.parts.split(","))
    if "prepare" in parts:
        prepare_part(args.lines, args.remembered)
    if "store" in parts:
        store_part(args.lines, args.remembered)
    if "kv" in parts:
        kv_part(args.model, args.turns, args.tokens, args.history_budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
