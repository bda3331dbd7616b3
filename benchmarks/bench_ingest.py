"""Ingest speed: a synthetic episode from files to package, against its running time.

    python benchmarks/bench_ingest.py [--minutes 24] [--speakers 3]

Builds a synthetic episode (tests/synthetic_episode.py: espeak-ng voices, an ffmpeg video, SRT
subtitles; the build is not timed), labels three lines per speaker from the known truth, then
times each step: `episode` (subtitles, audio clips, frames), `attribute` (voice embeddings) and
`package` (no persona draft). Target: the whole under 2x the episode's length.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=24)
    ap.add_argument("--speakers", type=int, default=3, help="voices in the episode (2-4)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from synthetic_episode import build_episode

    from rolecast.ingest import workdir

    base = Path(tempfile.mkdtemp(prefix="rolecast-bench-ingest-"))
    os.environ.setdefault("ROLECAST_HOME", str(base / "home"))
    t = time.perf_counter()
    ep = build_episode(
        base / "ep", lines=None, minutes=args.minutes, speakers=args.speakers, seed=1
    )
    built = time.perf_counter() - t
    work = workdir.WorkDir(base / "work")
    times: dict[str, float] = {}
    t = time.perf_counter()
    workdir.episode(work, ep.srt, ep.video)
    times["episode (subtitles, clips, frames)"] = time.perf_counter() - t
    lines = work.lines()
    truth = {}
    for ln in lines:
        mid = (ln.start + ln.end) / 2
        truth[ln.index] = next(x.speaker for x in ep.lines if x.start <= mid <= x.end)
    labels: dict[int, str] = {}
    for s in {x.speaker for x in ep.lines}:
        for i in [k for k, v in truth.items() if v == s][:3]:
            labels[i] = s
    work.save_labels(labels)
    t = time.perf_counter()
    report = workdir.attribute(work)
    times["attribute (voice embeddings)"] = time.perf_counter() - t
    t = time.perf_counter()
    speaker = ep.speakers[0].name
    workdir.package(work, speaker, base / "home" / "characters" / "bench", cid="bench")
    times["package"] = time.perf_counter() - t
    rest = [a for a in report.attributions.values() if a.band != "label"]
    assigned = [a for a in rest if a.band == "assigned"]
    right = sum(1 for a in assigned if a.speaker == truth[a.line])
    bands = {b: sum(1 for a in rest if a.band == b) for b in ("maybe", "unknown")}
    total = sum(times.values())
    print(f"# ingest benchmark ({time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()})\n")
    print(
        f"episode: {ep.duration / 60:.1f} min, {len(lines)} lines, {args.speakers} voices "
        f"(built in {built:.0f} s, not counted)\n"
    )
    print("| step | seconds |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} |")
    print(
        f"| total | {total:.1f} ({total / ep.duration:.3f} x real time; target <= 2) |\n\n"
        f"attribution with 3 labels per speaker: {right}/{len(rest)} right "
        f"({right / max(len(rest), 1):.1%}); {len(assigned)} assigned, "
        f"{len(assigned) - right} of them wrong; {bands['maybe']} maybe, "
        f"{bands['unknown']} unknown"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
