"""Evaluations: metrics by hand, the canon eval with the scripted backend (leaks, cache,
resume), the retrieval eval, the runner, reports and the map; then the CLI end to end
with SmolLM2, and the retrieval eval on a real corpus character."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rolecast.backends.base import LLM, GenerationParams
from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.model import Character, Line, Scene
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.errors import BackendError, InputError
from rolecast.eval import canon, metrics, report, retrieval, runner, viz
from rolecast.prompt.assemble import Assembly, Turn
from rolecast.retrieval.hybrid import Hit
from rolecast.retrieval.index import load_index
from rolecast.session import Session, TurnReport

from conftest import corpus_root, make_character, make_english_character

# ---- metrics ------------------------------------------------------------------------------


def test_rouge_l_by_hand() -> None:
    assert metrics.rouge_l("The cat sat.", "the cat sat") == 1.0
    assert metrics.rouge_l("dogs bark", "the cat sat") == 0.0
    # LCS "the cat on the mat" = 5 of 5 and 6 tokens: F1 = 2 * 1 * 5/6 / (1 + 5/6) = 10/11
    assert metrics.rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)
    # CJK by characters: 我爱北京 / 我在北京 share 我北京, P = R = 3/4
    assert metrics.rouge_l("我爱北京", "我在北京") == pytest.approx(0.75)
    assert metrics.rouge_tokens("Hi, 小满 there") == ["hi", "小", "满", "there"]
    assert metrics.rouge_l("", "") == 1.0 and metrics.rouge_l("", "x") == 0.0
    assert metrics.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4


def test_chrf_by_hand() -> None:
    assert metrics.chrf("拿来我补", "拿来我补") == 1.0
    assert metrics.chrf("a b c", "abc") == 1.0  # whitespace does not count
    assert metrics.chrf("xyz", "abc") == 0.0
    # "ab" vs "abc": n=1 P 1 R 2/3; n=2 P 1 R 1/2; n=3 P 0 R 0 (only the reference has one);
    # P = 2/3, R = 7/18, F2 = 5PR / (4P + R) = 14/33
    assert metrics.chrf("ab", "abc") == pytest.approx(14 / 33)
    assert metrics.chrf("", "abc") == 0.0


def test_cosines(embedder) -> None:
    sims = metrics.cosines(
        embedder,
        ["拿来我补，两文钱。", "", "完全不同的话题"],
        ["拿来我补，两文钱。", "x", "拿来我补"],
    )
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert sims[1] == 0.0  # an empty reply scores nothing
    assert sims[2] < 0.95
    with pytest.raises(ValueError):
        metrics.cosines(embedder, ["a"], [])


def test_bootstrap_interval_contains_the_mean_and_narrows_with_data() -> None:
    rng = np.random.default_rng(42)
    small = rng.normal(0.3, 1.0, 50)
    large = rng.normal(0.3, 1.0, 800)
    a = metrics.mean_interval(small, seed=1)
    b = metrics.mean_interval(large, seed=1)
    assert a.low < 0.3 < a.high and b.low < 0.3 < b.high
    assert b.high - b.low < (a.high - a.low) / 2
    assert metrics.mean_interval(small, seed=1) == a  # the same seed, the same bounds
    d = metrics.paired_difference([0.5, 0.7, 0.9], [0.3, 0.5, 0.7])
    assert (d.mean, d.low, d.high, d.n) == pytest.approx((0.2, 0.2, 0.2, 3))
    assert metrics.mean_interval([]).n == 0 and str(metrics.mean_interval([])) == "n/a"
    with pytest.raises(ValueError):
        metrics.paired_difference([1.0], [1.0, 2.0])


def test_recall_and_mrr_on_a_toy_ranking() -> None:
    ranks = [1, 3, None, 2]
    assert metrics.recall_at_k(ranks, 1) == 0.25
    assert metrics.recall_at_k(ranks, 2) == 0.5
    assert metrics.recall_at_k(ranks, 10) == 0.75
    assert metrics.mrr(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    with pytest.raises(ValueError):
        metrics.recall_at_k(ranks, 0)


# ---- canon eval ---------------------------------------------------------------------------


@pytest.fixture
def indexed(character: Character, embedder, tmp_path: Path):
    return character, load_index(character, embedder)


def test_session_exclude_keeps_a_scene_out(indexed) -> None:
    character, index = indexed
    s = Session(character, index, ScriptedLLM(["好"]))
    assert "s002" in s.prepare("那只黑猫又来偷鱼了！").assembly.scene_ids
    report_ = s.prepare("那只黑猫又来偷鱼了！", exclude={"s002"})
    assert "s002" not in report_.assembly.scene_ids
    assert all(h.scene.id != "s002" for h in report_.hits)
    assert s.reply("那只黑猫又来偷鱼了！", exclude={"s002"}) == "好"
    assert "s002" not in s.last.assembly.scene_ids


def test_held_out_turns() -> None:
    c = make_character()
    turns = canon.candidate_turns(c)
    assert len(turns) == 6
    t = turns[2]
    assert (t.scene_id, t.index) == ("s002", 2)
    assert [ln.speaker for ln in t.context] == ["旁白", "旅人"]
    assert t.line.text == "那只黑猫又来偷鱼了！" and t.target.startswith("煤球")
    assert [h.speaker for h in t.history()] == ["旁白"]
    a = canon.sample_turns(c, 4, seed=3)
    assert a == canon.sample_turns(c, 4, seed=3) and len({x.scene_id for x in a}) == 4
    with pytest.raises(InputError, match="--n 7 is more than the 6 held-out turns"):
        canon.sample_turns(c, 7)
    # a line said twice in the canon cannot be held out: a copy would be retrieved
    twice = make_character(8)
    twice.scenes.append(replace(twice.scenes[0], id="copy"))
    ids = {t.scene_id for t in canon.sample_turns(twice, 7)}
    assert "s000" not in ids and "copy" not in ids
    alone = Character("solo", "独白者", "", [Scene("a", "", (Line("独白者", "我一个人说话。"),))])
    with pytest.raises(InputError, match="no multi-speaker scene"):
        canon.sample_turns(alone, 1)


def _scripted_eval(character, index, replies, cache=None, **kw):  # type: ignore[no-untyped-def]
    llm = ScriptedLLM(replies)
    result = canon.run_canon_eval(
        character, llm, index.embedder, index, n=3, seed=0, cache=cache, **kw
    )
    return llm, result


@pytest.mark.needs("matplotlib", extra="eval")
def test_canon_eval_scores_the_original_line_at_one(indexed, tmp_path: Path) -> None:
    character, index = indexed
    items = canon.sample_turns(character, 3, 0)
    wrong = "今天天气不错，我们去散步吧。"
    replies = [*(it.target for it in items), *([wrong] * 3), *([wrong] * 3)]
    llm, result = _scripted_eval(character, index, replies)
    assert len(llm.requests) == 9 and not llm.queue
    for m in canon.METRICS:
        assert result.summary["canon"][m].mean == pytest.approx(1.0, abs=1e-5)
        assert result.summary["persona"][m].mean < 0.8
        diff = result.differences["canon - persona"][m]
        assert diff.low > 0 and diff.mean > 0.2
        assert result.differences["persona - bare"][m].mean == pytest.approx(0.0)
    # what each condition sends: canon without the held-out scene, persona alone, bare
    canon_sys = [m for m, _ in llm.requests[:3]]
    for msgs, item in zip(canon_sys, items, strict=True):
        system = msgs[0]["content"]
        assert character.persona in system and "经典片段" in system
        assert item.target not in json.dumps(msgs, ensure_ascii=False)
        assert msgs[-1]["content"] == item.line.text  # the user role's line, as said
    persona_sys = llm.requests[3][0][0]["content"]
    assert character.persona in persona_sys and "经典片段" not in persona_sys
    bare_sys = llm.requests[6][0][0]["content"]
    assert character.persona not in bare_sys and "小满" in bare_sys
    # paired: every condition answers an item with the same sampling seed
    seeds = [p.seed for _, p in llm.requests]
    assert seeds[:3] == seeds[3:6] == seeds[6:] and len(set(seeds[:3])) == 3

    head = {**report.header("canon", character, report.backend_info(llm)), "seed": 0}
    figures = canon.canon_figures(result)
    md = canon.canon_markdown(result, head, report.model_note(report.backend_info(llm)), figures)
    written = report.write_report(tmp_path / "out", {**head, **result.to_dict()}, md, figures)
    assert {"results.json", "report.md", "scores.png", "differences.png"} <= set(written)
    for path in written.values():
        assert path.stat().st_size > 0
    data = json.loads((tmp_path / "out" / "results.json").read_text("utf-8"))
    assert data["summary"]["canon"]["cosine"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert set(data["summary"]["canon"]["chrf"]) == {"mean", "low", "high", "n"}
    assert data["items"][0]["replies"]["persona"]["reply"] == wrong
    text = (tmp_path / "out" / "report.md").read_text("utf-8")
    assert "![scores](scores.png)" in text and "A test backend" in text
    assert (tmp_path / "out" / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


class _LeakyIndex:
    """An index that ignores ``exclude``: the held-out scene comes back."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.embedder = inner.embedder

    def search(self, query, k=8, mode="hybrid", exclude=()):  # type: ignore[no-untyped-def]
        return self.inner.search(query, k, mode)


def test_leak_check_fails_loudly(indexed) -> None:
    character, index = indexed
    with pytest.raises(canon.LeakError, match="held-out scene 's0.*' was retrieved"):
        _scripted_eval(character, _LeakyIndex(index), ["x"] * 9, conditions=["canon"])
    item = canon.sample_turns(character, 1, 0)[0]
    line = Turn("旅人", item.line.text)
    empty = Assembly([{"role": "system", "content": "你好"}], {}, [])
    copy = Scene("elsewhere", "", (Line("小满", item.target),))
    with pytest.raises(canon.LeakError, match="'elsewhere' contains the held-out line"):
        canon.check_leak(item, TurnReport(line, empty, [Hit(copy, 1.0, 1.0, 1.0)]))
    told = Assembly([{"role": "user", "content": f"小满:「{item.target}」"}], {}, [])
    with pytest.raises(canon.LeakError, match="user message of the prompt contains"):
        canon.check_leak(item, TurnReport(line, told, []))
    canon.check_leak(item, TurnReport(line, empty, []))  # a clean prompt passes


def test_cache_skips_finished_items_and_resumes(indexed, tmp_path: Path) -> None:
    character, index = indexed
    params = canon.DEFAULT_PARAMS
    scope = report.Cache.scope_for("canon", character, ScriptedLLM(), params)
    cache = report.open_cache(tmp_path, scope)
    # interrupted after four replies: the fifth request fails
    with pytest.raises(BackendError):
        _scripted_eval(character, index, [f"第{i}句回答。" for i in range(4)], cache=cache)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4
    llm, first = _scripted_eval(character, index, [f"再答{i}。" for i in range(5)], cache=cache)
    assert len(llm.requests) == 5  # only what was missing
    llm, again = _scripted_eval(character, index, [], cache=report.open_cache(tmp_path, scope))
    assert llm.requests == []  # a rerun calls the backend zero times
    assert again.to_dict() == first.to_dict()
    # another model (or character, or params) is another scope: nothing is reused
    other = report.open_cache(tmp_path, {**scope, "model": "other"})
    llm, _ = _scripted_eval(character, index, ["答。"] * 9, cache=other)
    assert len(llm.requests) == 9
    fresh = report.open_cache(tmp_path, scope, fresh=True)
    llm, _ = _scripted_eval(character, index, ["答。"] * 9, cache=fresh)
    assert len(llm.requests) == 9


def test_canon_eval_bad_input(indexed) -> None:
    character, index = indexed
    with pytest.raises(InputError, match="unknown condition.*nope"):
        _scripted_eval(character, index, [], conditions=["canon", "nope"])
    with pytest.raises(InputError, match="needs the character's index"):
        canon.run_canon_eval(character, ScriptedLLM(), index.embedder, None, n=1)
    with pytest.raises(InputError, match="--n must be at least 1"):
        canon.sample_turns(character, 0)


# ---- runner -------------------------------------------------------------------------------


class _Parallel(LLM):
    thread_safe = True
    name = "parallel"

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        yield "回答" + messages[-1]["content"][-3:]


def test_runner_is_concurrent_only_for_thread_safe_backends(tmp_path: Path) -> None:
    assert runner.workers_for(ScriptedLLM(), 8) == 1
    assert runner.workers_for(_Parallel(), 3) == 3
    assert runner.workers_for(_Parallel()) == runner.DEFAULT_WORKERS
    with pytest.raises(InputError):
        runner.workers_for(_Parallel(), 0)
    llm = _Parallel()
    seen: list[tuple[int, int]] = []
    out = runner.run_items(
        list(range(8)),
        lambda i: "".join(llm.stream([{"role": "user", "content": f"第{i:03d}"}], None)),
        workers=4,
        progress=lambda d, n: seen.append((d, n)),
    )
    assert out == [f"回答{i:03d}" for i in range(8)]  # in item order
    assert llm.peak > 1 and seen[0] == (0, 8) and seen[-1] == (8, 8)

    def fails(i: int) -> int:
        if i == 2:
            raise BackendError("boom")
        return i

    cache = report.Cache(tmp_path, {"eval": "t"})
    with pytest.raises(BackendError, match="boom"):
        runner.run_items(list(range(6)), fails, workers=3, cache=cache)
    assert cache.get(2) is None and cache.get(0) == 0  # finished items were kept


def test_concurrent_canon_eval_with_a_thread_safe_backend(indexed) -> None:
    character, index = indexed
    llm = _Parallel()
    result = canon.run_canon_eval(character, llm, index.embedder, index, n=4, workers=4)
    assert llm.peak > 1 and all(len(v) == 4 for v in result.replies.values())


# ---- retrieval eval -----------------------------------------------------------------------


def test_retrieval_queries_and_ranks_follow_search(embedder, tmp_path: Path) -> None:
    c = make_character(8)
    index = load_index(c, embedder)
    queries = retrieval.sample_queries(c, seed=1)
    assert len(queries) == 8 and {q.scene_id for q in queries} == {s.id for s in c.scenes}
    ranks = retrieval.query_ranks(index, queries, ("dense", "hybrid", "lexical"))
    for mode, got in ranks.items():
        for q, rank in zip(queries, got, strict=True):
            hits = index.search(q.text, len(index), mode)  # type: ignore[arg-type]
            assert rank == 1 + min(i for i, h in enumerate(hits) if h.scene.id in q.relevant)
    result = retrieval.run_retrieval_eval({"use": index}, queries, ks=(1, 5))
    rows = {(r.embedder, r.mode): r for r in result.rows}
    assert set(rows) == {("use", "dense"), ("use", "hybrid"), ("bm25", "lexical")}
    assert rows["use", "dense"].recall[1].mean == 1.0  # verbatim lines find their scene
    data = result.to_dict()
    assert data["results"][0]["recall@5"]["mean"] == 1.0 and len(data["queries"]) == 8
    with pytest.raises(InputError, match="--n 9 is more than the 8 queries"):
        retrieval.sample_queries(c, 9)
    # a scene repeated under another id is a hit too
    twice = make_character(3)
    twice.scenes.append(replace(twice.scenes[1], id="again"))
    q = next(q for q in retrieval.query_candidates(twice) if q.scene_id == "s001")
    assert q.relevant == ("s001", "again")


def test_paraphrases_are_made_once_and_cached(embedder, tmp_path: Path) -> None:
    c = make_english_character()
    index = load_index(c, embedder)
    queries = retrieval.sample_queries(c)
    llm = ScriptedLLM(['Paraphrase: "A dark cat took a fish once more!"', "", "Same?"])
    scope = report.Cache.scope_for("paraphrase", None, llm, retrieval.PARAPHRASE_PARAMS)
    made, dropped = retrieval.paraphrase_queries(
        queries, llm, "en", 3, cache=report.open_cache(tmp_path, scope)
    )
    assert len(llm.requests) == 3 and dropped == 1  # the empty one
    assert "the line below" in llm.requests[0][0][0]["content"]
    first = made[0]
    assert first.kind == "paraphrase" and first.original == queries[0].text
    assert first.text == "A dark cat took a fish once more!"
    again = ScriptedLLM()
    made2, _ = retrieval.paraphrase_queries(
        queries, again, "en", 3, cache=report.open_cache(tmp_path, scope)
    )
    assert again.requests == [] and made2 == made
    result = retrieval.run_retrieval_eval({"use": index}, queries + made)
    assert {r.kind for r in result.rows} == {"verbatim", "paraphrase"}
    assert retrieval.clean_paraphrase("\n改写：「我们去吃饭吧」\n解释") == "我们去吃饭吧"
    with pytest.raises(InputError, match="--paraphrases 5 is more than the 3 queries"):
        retrieval.paraphrase_queries(queries, llm, "en", 5)


# ---- viz ----------------------------------------------------------------------------------


def test_read_generated_formats_and_errors(tmp_path: Path) -> None:
    txt = tmp_path / "lines.txt"
    txt.write_text("one line\n\ntwo lines\n", encoding="utf-8")
    assert viz.read_generated(txt) == [("generated", "one line"), ("generated", "two lines")]
    jl = tmp_path / "g.jsonl"
    jl.write_text('"plain"\n{"text": "t", "label": "qwen"}\n{"reply": "r"}\n', encoding="utf-8")
    assert viz.read_generated(jl) == [("generated", "plain"), ("qwen", "t"), ("generated", "r")]
    res = tmp_path / "results.json"
    res.write_text(
        json.dumps({"items": [{"replies": {"canon": {"reply": "a"}, "bare": {"reply": "b"}}}]}),
        encoding="utf-8",
    )
    assert viz.read_generated(res) == [("reply with canon", "a"), ("reply, bare model", "b")]
    with pytest.raises(InputError, match="no such file"):
        viz.read_generated(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{nope\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid JSON"):
        viz.read_generated(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="no generated lines"):
        viz.read_generated(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="cannot read it"):
        viz.read_generated(binary)
    with pytest.raises(InputError, match="must be a list"):
        (tmp_path / "o.json").write_text('{"a": 1}', encoding="utf-8")
        viz.read_generated(tmp_path / "o.json")


@pytest.mark.needs("matplotlib", "sklearn", extra="eval")
def test_map_png_and_self_contained_html(embedder, tmp_path: Path) -> None:
    c = make_character(8)
    generated = [("canon", "煤球<b>回来</b>"), ("persona", "面好了 & 汤也好了")]
    points, method = viz.build_map(c, embedder, generated, seed=0)
    assert method == "t-SNE" and len(points) == 8 + 2
    assert points[-2].label == "canon (generated)"  # never mixed with the canon's own lines
    page = viz.map_html(points, "小满 <map>")
    assert "煤球&lt;b&gt;回来&lt;/b&gt;" in page and "面好了 &amp; 汤也好了" in page
    assert "<b>" not in page and "小满 &lt;map&gt;" in page
    assert "<script src" not in page and "https://" not in page and "<link" not in page
    assert page.count("<circle") == 10
    few, method = viz.build_map(c, embedder, [], max_canon=3)
    assert method == "PCA" and len(few) == 3
    written = report.write_report(
        tmp_path, {"points": len(points)}, "# map", {"map": viz.map_figure(points, "小满")}
    )
    assert written["map.png"].read_bytes()[:4] == b"\x89PNG"


# ---- the CLI end to end with a real model ----------------------------------------------------


@pytest.mark.e2e  # a real model
def test_cli_evals_end_to_end_with_smollm2(
    rolecast_home: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    save_character(make_english_character(), rolecast_home / "characters" / "mia")
    local = ["--backend", "local", "--model", "smollm2", "--context-window", "2048"]
    out = tmp_path / "canon"
    argv = ["eval", "canon", "mia", "--n", "3", "--max-tokens", "16", "--out", str(out), *local]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "canon " in captured.out and "wrote" in captured.out
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["backend"] == "local" and data["model"].startswith("SmolLM2")
    assert data["conditions"] == ["canon", "persona", "bare"] and len(data["items"]) == 3
    for cond in data["conditions"]:
        assert 0 <= data["summary"][cond]["rouge_l"]["mean"] <= 1
    assert "small-model numbers" in (out / "report.md").read_text("utf-8")
    assert (out / "scores.png").is_file() and (out / "differences.png").is_file()
    assert main(argv) == 0  # the rerun comes from the cache
    assert "9 items read from the cache" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text("utf-8"))["items"] == data["items"]

    monkeypatch.chdir(tmp_path)  # the default out dir is under the current folder
    assert main(["eval", "retrieval", "mia", "--paraphrases", "2", "--k", "1,2", *local]) == 0
    rdir = tmp_path / "eval-retrieval-mia"
    rdata = json.loads((rdir / "results.json").read_text("utf-8"))
    rows = {(r["kind"], r["embedder"], r["mode"]): r for r in rdata["results"]}
    assert rows["verbatim", "use", "dense"]["recall@1"]["mean"] == 1.0
    assert {k for k, _, _ in rows} <= {"verbatim", "paraphrase"}
    assert (rdir / "retrieval_verbatim.png").is_file() and (rdir / "report.md").is_file()

    assert main(["viz", "mia", "--generated", str(out / "results.json")]) == 0
    vdir = tmp_path / "viz-mia"
    assert (vdir / "map.png").is_file() and (vdir / "map.html").is_file()
    points = json.loads((vdir / "results.json").read_text("utf-8"))["points"]
    assert len([p for p in points if p["label"] != "canon"]) == 9


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "canon", "nobody", "--backend", "echo"], "unknown character 'nobody'"),
        (["eval", "canon", "xiaoman", "--n", "100000", "--backend", "echo"], "--n 100000 is"),
        (["eval", "canon", "xiaoman", "--conditions", "canon,x"], "unknown condition(s) x"),
        (["eval", "retrieval", "xiaoman", "--paraphrases", "100000"], "--paraphrases 100000"),
        (["viz", "xiaoman", "--generated", "/nowhere/x.jsonl"], "/nowhere/x.jsonl: no such file"),
    ],
)
def test_cli_bad_input(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.needs("matplotlib", extra="eval")
def test_cli_canon_with_echo_backend_and_default_out(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "canon", "xiaoman", "--n", "2", "--backend", "echo"]) == 0
    out = tmp_path / "eval-canon-xiaoman"
    data = json.loads((out / "results.json").read_text("utf-8"))
    assert data["backend"] == "echo" and data["n"] == 2
    assert data["params"]["max_tokens"] == canon.DEFAULT_PARAMS.max_tokens


# ---- the real corpus ----------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.skipif(corpus_root() is None, reason="ROLECAST_CORPUS is not set")
def test_retrieval_eval_on_a_corpus_character(embedder, tmp_path: Path) -> None:
    from rolecast.formats.chatharuhi import import_story_folder

    root = corpus_root()
    assert root is not None
    character = import_story_folder(root / "characters" / "haruhi").character
    index = load_index(character, embedder)
    queries = retrieval.sample_queries(character, 80, seed=0)
    started = time.perf_counter()
    result = retrieval.run_retrieval_eval({"use": index}, queries)
    assert time.perf_counter() - started < 30
    rows = {(r.embedder, r.mode): r for r in result.rows}
    # verbatim canon lines: retrieval must find nearly all of them near the top
    assert rows["use", "dense"].recall[10].mean >= 0.9
    assert rows["use", "hybrid"].recall[10].mean >= 0.9
    assert rows["bm25", "lexical"].mrr.mean > 0.5
    items = canon.sample_turns(character, 5, seed=0)
    assert all(len(metrics.normalise(it.target)) >= canon.MIN_TARGET_CHARS for it in items)


def test_generation_params_reach_the_backend(indexed) -> None:
    character, index = indexed
    params = GenerationParams(max_tokens=7, temperature=0.1)
    llm, _ = _scripted_eval(character, index, ["好的。"] * 3, conditions=["bare"], params=params)
    assert {(p.max_tokens, p.temperature) for _, p in llm.requests} == {(7, 0.1)}


def test_eval_llm_reads_prefixed_options_for_a_second_backend() -> None:
    import argparse

    from rolecast.cli.eval import eval_llm

    args = argparse.Namespace(
        backend="echo",
        model=None,
        base_url=None,
        api_key=None,
        judge_backend="scripted",
        judge_model=None,
        context_window=None,
    )
    assert eval_llm(args).name == "echo"
    assert eval_llm(args, prefix="judge_").name == "scripted"
    args.judge_backend = None  # unset: the main backend's option is used
    assert eval_llm(args, prefix="judge_").name == "echo"


def test_a_turn_the_model_gives_no_answer_to_scores_as_an_empty_reply(tmp_path, embedder) -> None:
    from rolecast.backends.scripted import ScriptedLLM
    from rolecast.eval import canon as canon_eval
    from rolecast.retrieval.index import load_index

    from conftest import make_character

    c = make_character()
    llm = ScriptedLLM(["旅人:「我替她说」"] * 3)  # speaks only for others: no answer
    prototype = canon_eval.condition_session("persona", c, llm, load_index(c, embedder))
    item = canon_eval.sample_turns(c, 1)[0]
    assert canon_eval.generate(prototype, item)["reply"] == ""
    assert len(llm.requests) == 3


def test_the_reply_code_is_in_every_eval_scope(tmp_path: Path) -> None:
    scope = report.Cache.scope_for("canon", None, ScriptedLLM())
    assert scope["code"] == report.reply_code_digest()
    # a change to any file of the reply's code (a clean-up fix) is another scope
    (tmp_path / "session.py").write_text("RULES = 1\n", "utf-8")
    (tmp_path / "prompt" / "templates").mkdir(parents=True)
    (tmp_path / "prompt" / "templates" / "persona_zh.txt").write_text("你是$name。", "utf-8")
    sources = ("session.py", "prompt/templates")
    before = report.reply_code_digest(tmp_path, sources)
    assert report.reply_code_digest(tmp_path, sources) == before  # stable
    (tmp_path / "session.py").write_text("RULES = 2\n", "utf-8")
    changed = report.reply_code_digest(tmp_path, sources)
    assert changed != before
    (tmp_path / "prompt" / "templates" / "persona_zh.txt").write_text("你就是$name。", "utf-8")
    assert report.reply_code_digest(tmp_path, sources) not in (before, changed)
    # every listed source exists in the package (a renamed module would drop out silently)
    root = Path(report.__file__).resolve().parent.parent
    assert all((root / name).exists() for name in report.REPLY_SOURCES)
