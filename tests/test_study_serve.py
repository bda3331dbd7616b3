"""The rating page's API in process: votes kept once per rater and pair, sides hidden,
tampered pairs, floods and a database that is gone refused clearly; the report from the votes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TestClient = pytest.importorskip("starlette.testclient", reason="needs the server extra").TestClient

from test_study import Numbered, write

from rolecast.store import open_store
from rolecast.study.definition import read_study
from rolecast.study.prepare import prepare_study, study_folder
from rolecast.study.report import score_study, study_markdown
from rolecast.study.serve import Limiter, StudyState, create_study_app

LINES_ONLY = """
title = "小满"
characters = ["xiaoman"]
[prompts]
lines = ["你好，你是谁？", "今天的面多少钱？", "你怕不怕河水？"]
[[systems]]
id = "canon"
condition = "persona"
[[systems]]
id = "bare"
condition = "bare"
"""


@pytest.fixture
def study(tmp_path: Path):  # type: ignore[no-untyped-def]
    from rolecast.character import store

    s = read_study(write(tmp_path, LINES_ONLY))
    llm = Numbered()  # one backend for both systems: every reply is different
    prepared = prepare_study(
        s, study_folder(s), {"xiaoman": store.load("xiaoman")}, {}, lambda _s: llm
    )
    return s, prepared


def client_for(prepared, db, key: str = "adminkey", gap: float = 0.0):  # type: ignore[no-untyped-def]
    state = StudyState(prepared, db, key, Limiter(gap=gap, per_minute=1000))
    return TestClient(create_study_app(state)), state


def test_two_raters_vote_once_each_and_the_report_follows(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, prepared = study
    db = open_store(None, tmp_path / "votes.sqlite3")
    client, state = client_for(prepared, db)
    assert "小满" in client.get("/").text and "Can't tell" in client.get("/").text
    for rater in ("ann", "bob"):
        seen = set()
        while True:
            nxt = client.get("/api/next", params={"rater": rater}).json()
            if nxt["pair"] is None:
                assert nxt["progress"] == {"done": 3, "total": 3}
                break
            seen.add(nxt["pair"])
            pair = state.pairs[nxt["pair"]]
            replies = prepared["replies"][pair["item"]]
            # whichever side the canon reply is on, both raters pick it
            pick = "left" if nxt["left"] == replies["canon"] else "right"
            assert {nxt["left"], nxt["right"]} == {replies["canon"], replies["bare"]}
            r = client.post("/api/vote", json={"rater": rater, "pair": nxt["pair"], "choice": pick})
            assert r.status_code == 200, r.text
        assert len(seen) == 3
    # a second vote on a pair is refused; the first stands
    pid = next(iter(state.pairs))
    again = client.post("/api/vote", json={"rater": "ann", "pair": pid, "choice": "tie"})
    assert again.status_code == 409 and "first vote stands" in again.json()["error"]
    rows = db.votes(prepared["digest"])
    assert len(rows) == 6 and {r[2] for r in rows} == {"a"}  # a = canon, the study's first
    result = score_study(prepared, rows, rounds=200)
    assert result["votes"] == 6 and result["raters"] == 2
    assert result["scores"]["canon"]["score"] > result["scores"]["bare"]["score"]
    assert result["win_rates"] == [{"a": "canon", "b": "bare", "a_wins": 1.0, "votes": 6}]
    assert result["agreement"]["krippendorff_alpha"] == 1.0  # noqa: PLR2004
    assert "canon vs bare | 100% | 6" in study_markdown(result)
    # admin: counts and exports behind the key
    assert client.get("/api/admin/counts").status_code == 401
    counts = client.get("/api/admin/counts", headers={"Authorization": "Bearer adminkey"}).json()
    assert counts["votes"] == 6 and counts["raters"] == {"ann": 3, "bob": 3}
    lines = client.get("/api/export.jsonl?key=adminkey").text.splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["choice"] == "a"
    csv_text = client.get("/api/export.csv?key=adminkey").text
    assert csv_text.splitlines()[0].startswith("pair,item,a,b,rater,choice")
    admin_page = client.get("/admin?key=adminkey").text
    assert "6 votes, 2 raters" in admin_page and "refresh" in admin_page
    db.close()


def test_bad_votes_are_refused_and_count_for_nothing(study, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, prepared = study
    db = open_store(None, tmp_path / "votes.sqlite3")
    client, state = client_for(prepared, db, gap=30.0)
    pid = next(iter(state.pairs))
    cases = [
        ({"rater": "ann", "pair": pid[:-1] + "0", "choice": "left"}, 400, "no such pair"),
        ({"rater": "ann", "pair": pid, "choice": "both"}, 400, "left, right or tie"),
        ({"rater": "a b", "pair": pid, "choice": "left"}, 400, "rater"),
        ({"rater": "ann", "pair": pid, "choice": "left", "second": "x"}, 400, "second"),
    ]
    for body, status, says in cases:
        r = client.post("/api/vote", json=body)
        assert r.status_code == status and says in r.json()["error"], (body, r.text)
    assert client.post("/api/vote", content=b"{not json").status_code == 400
    assert (
        client.post("/api/vote", json={"rater": "ann", "pair": pid, "choice": "left"}).status_code
        == 200
    )
    other = list(state.pairs)[1]
    flood = client.post("/api/vote", json={"rater": "ann", "pair": other, "choice": "left"})
    assert flood.status_code == 429 and float(flood.headers["Retry-After"]) > 0
    assert len(db.votes(prepared["digest"])) == 1
    # the database gone: 503, nothing half-kept; the page's retry lands once it is back
    db.close()
    (tmp_path / "votes.sqlite3").unlink()
    (tmp_path / "votes.sqlite3").mkdir()
    state.limiter = Limiter(gap=0, per_minute=1000)
    down = client.post("/api/vote", json={"rater": "bob", "pair": pid, "choice": "left"})
    assert down.status_code == 503 and "try again" in down.json()["error"]
    assert client.get("/api/next", params={"rater": "bob"}).status_code == 503
