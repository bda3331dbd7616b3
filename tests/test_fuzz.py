"""A short run of the importer fuzzer (benchmarks/fuzz_importers.py runs it long)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_importers.py"


def test_every_importer_returns_or_raises_its_documented_error() -> None:
    spec = importlib.util.spec_from_file_location("fuzz_importers", SCRIPT)
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    report = fuzz.run(n=150, seed=1, verbose=False)
    assert {"role-jsonl", "role-zip", "package-zip"} <= set(report)
    for name, stats in report.items():
        assert stats["crashed"] == 0, (name, stats)
        assert stats["inputs"] == 150 and stats["refused"] > 0, (name, stats)
