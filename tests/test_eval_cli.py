"""`rolecast eval personality` and `rolecast eval in-character` through the CLI: a scripted
backend that answers by what it is asked gives known scores and rates, the reports are
written, a rerun comes from the cache; bad input fails before a model loads; then both
commands end to end with SmolLM2."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import rolecast.backends.scripted
from rolecast.backends.base import LLM, GenerationParams
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.eval import interview as iv
from rolecast.eval import probes as pr

from conftest import make_english_character

Respond = Callable[[list[dict[str, str]]], str]


class Responder(LLM):
    """A thread-safe test backend that answers each request by what it asks (so the order
    the runner sends them in does not matter), records every request and the most
    requests it had in flight at once."""

    name = "scripted"
    thread_safe = True

    def __init__(self, respond: Respond, model: str | None = None) -> None:
        self.respond = respond
        self.model = model or "scripted"
        self.requests: list[list[dict[str, str]]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def stream(self, messages: Sequence[dict[str, str]], params: GenerationParams):  # type: ignore[no-untyped-def]
        with self.lock:
            self.requests.append([dict(m) for m in messages])
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.01)  # long enough for other items to start when run concurrently
            reply = self.respond([dict(m) for m in messages])
        finally:
            with self.lock:
                self.active -= 1
        yield from (reply[i : i + 5] for i in range(0, len(reply), 5))


class Backends:
    """Every backend the CLI made with ``--backend scripted``, in order."""

    def __init__(self) -> None:
        self.made: list[Responder] = []
        self.respond: Respond = lambda messages: ""

    def __call__(self, **options: Any) -> Responder:
        llm = Responder(self.respond, options.get("model"))
        self.made.append(llm)
        return llm

    @property
    def requests(self) -> int:
        return sum(len(b.requests) for b in self.made)


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch, rolecast_home: Path) -> Backends:
    """``--backend scripted`` gives a Responder (the registry looks the class up by name
    in its module each time); the English test character is installed as ``mia``."""
    made = Backends()
    monkeypatch.setattr(rolecast.backends.scripted, "ScriptedLLM", made)
    monkeypatch.delenv("ROLECAST_MODEL", raising=False)
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    return made


MIA = make_english_character()
CANON_LINES = [ln.text for s in MIA.scenes for ln in s.lines if ln.speaker == "Mia"]


def asked(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


# ---- personality ----------------------------------------------------------------------------

# --items 2 asks items 1, 6R (E), 2R, 7 (A), 3, 8R (C), 4, 9R (N), 5, 10 (O). The judge's
# raw ratings, and by hand the factor means after turning reverse-keyed items (6 - s):
RATINGS = {1: 4, 6: 2, 2: 5, 7: 2, 3: 5, 8: 1, 4: 3, 9: 2, 5: 1, 10: 2}
EXPECTED = {"E": 4.0, "A": 1.5, "C": 5.0, "N": 3.5, "O": 1.5}
# labels: E 4.5 (error 0.5, high: right), A low (1.5: right), N 2 (error 1.5, low: wrong)
LABELS = {"E": 4.5, "A": "low", "Neuroticism": 2}


def interviewee(answer: str = "Answer to item {n}.") -> Respond:
    """The character answers "Answer to item N."; the judge rates item N with RATINGS[N]."""

    def respond(messages: list[dict[str, str]]) -> str:
        if "You rate personality" in messages[0]["content"]:
            n = int(re.search(r"to item (\d+)\.", messages[1]["content"])[1])  # type: ignore[index]
            return f'{{"score": {RATINGS[n]}}}' if n % 2 else str(RATINGS[n])
        last = messages[-1]["content"]
        (item,) = [i for i in iv.ITEMS if i.question_en in last]
        return answer.format(n=item.number)

    return respond


def judge_requests(llm: Responder) -> list[list[dict[str, str]]]:
    return [r for r in llm.requests if "You rate personality" in r[0]["content"]]


@pytest.mark.needs("matplotlib", extra="eval")
def test_personality_gives_the_known_scores_writes_the_report_and_reruns_from_the_cache(
    backends: Backends, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backends.respond = interviewee()
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(LABELS), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["eval", "personality", "mia", "--items", "2", "--labels", str(labels)]
    argv += ["--backend", "scripted", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    # the judge is the character's backend object itself: one backend made, 10 + 10 requests
    assert len(backends.made) == 1
    llm = backends.made[0]
    assert len(llm.requests) == 20 and len(judge_requests(llm)) == 10
    assert llm.peak > 1  # a thread-safe backend gets several items at once
    for messages in llm.requests:
        if messages not in judge_requests(llm):
            # a fresh conversation (system + the question), the canon retrieved into it
            assert len(messages) == 2 and MIA.persona in messages[0]["content"]
            assert any(line in asked(messages) for line in CANON_LINES)

    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["eval"] == "personality" and data["character"]["id"] == "mia"
    assert data["backend"] == "scripted" and data["judge"]["backend"] == "scripted"
    assert {f: s["score"] for f, s in data["scores"].items()} == EXPECTED
    assert all(s["items"] == s["asked"] == 2 for s in data["scores"].values())
    c = data["comparison"]
    assert c["mean_abs_error"] == pytest.approx(1.0) and c["n_error"] == 2
    assert c["side_accuracy"] == pytest.approx(2 / 3) and c["n_side"] == 3
    assert c["factors"]["N"]["side_correct"] is False
    assert [a["number"] for a in data["answers"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert data["answers"][5]["reply"] == "Answer to item 6."
    assert (data["answers"][5]["score"], data["answers"][5]["keyed"]) == (2, 4)
    assert data["meta"]["items_per_factor"] == 2 and data["unparsed"] == data["empty"] == 0

    report = (out / "report.md").read_text("utf-8")
    assert "# Personality interview: Mia (mia)" in report and "A test backend" in report
    assert "| Extraversion (E) | 4.00 | 2/2 | 4.50 | 0.50 | yes |" in report
    assert "![big_five](big_five.png)" in report
    assert (out / "big_five.png").read_bytes()[:4] == b"\x89PNG"
    lines = {ln.split()[0]: ln for ln in printed.splitlines() if ln[:2].strip() in EXPECTED}
    assert {f: float(lines[f].split()[2]) for f in EXPECTED} == EXPECTED
    assert "mean abs error 1.00" in printed and "side right 67%" in printed

    assert main(argv) == 0  # again: every answer and every rating from the cache
    assert len(backends.made) == 2 and backends.made[1].requests == []
    assert "20 items read from the cache" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text("utf-8"))
    assert again["scores"] == data["scores"] and again["answers"] == data["answers"]


def _drop_answers(out: Path) -> int:
    """Remove the cached answers (not the ratings); returns how many."""
    dropped = 0
    for path in (out / "cache").rglob("*.json"):
        if json.loads(path.read_text("utf-8"))["item"].get("phase") == "answer":
            path.unlink()
            dropped += 1
    return dropped


@pytest.mark.needs("matplotlib", extra="eval")
def test_a_changed_answer_is_judged_again(backends: Backends, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["eval", "personality", "mia", "--items", "1", "--backend", "scripted"]
    argv += ["--out", str(out), "--concurrency", "1"]
    backends.respond = interviewee()
    assert main(argv) == 0
    assert backends.requests == 10 and backends.made[0].peak == 1
    # the same answers again: the cached ratings still apply
    assert _drop_answers(out) == 5
    assert main(argv) == 0
    assert len(backends.made[1].requests) == 5 and judge_requests(backends.made[1]) == []
    # other answers: each is rated anew
    assert _drop_answers(out) == 5
    backends.respond = interviewee("Something else entirely, to item {n}.")
    assert main(argv) == 0
    judged = judge_requests(backends.made[2])
    assert len(backends.made[2].requests) == 10 and len(judged) == 5
    assert all("Something else entirely" in r[1]["content"] for r in judged)
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert {a["reply"][:14] for a in data["answers"]} == {"Something else"}


@pytest.mark.needs("matplotlib", extra="eval")
def test_a_judge_option_gives_the_judge_a_backend_of_its_own(
    backends: Backends, tmp_path: Path
) -> None:
    backends.respond = interviewee()
    out = tmp_path / "out"
    argv = ["eval", "personality", "mia", "--items", "1", "--backend", "scripted"]
    assert main([*argv, "--judge-model", "judge-x", "--out", str(out)]) == 0
    character, judge = backends.made
    assert judge.model == "judge-x" and character.model == "scripted"
    assert judge_requests(character) == [] and len(character.requests) == 5
    assert len(judge_requests(judge)) == len(judge.requests) == 5
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["judge"] == {"backend": "scripted", "model": "judge-x"}
    assert data["judge_model"] == "judge-x" and data["model"] == "scripted"
    assert "Judge: Backend `scripted`, model `judge-x`" in (out / "report.md").read_text("utf-8")


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ('{"E": 9}', [], "label for E (Extraversion) must be a number from 1 to 5"),
        ('{"Q": 3}', [], "unknown Big Five factor 'Q'"),
        ("E = [", [], "labels.txt: not JSON"),
        ('{"E": 3}', ["--items", "0"], "--items must be at least 1, not 0"),
    ],
)
def test_personality_bad_input_fails_before_a_model_loads(
    backends: Backends,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    extra: list[str],
    message: str,
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text(content, encoding="utf-8")
    argv = ["eval", "personality", "mia", "--labels", str(labels), "--backend", "scripted"]
    assert main([*argv, *extra, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rolecast: error: ") and message in err
    assert backends.made == []


# ---- in-character -----------------------------------------------------------------------------

REPLIES = {
    "ai-1": "I am an AI language model, here to help.",  # the rules flag it
    "ai-2": "A chat what? I sell noodles, friend.",
    "meta-1": "A company? My stall is the only company I keep.",
    "meta-2": "Models? The only model I know is a model boat.",
}
VERDICTS = {  # the judge: yes (overruled by the rules), yes, no, unreadable twice
    "ai-1": '{"in_character": "yes"}',
    "ai-2": '{"in_character": "yes", "reason": "deflects"}',
    "meta-1": '{"in_character": "no", "reason": "odd"}',
    "meta-2": "hmm",
}
PROBE_LINES = {p.id: p.line(MIA) for p in pr.select("en", ["ai", "meta"], 2)}


def prober(messages: list[dict[str, str]]) -> str:
    if "stays in character" in messages[0]["content"]:
        (pid,) = [p for p, reply in REPLIES.items() if reply in messages[1]["content"]]
        return VERDICTS[pid]
    (pid,) = [p for p, line in PROBE_LINES.items() if line in messages[-1]["content"]]
    return REPLIES[pid]


def is_judge(messages: list[dict[str, str]]) -> bool:
    return "stays in character" in messages[0]["content"]


@pytest.mark.needs("matplotlib", extra="eval")
def test_in_character_gives_the_known_rates_writes_the_report_and_reruns_from_the_cache(
    backends: Backends, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backends.respond = prober
    out = tmp_path / "out"
    argv = ["eval", "in-character", "mia", "--categories", "ai,meta", "--per-category", "2"]
    argv += ["--backend", "scripted", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (llm,) = backends.made  # the judge is the same backend object
    judged = [r for r in llm.requests if is_judge(r)]
    # 4 replies (the AI one sampled twice more: the session retries a refusal), 4 verdicts + 1 retry
    assert len(llm.requests) == 11 and len(judged) == 5
    assert llm.peak > 1
    replies = [m for m in llm.requests if not is_judge(m)]
    with_canon = [m for m in replies if any(line in asked(m) for line in CANON_LINES)]
    assert all(len(m) == 2 for m in replies)
    # every reply sees the canon, but for the refused one's last try: from the persona alone
    assert len(with_canon) == len(replies) - 1

    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["eval"] == "in-character" and data["character"]["name"] == "Mia"
    assert data["overall"] == {"rate": 0.3333, "stays": 1, "decided": 3, "total": 4}
    assert data["by_category"] == {
        "ai": {"rate": 0.5, "stays": 1, "decided": 2, "total": 2},
        "meta": {"rate": 0.0, "stays": 0, "decided": 1, "total": 2},
    }
    assert data["rule_counts"] == {"ai_self": 1, "telltale": 1}  # "AI", "language model"
    assert [(p["id"], p["stays"]) for p in data["probes"]] == [
        ("ai-1", False),
        ("ai-2", True),
        ("meta-1", False),
        ("meta-2", None),
    ]
    assert data["judge_model"] == "scripted" and data["judge"]["backend"] == "scripted"
    assert data["meta"]["categories"] == ["ai", "meta"]

    report = (out / "report.md").read_text("utf-8")
    assert "# Staying in character: Mia (mia)" in report and "A test backend" in report
    assert "| ai | 50% | 1 | 2 | 2 |" in report and "![in_character](in_character.png)" in report
    assert (out / "in_character.png").read_bytes()[:4] == b"\x89PNG"
    rates = {ln.split()[0]: ln.split()[1] for ln in printed.splitlines() if "decided" in ln}
    assert rates == {"overall": "33%", "ai": "50%", "meta": "0%"}

    assert main(argv) == 0
    assert len(backends.made) == 2 and backends.made[1].requests == []
    assert "4 items read from the cache" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text("utf-8"))
    assert again["probes"] == data["probes"] and again["overall"] == data["overall"]


@pytest.mark.needs("matplotlib", extra="eval")
def test_in_character_rules_only_and_a_judge_of_its_own(backends: Backends, tmp_path: Path) -> None:
    backends.respond = prober
    argv = ["eval", "in-character", "mia", "--categories", "ai,meta", "--per-category", "2"]
    argv += ["--backend", "scripted"]
    assert main([*argv, "--no-judge", "--out", str(tmp_path / "rules")]) == 0
    (llm,) = backends.made
    # 4 probes, the AI reply sampled twice more (the session retries a refusal)
    assert len(llm.requests) == 6 and not any(is_judge(r) for r in llm.requests)
    data = json.loads((tmp_path / "rules" / "results.json").read_text("utf-8"))
    assert data["overall"]["rate"] == 0.75 and data["by_category"]["meta"]["rate"] == 1.0
    assert data["judge"] is None and data["judge_model"] == ""
    assert "No judge" in (tmp_path / "rules" / "report.md").read_text("utf-8")

    assert main([*argv, "--judge-model", "judge-x", "--out", str(tmp_path / "judged")]) == 0
    character, judge = backends.made[1:]
    assert len(character.requests) == 6 and not any(is_judge(r) for r in character.requests)
    assert len(judge.requests) == 5 and all(is_judge(r) for r in judge.requests)
    data = json.loads((tmp_path / "judged" / "results.json").read_text("utf-8"))
    assert data["overall"]["rate"] == 0.3333 and data["judge_model"] == "judge-x"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--categories", "ai,nope"], "unknown probe categories ['nope']; known: ai, instr"),
        (["--per-category", "0"], "--per-category must be at least 1, not 0"),
        (["--no-judge", "--judge-model", "x"], "--no-judge leaves the judge out"),
    ],
)
def test_in_character_bad_input_fails_before_a_model_loads(
    backends: Backends,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    argv = ["eval", "in-character", "mia", "--backend", "scripted", "--out", str(tmp_path)]
    assert main([*argv, *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rolecast: error: ") and message in err
    assert backends.made == []


# ---- end to end with SmolLM2 --------------------------------------------------------------


@pytest.mark.e2e  # a real model
def test_personality_and_in_character_end_to_end_with_smollm2(
    rolecast_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    local = ["--backend", "local", "--model", "smollm2", "--context-window", "2048"]
    local += ["--max-tokens", "16"]
    out = tmp_path / "personality"
    assert main(["eval", "personality", "mia", "--items", "1", "--out", str(out), *local]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["backend"] == "local" and data["model"].startswith("SmolLM2")
    assert data["judge"] == {"backend": "local", "model": data["model"]}
    assert data["judge_model"] == data["model"] and data["items"] == 5
    assert [a["factor"] for a in data["answers"]] == list(iv.FACTORS)
    for a in data["answers"]:
        assert a["status"] in {"ok", "unparsed", "empty"}
        assert a["score"] is None or 1 <= a["score"] <= 5
    assert list(data["scores"]) == list(iv.FACTORS)
    for s in data["scores"].values():
        assert s["asked"] == 1 and (s["score"] is None or 1 <= s["score"] <= 5)
    assert data["comparison"] is None
    assert "small-model numbers" in (out / "report.md").read_text("utf-8")
    assert (out / "big_five.png").is_file()
    assert sum(ln[:2] in {"E ", "A ", "C ", "N ", "O "} for ln in printed.splitlines()) == 5

    out = tmp_path / "in-character"
    argv = ["eval", "in-character", "mia", "--per-category", "1", "--out", str(out), *local]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["backend"] == "local" and data["judge_model"] == data["model"]
    assert [p["category"] for p in data["probes"]] == list(pr.CATEGORIES)
    assert set(data["by_category"]) == set(pr.CATEGORIES)
    for p in data["probes"]:
        assert p["judged"] and p["stays"] in {True, False, None}
        assert p["stays"] is not True or not p["violations"]
    overall = data["overall"]
    assert overall["total"] == 5 and overall["decided"] <= 5
    assert overall["rate"] is None or 0.0 <= overall["rate"] <= 1.0
    assert "small-model numbers" in (out / "report.md").read_text("utf-8")
    assert (out / "in_character.png").is_file()
    assert printed.splitlines()[0].startswith("overall")
