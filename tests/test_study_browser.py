"""The rating page in a real browser (Debian's Chromium through Playwright): two raters judge a
prepared study, the votes outlive a server restart, a second vote on a pair is refused, and the
report's numbers are the votes'. A phone-size screenshot is kept in ``test-artifacts/``."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import uvicorn_thread
from test_study_serve import study  # noqa: F401 - the prepared study fixture
from test_web_browser import ARGS, ARTIFACTS, CHROMIUM, _browser_or_skip

from rolecast.store import open_store
from rolecast.study.report import score_study
from rolecast.study.serve import Limiter, StudyState, create_study_app

pytestmark = pytest.mark.e2e


def judge_all(page, url: str, name: str, prefer: dict[str, str], shot: Path | None = None) -> int:  # type: ignore[no-untyped-def]
    """Rate every pair as ``name``, picking the reply whose text is in ``prefer`` (the
    texts of the system to pick); how many were judged."""
    page.goto(f"{url}?name={name}")
    judged = 0
    while True:
        page.wait_for_function(
            "document.getElementById('progress').textContent.includes('judged')", timeout=10_000
        )
        if "All pairs judged" in page.inner_text("#scene"):
            return judged
        if shot is not None and judged == 0:
            page.screenshot(path=str(shot), full_page=True)
        left = page.inner_text("#left .text")
        page.click("#pick-left" if left in prefer.values() else "#pick-right")
        before = page.inner_text("#progress")
        page.click("#send")
        page.wait_for_function(
            f"document.getElementById('progress').textContent !== {before!r}", timeout=10_000
        )
        judged += 1


def test_two_raters_in_chromium_votes_survive_a_restart(study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sync_playwright = _browser_or_skip()
    _, prepared = study
    canon_texts = {item: r["canon"] for item, r in prepared["replies"].items()}
    db_path = tmp_path / "votes.sqlite3"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        db = open_store(None, db_path)
        state = StudyState(prepared, db, "k", Limiter(gap=0.0))
        with uvicorn_thread(create_study_app(state)) as url:
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            shot = ARTIFACTS / "study-phone.png"
            assert judge_all(phone, url + "/", "ann", canon_texts, shot) == 3
            assert not phone.is_visible("#send")  # all judged: nothing left to press
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        db.close()
        # a new server on the same database: the votes are there, ann has nothing left
        db = open_store(None, db_path)
        state = StudyState(prepared, db, "k", Limiter(gap=0.0))
        with uvicorn_thread(create_study_app(state)) as url:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/?name=ann")
            page.wait_for_function(
                "document.getElementById('progress').textContent.startsWith('3 / 3')",
                timeout=10_000,
            )
            bare_texts = {item: r["bare"] for item, r in prepared["replies"].items()}
            assert judge_all(page, url + "/", "bob", bare_texts) == 3
            # ann votes again on a pair through the API: refused, the first vote stands
            pid = next(iter(state.pairs))
            answer = page.evaluate(
                """async (pid) => { const r = await fetch('api/vote', {method: 'POST',
                   headers: {'Content-Type': 'application/json'},
                   body: JSON.stringify({rater: 'ann', pair: pid, choice: 'tie'})});
                   return r.status; }""",
                pid,
            )
            assert answer == 409
        rows = db.votes(prepared["digest"])
        db.close()
        browser.close()
    assert len(rows) == 6 and sorted({r[1] for r in rows}) == ["ann", "bob"]
    result = score_study(prepared, rows, rounds=200)
    # ann always picked canon, bob always bare: a draw, and no agreement
    assert result["win_rates"] == [{"a": "canon", "b": "bare", "a_wins": 0.5, "votes": 6}]
    assert result["scores"]["canon"]["score"] == pytest.approx(0, abs=1e-9)
    assert result["agreement"]["krippendorff_alpha"] < 0
