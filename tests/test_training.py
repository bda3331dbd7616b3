"""Training data from the canon (issue 18, first part): the held-out split, canon samples put
through the character's Session, the dataset folder and its exports."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from rolecast.backends.base import LLM
from rolecast.backends.scripted import ScriptedLLM
from rolecast.errors import BackendError, InputError, ParseError
from rolecast.retrieval.index import load_index
from rolecast.session import Session
from rolecast.training import dataset as ds
from rolecast.training.samples import canon_samples
from rolecast.training.split import answering_scenes, held_out_scenes

from conftest import make_character


def manifest_for(character, held_out) -> ds.Manifest:  # type: ignore[no-untyped-def]
    return ds.Manifest(
        character={"id": character.id, "name": character.name},
        held_out=list(held_out),
        split={"share": 0.25, "seed": 3},
    )


@pytest.fixture
def built(embedder):  # type: ignore[no-untyped-def]
    """Eight scenes, two held out, and the canon samples of the other six."""
    c = make_character(8)
    held = held_out_scenes(c, 0.25, seed=3)
    prototype = Session(c, load_index(c, embedder), ScriptedLLM(), order="split")
    return c, held, canon_samples(prototype, held, seed=3)


# ------------------------------------------------------------------------------- split


def test_the_split_is_seeded_and_leaves_training_scenes() -> None:
    c = make_character(8)
    assert answering_scenes(c) == [f"s{i:03d}" for i in range(8)]
    held = held_out_scenes(c, 0.25, seed=3)
    assert len(held) == 2 and held == held_out_scenes(c, 0.25, seed=3)
    assert list(held) == sorted(held)  # canon order
    assert any(held_out_scenes(c, 0.25, seed=s) != held for s in range(4, 10))
    assert len(held_out_scenes(c, 0.01)) == 1  # at least one when the share is above 0
    assert len(held_out_scenes(c, 0.99)) == 7  # at least one stays for training
    assert held_out_scenes(c, 0) == ()


@pytest.mark.parametrize("share", [-0.1, 1, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(InputError, match="held-out share must be at least 0 and below 1"):
        held_out_scenes(make_character(4), share)


def test_one_scene_cannot_be_split() -> None:
    with pytest.raises(InputError, match="answers someone in 1 scene"):
        held_out_scenes(make_character(1))
    assert held_out_scenes(make_character(1), 0) == ()


# ------------------------------------------------------------------------------ samples


def test_canon_samples_are_real_turns_without_the_held_out_scenes(built) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    assert len(samples) == 6 and {s.kind for s in samples} == {"canon"}
    by_scene = {s.source["scenes"][0]: s for s in samples}
    assert set(by_scene) == set(answering_scenes(c)) - set(held)
    for scene_id, sample in by_scene.items():
        scene = next(s for s in c.scenes if s.id == scene_id)
        asked, answer = scene.lines[1].text, scene.lines[2].text
        assert sample.reply == answer
        assert sample.messages[0]["role"] == "system" and c.persona in sample.messages[0]["content"]
        assert sample.messages[-1]["role"] == "user" and asked in sample.messages[-1]["content"]
        # neither the scene it teaches nor a held-out scene is in the prompt
        assert sample.source["retrieved"], "the prompt holds retrieved canon"
        assert scene_id not in sample.source["retrieved"]
        assert not set(held) & set(sample.source["retrieved"])
        prompt = "\n".join(m["content"] for m in sample.messages)
        assert answer not in prompt
        for h in held:
            held_scene = next(s for s in c.scenes if s.id == h)
            assert held_scene.lines[2].text not in prompt or held_scene.lines[2].text == answer


def test_sample_ids_are_stable(built, embedder) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    again = canon_samples(
        Session(c, load_index(c, embedder), ScriptedLLM(), order="split"), held, 3
    )
    assert [s.id for s in again] == [s.id for s in samples]
    assert len({s.id for s in samples}) == len(samples)


# ------------------------------------------------------------------------------ dataset


def test_a_dataset_round_trips(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    ds.write_dataset(tmp_path / "d", manifest_for(c, held), samples)
    manifest, back = ds.read_dataset(tmp_path / "d")
    assert back == samples
    assert manifest.counts == {"canon": 6, "generated": 0} and manifest.held_out == list(held)
    assert manifest.character["id"] == "testchar" and manifest.created


def test_a_failed_write_leaves_the_dataset_that_was_there(built, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    folder = tmp_path / "d"
    ds.write_dataset(folder, manifest_for(c, held), samples[:3])
    real = ds.write_atomic

    def full_disk(path, data, *a, **k):  # type: ignore[no-untyped-def]
        if Path(path).name == ds.MANIFEST:
            raise OSError(28, "No space left on device")
        return real(path, data, *a, **k)

    monkeypatch.setattr(ds, "write_atomic", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ds.write_dataset(folder, manifest_for(c, held), samples)
    monkeypatch.undo()
    manifest, back = ds.read_dataset(folder)
    assert back == samples[:3] and manifest.counts["canon"] == 3
    # the next write that succeeds leaves one samples file
    ds.write_dataset(folder, manifest_for(c, held), samples)
    assert len(list(folder.glob("samples-*.jsonl"))) == 1
    assert ds.read_dataset(folder)[1] == samples


def test_a_disk_that_fills_while_the_samples_are_written_loses_nothing(
    built, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    folder = tmp_path / "d"
    ds.write_dataset(folder, manifest_for(c, held), samples[:3])

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ds.os, "fsync", full)
    with pytest.raises(InputError, match=r"cannot write .*samples.*No space left"):
        ds.write_dataset(folder, manifest_for(c, held), samples)
    monkeypatch.undo()
    assert ds.read_dataset(folder)[1] == samples[:3]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_a_sample_from_a_held_out_scene_is_refused(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    with pytest.raises(InputError, match="held-out scene must stay out of training"):
        ds.write_dataset(tmp_path / "d", manifest_for(c, [samples[0].source["scenes"][0]]), samples)
    retrieved = samples[0].source["retrieved"][0]
    with pytest.raises(InputError, match="come from or retrieve held-out scenes"):
        ds.write_dataset(tmp_path / "d", manifest_for(c, [retrieved]), samples[:1])
    with pytest.raises(InputError, match="sample ids must be unique"):
        ds.write_dataset(tmp_path / "d", manifest_for(c, held), [samples[0], samples[0]])
    assert not (tmp_path / "d").exists()


def test_bad_datasets_name_what_is_wrong(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, held, samples = built
    with pytest.raises(InputError, match="not a dataset folder"):
        ds.read_dataset(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match="no manifest.json"):
        ds.read_dataset(tmp_path / "half")
    folder = tmp_path / "d"
    ds.write_dataset(folder, manifest_for(c, held), samples)
    name = ds.read_manifest(folder).samples
    lines = (folder / name).read_text("utf-8").splitlines()
    broken = json.loads(lines[2])
    broken["messages"][-1]["role"] = "assistant"
    (folder / name).write_text("\n".join([*lines[:2], json.dumps(broken), *lines[3:]]), "utf-8")
    with pytest.raises(ParseError, match=rf"{name}:3: not a sample: the prompt must end with"):
        ds.read_dataset(folder)
    (folder / name).write_text(lines[0] + "\n{not json\n", "utf-8")
    with pytest.raises(ParseError, match=rf"{name}:2: not a sample"):
        ds.read_dataset(folder)
    (folder / name).write_text("", "utf-8")
    with pytest.raises(InputError, match="has no samples"):
        ds.read_dataset(folder)
    (folder / name).unlink()
    with pytest.raises(InputError, match="which is missing"):
        ds.read_dataset(folder)
    manifest = json.loads((folder / ds.MANIFEST).read_text("utf-8"))
    manifest["samples"] = "../../etc/passwd"
    (folder / ds.MANIFEST).write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(ParseError, match="does not name a samples file"):
        ds.read_dataset(folder)
    (folder / ds.MANIFEST).write_text("{", "utf-8")
    with pytest.raises(ParseError, match="manifest"):
        ds.read_dataset(folder)


# ------------------------------------------------------------------------------- export


def sample(*messages: tuple[str, str], reply: str = "来碗面。") -> ds.Sample:
    return ds.Sample("x", "canon", tuple({"role": r, "content": t} for r, t in messages), reply)


def test_chatml_is_the_prompt_and_the_reply() -> None:
    s = sample(("system", "你是小满。"), ("user", "饿了。"))
    [row] = ds.export_rows([s], "chatml")
    assert row == {
        "messages": [
            {"role": "system", "content": "你是小满。"},
            {"role": "user", "content": "饿了。"},
            {"role": "assistant", "content": "来碗面。"},
        ]
    }


def test_sharegpt_alternates_and_keeps_a_later_system_message_with_its_line() -> None:
    s = sample(
        ("system", "你是小满。"),
        ("assistant", "来啦？"),  # the character spoke first in the scene
        ("user", "雾好大。"),
        ("user", "有面吗？"),
        ("assistant", "有。"),
        ("system", "经典片段：……"),  # the split order's canon block
        ("user", "多少钱？"),
    )
    [row] = ds.export_rows([s], "sharegpt")
    assert row["system"] == "你是小满。\n\n来啦？"
    assert row["conversations"] == [
        {"from": "human", "value": "雾好大。\n有面吗？"},
        {"from": "gpt", "value": "有。"},
        {"from": "human", "value": "经典片段：……\n\n多少钱？"},
        {"from": "gpt", "value": "来碗面。"},
    ]
    sides = [t["from"] for t in row["conversations"]]
    assert sides == ["human", "gpt"] * (len(sides) // 2)


def test_chatharuhi_is_context_and_target_in_its_line_form() -> None:
    s = sample(("system", "你是小满。"), ("assistant", "来啦？"), ("user", "阿婆:「雾好大。」"))
    [row] = ds.export_rows([s], "chatharuhi", name="小满", user_role="旅人")
    assert row == {
        "context": "你是小满。\n小满:「来啦？」\n阿婆:「雾好大。」",
        "target": "小满:「来碗面。」",
    }
    [plain] = ds.export_rows([sample(("user", "饿了。"))], "chatharuhi", "小满", "旅人")
    assert plain["context"] == "旅人:「饿了。」"


def test_exports_are_jsonl_a_trainer_reads(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, _, samples = built
    for fmt in ds.EXPORT_FORMATS:
        path = tmp_path / f"{fmt}.jsonl"
        n = ds.write_export(path, ds.export_rows(samples, fmt, c.name, c.user_role))
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        assert n == len(rows) == len(samples)
    with pytest.raises(InputError, match="unknown format 'alpaca'"):
        list(ds.export_rows(samples, "alpaca"))


# ---------------------------------------------------------------------------- questions


def test_the_request_shows_canon_pairs_and_the_rules() -> None:
    import random

    from rolecast.training.questions import example_pairs, question_messages

    c = make_character(8)
    held = frozenset({"s000", "s001", "s002", "s003", "s004", "s005"})
    pairs = example_pairs(c, 4, random.Random(1), held)
    assert len(pairs) == 2  # only the two scenes not held out
    assert {p[1] for p in pairs} == {c.scenes[6].lines[1].text, c.scenes[7].lines[1].text}
    [msg] = question_messages(c, pairs, n=7)
    text = msg["content"]
    assert msg["role"] == "user" and "7" in text and "小满" in text
    for speaker, said, answer in pairs:
        assert f"{speaker}:「{said}」" in text and f"小满:「{answer}」" in text
    assert "说话的人不能是小满" in text and "不要需要看见或听见" in text


def test_the_backends_lines_are_read_and_the_characters_own_left_out() -> None:
    from rolecast.training.questions import Asked, parse_lines

    c = make_character(2)
    answer = "\n".join(
        [
            "1. 旅人:「今天有什么面？」",
            "2、阿婆：「雾这么大，船还开吗？」",
            "(3) 小满:「来碗面！」",  # the character itself: left out
            "- 满老板：「我自己说的」",  # an alias: left out
            "* 豆子: 你昨晚去哪儿了？",
            "你会修钟吗？",  # no speaker: the user's role
            "",
            "5. 旅人:「" + "很长" * 80 + "」",  # a speech, not a line
            "6. 旅人:「」",
            # what Qwen2.5-Coder-0.5B wrote on 2026-11-30, copying the request's format
            "说话人:小满：「还有那一天吗？」",  # the character: dropped
            "说话人:「豆子，今天是周伯的生辰。」",  # a placeholder, no name: the user's role
            "说话人:胖掌柜：‘熟客嘛，让一让。’",
            "周伯（小满）:「今天是周伯的生辰。」",  # a muddled name with the character's in it
            "餐后，小满回答:「我叫胖掌柜。」",
        ]
    )
    assert parse_lines(answer, c) == [
        Asked("旅人", "今天有什么面？"),
        Asked("阿婆", "雾这么大，船还开吗？"),
        Asked("豆子", "你昨晚去哪儿了？"),
        Asked("旅人", "你会修钟吗？"),
        Asked("旅人", "豆子，今天是周伯的生辰。"),
        Asked("胖掌柜", "熟客嘛，让一让。"),
    ]


def test_the_keeper_drops_copies_and_near_duplicates(embedder) -> None:  # type: ignore[no-untyped-def]
    from rolecast.training.questions import Asked, Keeper

    c = make_character(8)
    keeper = Keeper(embedder, c)
    first = keeper.keep(
        [
            Asked("旅人", "今天的面多少钱？"),
            Asked("旅人", "今天的面 多少钱？"),  # the same after normalising
            Asked("旅人", c.scenes[2].lines[1].text),  # a line of the canon
            Asked("阿婆", "你为什么每晚都点灯？"),
        ]
    )
    assert [a.text for a in first] == ["今天的面多少钱？", "你为什么每晚都点灯？"]
    later = keeper.keep([Asked("旅人", "今天的面多少钱呀？"), Asked("旅人", "能帮我补把伞吗？")])
    assert [a.text for a in later] == ["能帮我补把伞吗？"]  # cosine 0.99 to a kept line
    assert keeper.dropped == {"duplicate": 1, "copies canon": 1, "near duplicate": 1}
    assert len(keeper.kept) == 3
    # 200 requests of one pattern: the kept vectors grow past their first block of 64, and
    # every line is still compared with all kept before it
    many = [
        Asked("旅人", f"你能帮我{v}{w}吗？")
        for v in "修买卖借找送洗看煮拿"
        for w in "伞钟锅船灯猫鱼面汤雾桥河雨风书茶酒米盐葱"
    ]
    kept = keeper.keep(many)
    assert len(kept) > 64 and keeper.dropped["near duplicate"] > 1
    again = keeper.keep([Asked("豆子", f"{kept[-1].text[:-1]}呀？")])
    assert again == []  # near the last kept line, found past the first block


def test_the_duplicate_threshold_is_the_cosine_at_which_a_line_is_dropped(embedder) -> None:  # type: ignore[no-untyped-def]
    from rolecast.training.augment import Settings
    from rolecast.training.questions import DUPLICATE_COSINE, Asked, Keeper

    c = make_character(8)
    a, b = "你觉得我们能成功吗？", "你觉得我们能够成功吗？"
    va, vb = embedder.embed_documents([a, b], workers=1)
    cosine = float(va @ vb)
    assert DUPLICATE_COSINE < cosine < 1.0  # the same question, reworded
    for threshold, kept in ((cosine - 0.001, [a]), (cosine + 0.001, [a, b])):
        keeper = Keeper(embedder, c, threshold)
        assert [x.text for x in keeper.keep([Asked("旅人", a), Asked("旅人", b)])] == kept
    assert Settings().duplicate_cosine == DUPLICATE_COSINE
    for bad in (0.0, -0.5, 1.2):
        with pytest.raises(InputError, match="--duplicate-cosine must be above 0"):
            Settings(duplicate_cosine=bad).check()


# ------------------------------------------------------------------------------ augment


class Responder(LLM):
    """A thread-safe stand-in backend: numbered lines for a request for lines, a reply in the
    character's voice (or a bad one, for the filters) for a turn; counts its calls."""

    name = "responder"
    thread_safe = True

    def __init__(self, fail_after: int | None = None) -> None:
        self.model = "responder-1"
        self.calls = 0
        self.fail_after = fail_after
        self.lock = threading.Lock()

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        with self.lock:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise BackendError("the endpoint went away")
            self.calls += 1
        last = messages[-1]["content"]
        if "再写" in last:  # a request for lines: three new ones, the character's, the canon's
            block = params.seed % 4  # the request's seed picks one of four blocks of three
            new = POOL[3 * block : 3 * block + 3]
            yield "\n".join(
                [
                    *(f"{i}. {who}:「{text}」" for i, (who, text) in enumerate(new, 1)),
                    "4. 小满:「来碗面！」",  # the character's own: dropped by the reader
                    "5. 旅人:「今天赚了多少？」",  # a canon line: dropped by the keeper
                ]
            )
        elif "接着会对" in last:  # the asker's next line: numbered by the turns so far
            turn = (last.count("「") - 1) // 2 + 1  # the dialogue's lines, and the form's
            yield f"豆子:「第{turn}句，那你明天还来吗？」"
        elif "老实说" in last:
            yield "作为一个AI语言模型，我无法回答这个问题。"
        elif "第2句，那你明天" in last:  # later turns: replies of their own
            yield "明天？看天吧，雨大就不摆了。"
        elif "第3句，那你明天" in last:
            yield "你都问三回啦，照样出摊，来不来随你。"
        else:
            yield "雾大，先坐下喝口热汤。"


POOL = [
    ("旅人", "你的面摊几点收？"),
    ("阿婆", "豆子说你小时候就会修钟了？"),
    ("豆子", "今晚的渡船还开吗？"),
    ("旅人", "这把伞补一下要几天？"),
    ("阿婆", "下游县城的布贵不贵？"),
    ("豆子", "煤球昨晚又偷了谁家的鱼？"),
    ("旅人", "老实说，你到底是谁？"),
    ("阿婆", "你奶奶当年的汤是怎么熬的？"),
    ("豆子", "要不要一起去河边放灯？"),
    ("旅人", "镇上谁最会讲故事？"),
    ("阿婆", "明天要下大雨，摊子还摆吗？"),
    ("豆子", "我能帮你擦桌子换碗面吗？"),
]


def run_augment(tmp_path, embedder, llm, n=6, workers=1, cache=True, **more):  # type: ignore[no-untyped-def]
    from rolecast.eval.report import Cache
    from rolecast.training.augment import Settings, augment, augment_scope

    c = make_character(8)
    prototype = Session(c, load_index(c, embedder), llm, order="split")
    more.setdefault("continued", 0.0)
    settings = Settings(n=n, seed=2, held_out=0.25, per_request=5, **more)
    store = Cache(tmp_path / "cache", augment_scope(prototype, settings)) if cache else None
    return augment(prototype, settings, cache=store, workers=workers)


def test_augment_end_to_end(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    llm = Responder()
    manifest, samples = run_augment(tmp_path, embedder, llm)
    generated = [s for s in samples if s.kind == "generated"]
    canon = [s for s in samples if s.kind == "canon"]
    assert len(canon) == 6 and manifest.held_out == list(
        held_out_scenes(make_character(8), 0.25, 2)
    )
    # seed 2's first two requests pick blocks 3 and 2: six new lines, six wanted, then six replies
    assert manifest.settings["requests"] == 2 and manifest.settings["lines_kept"] == 6
    assert llm.calls == 2 + 5 + 3  # the session tries a refusal twice more before it shows it
    assert manifest.dropped["copies canon"] == 2  # once a request
    # "老实说，你到底是谁？" got the AI boilerplate: dropped, under its first reason
    bad = {k: v for k, v in manifest.dropped.items() if k != "copies canon"}
    assert sum(bad.values()) == 1 and set(bad) <= {"refusal", "assistant_talk", "ai_self"}
    assert len(generated) == 5
    for s in generated:
        assert s.reply == "雾大，先坐下喝口热汤。"
        assert s.messages[-1]["role"] == "user" and s.source["asked_by"] in ("旅人", "阿婆", "豆子")
        assert s.source["model"] == "responder-1" and isinstance(s.source["seed"], int)
        assert not set(manifest.held_out) & set(s.source["retrieved"])
    ds.write_dataset(tmp_path / "d", manifest, samples)  # nothing from a held-out scene
    assert ds.read_dataset(tmp_path / "d")[1] == samples


def test_a_rerun_makes_no_call_and_an_interrupted_run_goes_on(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    first = run_augment(tmp_path / "a", embedder, Responder())
    again = Responder()
    assert run_augment(tmp_path / "a", embedder, again) == first and again.calls == 0
    broken = Responder(fail_after=5)
    with pytest.raises(BackendError, match="went away"):
        run_augment(tmp_path / "b", embedder, broken)
    resumed = Responder()
    assert run_augment(tmp_path / "b", embedder, resumed) == first
    assert resumed.calls == 10 - 5  # only what the interrupted run had not done
    assert broken.calls == 5


def test_a_share_of_conversations_goes_on_with_the_askers_next_lines(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    llm = Responder()
    manifest, samples = run_augment(tmp_path, embedder, llm, continued=1.0, turns=3)
    generated = [s for s in samples if s.kind == "generated"]
    firsts = [s for s in generated if s.source["turn"] == 1]
    assert len(firsts) == 5  # the sixth line's reply was unfit: no sample, and no next turn
    assert len(generated) == 15 and len({s.id for s in samples}) == len(samples)
    for first in firsts:
        later = [s for s in generated if s.source.get("conversation") == first.id]
        assert [s.source["turn"] for s in later] == [2, 3]
        third = later[1]
        assert "第3句，那你明天还来吗？" in third.messages[-1]["content"]
        said = "\n".join(m["content"] for m in third.messages)
        # the history: the first line, the reply, the second line and its reply
        assert first.messages[-1]["content"] in said and "第2句" in said
        assert said.count("雾大，先坐下喝口热汤。") == 1 and "雨大就不摆了" in said
    # 2 requests, 5 + 3 turn-1 replies (a refusal tried thrice), 2 x 5 next lines, 2 x 5 replies
    assert llm.calls == 2 + 8 + 10 + 10
    again = Responder()
    assert run_augment(tmp_path, embedder, again, continued=1.0, turns=3)[1] == samples
    assert again.calls == 0  # conversations are cached whole


def test_a_conversation_ends_at_a_reply_that_repeats_an_earlier_one(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    class SameReply(Responder):
        def stream(self, messages, params):  # type: ignore[no-untyped-def]
            if "句，那你明天" in messages[-1]["content"]:
                yield "雾大，先坐下喝口热汤。"  # the first turn's reply again
            else:
                yield from super().stream(messages, params)

    manifest, samples = run_augment(tmp_path, embedder, SameReply(), continued=1.0, turns=3)
    assert {s.source["turn"] for s in samples if s.kind == "generated"} == {1}
    assert manifest.dropped["repeats itself"] == 5


def test_which_conversations_go_on_is_seeded(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    half = run_augment(tmp_path / "a", embedder, Responder(), n=12, continued=0.5, cache=False)
    turns = [s.source["turn"] for s in half[1] if s.kind == "generated"]
    assert turns.count(1) > turns.count(3) > 0  # some went on, not all
    again = run_augment(tmp_path / "b", embedder, Responder(), n=12, continued=0.5, cache=False)
    assert again == half


def test_four_in_flight_give_the_same_dataset(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    one = run_augment(tmp_path / "a", embedder, Responder(), cache=False)
    four = run_augment(tmp_path / "b", embedder, Responder(), workers=4, cache=False)
    assert four == one


def test_too_few_new_lines_are_counted(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    manifest, samples = run_augment(tmp_path, embedder, Responder(), n=40)
    assert manifest.settings["requests"] == 12  # the request budget: 0.3 a line
    assert manifest.settings["lines_kept"] == 12  # the four blocks, each once
    assert manifest.dropped["not enough new lines"] == 40 - 12
    assert manifest.dropped["duplicate"] == 8 * 3  # the blocks asked again


# ---------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_backend(monkeypatch: pytest.MonkeyPatch, rolecast_home: Path) -> list[Responder]:
    """``--backend scripted`` gives a Responder; the test character is installed as ``xm``."""
    import rolecast.backends.scripted
    from rolecast.character.package import save_character

    made: list[Responder] = []

    def make(**_: object) -> Responder:
        made.append(Responder())
        return made[-1]

    monkeypatch.setattr(rolecast.backends.scripted, "ScriptedLLM", make)
    save_character(make_character(8), rolecast_home / "characters" / "xm")
    return made


def test_augment_show_and_export_from_the_command_line(cli_backend, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.cli.main import main

    out = tmp_path / "data"
    argv = ["augment", "xm", "-o", str(out), "-n", "6", "--seed", "2", "--held-out", "0.25"]
    assert main([*argv, "--backend", "scripted"]) == 0
    said = capsys.readouterr().out
    assert "6 canon and" in said and "(2 scenes held out)" in said and "copies canon 2" in said
    assert cli_backend[0].calls > 0
    assert main([*argv, "--backend", "scripted"]) == 0  # again: all from the cache
    assert cli_backend[1].calls == 0 and "read from the cache" in capsys.readouterr().err
    assert main(["dataset", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "samples" in shown and "canon" in shown and "held out: 2 scenes" in shown
    assert "tokens (qwen3 tokenizer): prompts" in shown and "reply language: zh 100%" in shown
    png = (out / "lengths.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000  # two histograms drawn
    for fmt in ("chatml", "sharegpt", "chatharuhi"):
        path = tmp_path / f"{fmt}.jsonl"
        assert main(["dataset", "export", str(out), "--format", fmt, "-o", str(path)]) == 0
        rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        assert len(rows) == len(ds.read_dataset(out)[1])
    assert rows[0]["target"].startswith("小满:「")
    assert rows[0]["context"].splitlines()[-1].startswith("旅人:「")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "-1"], "-n must not be negative"),
        (["--held-out", "1.5"], "held-out share must be at least 0 and below 1"),
    ],
)
def test_augment_bad_input_fails_before_a_model_loads(
    cli_backend, tmp_path, capsys, args, message
) -> None:  # type: ignore[no-untyped-def]
    from rolecast.cli.main import main

    assert main(["augment", "xm", "-o", str(tmp_path / "d"), *args, "--backend", "scripted"]) == 1
    assert message in capsys.readouterr().err and not cli_backend


def test_dataset_commands_name_a_bad_folder(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.cli.main import main

    assert main(["dataset", "show", str(tmp_path)]) == 1
    assert "no manifest.json" in capsys.readouterr().err
    out = tmp_path / "x.jsonl"
    assert main(["dataset", "export", str(tmp_path / "none"), "-o", str(out)]) == 1
    assert "not a dataset folder" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("王小川:", "name only"),  # what the default model answered, 2026-11-30
        ("旅行人：", "name only"),
        ("", "empty"),
        ("作为一个AI语言模型，我无法回答。", "refusal"),
    ],
)
def test_replies_unfit_to_train_on_are_named(reply: str, reason: str) -> None:
    from rolecast.eval.smoke import SmokeChecker
    from rolecast.training.augment import filter_reply

    c = make_character(4)
    assert filter_reply(SmokeChecker(c), c, "你好", reply)[0] == reason
    assert filter_reply(SmokeChecker(c), c, "你好", "雾大，先坐下喝口热汤。") == []
