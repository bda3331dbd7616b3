"""A user study's definition, preparation (frozen replies, pairs) and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character import store
from rolecast.errors import InputError
from rolecast.retrieval.index import load_index
from rolecast.study.definition import read_study
from rolecast.study.prepare import pair_id, prepare_study, read_prepared, study_folder

STUDY = """
title = "小满: which sounds more like her?"
characters = ["xiaoman"]
seed = 3

[prompts]
lines = ["你好，你是谁？", "今天的面多少钱？"]
canon = 2

[[systems]]
id = "canon"
condition = "canon"

[[systems]]
id = "persona"
condition = "persona"
traits = ["O=high"]

[[systems]]
id = "original"
condition = "original"
"""


class Numbered(ScriptedLLM):
    """Each reply different (the session refuses a reply it said before)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        self.requests.append(([dict(m) for m in messages], params))
        self.n += 1
        yield f"第{self.n}句：" + "".join(chr(0x4E00 + 31 * self.n + k) for k in range(8))


def write(tmp_path: Path, text: str = STUDY) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_prepare_makes_every_reply_once_and_freezes_them(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    study = read_study(write(tmp_path))
    assert study.ids == ["canon", "persona", "original"] and study.canon == 2
    c = store.load("xiaoman")
    llms: list[Numbered] = []

    def open_llm(system):  # type: ignore[no-untyped-def]
        llms.append(Numbered())
        return llms[-1]

    out = study_folder(study)
    assert out == tmp_path / "s.study"
    data = prepare_study(study, out, {"xiaoman": c}, {"xiaoman": load_index(c, embedder)}, open_llm)
    items = {it["id"]: it for it in data["items"]}
    assert len(items) == 4 and sum(it["kind"] == "canon" for it in items.values()) == 2
    canon_item = next(it for it in items.values() if it["kind"] == "canon")
    assert data["replies"][canon_item["id"]]["original"] == canon_item["original"]
    scene = next(sc for sc in c.scenes if canon_item["id"].startswith(f"xiaoman/{sc.id}."))
    index = int(canon_item["id"].rsplit(".", 1)[1])
    assert canon_item["original"] == scene.lines[index].text.strip()
    before = scene.lines[index - 1]  # the line the character answers: the one before
    assert tuple(canon_item["line"]) == (before.speaker, before.text)
    # line items: canon vs persona only; canon items: all three pairs
    assert len(data["pairs"]) == 2 * 1 + 2 * 3
    ids = {p["id"] for p in data["pairs"]}
    assert len(ids) == len(data["pairs"])
    first = data["pairs"][0]
    assert first["id"] == pair_id(study, first["item"], first["a"], first["b"])
    # the persona system was made with its dial; one backend per system, four replies each
    assert [len(x.requests) for x in llms] == [4, 4]
    assert "开放" in str(llms[1].requests[0][0][0]) or "想象" in str(llms[1].requests[0][0][0])
    # frozen: preparing again is refused; with force it reads every reply from the cache
    with pytest.raises(InputError, match="frozen"):
        prepare_study(study, out, {"xiaoman": c}, {}, open_llm)
    llms.clear()
    again = prepare_study(study, out, {"xiaoman": c}, {}, open_llm, force=True)
    assert llms == [] and again["replies"] == data["replies"]
    assert read_prepared(out, study)["pairs"] == data["pairs"]
    # the study file changed after preparing: its replies are not these
    changed = read_study(write(tmp_path, STUDY.replace("seed = 3", "seed = 4")))
    with pytest.raises(InputError, match="another version"):
        read_prepared(out, changed)


@pytest.mark.parametrize(
    "change, says",
    [
        (('condition = "persona"', 'condition = "vibes"'), "unknown condition 'vibes'"),
        (("canon = 2", "canon = 0"), "the original line exists only for canon turns"),
        (('id = "persona"', 'id = "canon"'), "the id 'canon' is used twice"),
        (('id = "persona"', 'id = "Persona!"'), "is not an id"),
        (("seed = 3", "seed = 3\ncolour = 1"), "unknown key 'colour'"),
        (("lines = [", "lines = [1, "), "non-empty lines"),
        (('traits = ["O=high"]', "tempreature = 1"), "unknown key 'tempreature'"),
    ],
)
def test_bad_study_files_are_named(tmp_path, change, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=says):
        read_study(write(tmp_path, STUDY.replace(*change)))


def test_an_unknown_character_is_refused_before_anything_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    study = read_study(write(tmp_path, STUDY.replace('["xiaoman"]', '["xiaoman", "nobody"]')))
    with pytest.raises(InputError, match="'nobody', which is not installed"):
        prepare_study(study, tmp_path / "o", {"xiaoman": store.load("xiaoman")}, {}, lambda s: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(InputError, match="no study file"):
        read_study(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("title = ", encoding="utf-8")
    with pytest.raises(InputError, match="not valid TOML"):
        read_study(tmp_path / "bad.toml")


def test_prepare_and_report_from_the_command_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.chats import default_store
    from rolecast.cli.main import main

    path = write(tmp_path, STUDY.replace("canon = 2", "canon = 1"))
    assert main(["study", "prepare", str(path), "--backend", "echo"]) == 0
    out = capsys.readouterr().out
    assert "frozen in" in out and (tmp_path / "s.study" / "replies.json").is_file()
    assert main(["study", "prepare", str(path), "--backend", "echo"]) == 1
    assert "frozen" in capsys.readouterr().err
    data = json.loads((tmp_path / "s.study" / "replies.json").read_text("utf-8"))
    db = default_store()
    for k, pair in enumerate(data["pairs"]):
        assert db.add_vote(data["digest"], pair["id"], "ann", "a" if k % 2 else "tie")
    db.close()
    assert main(["study", "report", str(path), "--rounds", "50"]) == 0
    report = tmp_path / "s.study" / "report"
    results = json.loads((report / "results.json").read_text("utf-8"))
    assert results["votes"] == len(data["pairs"]) and results["raters"] == 1
    assert (report / "scores.png").stat().st_size > 1000
    assert "## Can fans tell the original line?" in (report / "report.md").read_text("utf-8")
    bad = write(
        tmp_path, STUDY.replace('condition = "persona"', 'condition = "persona"\nbackend = "gpt9"')
    )
    assert main(["study", "prepare", str(bad)]) == 1
    assert "unknown llm 'gpt9'" in capsys.readouterr().err
