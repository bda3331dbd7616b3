from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from rolecast.character import store
from rolecast.character.model import Line, LoreEntry, Scene
from rolecast.character.package import (
    extract_zip,
    load_character,
    save_character,
    valid_id,
    write_zip,
)
from rolecast.errors import PackageError, ParseError, UnknownNameError


def test_save_and_load_round_trip(tmp_path: Path, character) -> None:
    character.extra["mood"] = {"tts": "kokoro"}
    dest = save_character(character, tmp_path / "xm")
    loaded = load_character(dest)
    assert loaded.id == "xm"
    assert (loaded.name, loaded.aliases, loaded.user_role) == ("小满", ["满老板"], "旅人")
    assert loaded.scenes == character.scenes
    assert loaded.persona == character.persona
    assert loaded.extra["mood"] == {"tts": "kokoro"}  # unknown keys are kept
    assert (dest / "images").is_dir()


def test_failed_write_leaves_previous_package(tmp_path: Path, character, monkeypatch) -> None:
    dest = save_character(character, tmp_path / "xm")
    before = (dest / "canon.jsonl").read_bytes()
    character.scenes = character.scenes[:1]

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("rolecast.character.package.canon_jsonl", boom)
    with pytest.raises(OSError, match="disk full"):
        save_character(character, dest)
    assert (dest / "canon.jsonl").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["xm"]  # no temporary folder left behind


def test_malformed_canon_names_file_and_line(tmp_path: Path, character) -> None:
    dest = save_character(character, tmp_path / "xm")
    lines = (dest / "canon.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:-5]
    (dest / "canon.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ParseError, match=r"canon.jsonl:3: invalid JSON"):
        load_character(dest)


@pytest.mark.parametrize(
    "toml, message",
    [
        ("name = 3\n", "'name' is required"),
        ("name = 'x'\naliases = 5\n", "'aliases' must be a list"),
        ("name = \n", "invalid TOML"),
    ],
)
def test_bad_toml_is_named(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "character.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ParseError, match=message) as err:
        load_character(tmp_path / "c")
    assert "character.toml" in str(err.value)


def test_duplicate_scene_ids_refused(tmp_path: Path, character) -> None:
    dest = save_character(character, tmp_path / "xm")
    text = (dest / "canon.jsonl").read_text(encoding="utf-8")
    (dest / "canon.jsonl").write_text(text + text.splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(ParseError, match="duplicate scene id 's000'"):
        load_character(dest)


def test_zip_round_trip(tmp_path: Path, character) -> None:
    folder = save_character(character, tmp_path / "xm")
    (folder / "images" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    z = write_zip(folder, tmp_path / "xm.zip")
    assert load_character(z).scenes == character.scenes
    out = extract_zip(z, tmp_path / "copy")
    assert (out / "images" / "a.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert load_character(out).name == "小满"


@pytest.mark.parametrize("evil", ["../evil.txt", "/abs/evil.txt", "images/../../evil.txt"])
def test_zip_slip_refused(tmp_path: Path, character, evil: str) -> None:
    folder = save_character(character, tmp_path / "xm")
    z = write_zip(folder, tmp_path / "xm.zip")
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr(evil, "x")
    with pytest.raises(PackageError, match="unsafe path"):
        extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "", "x" * 65, "a b", "c:\\x"])
def test_invalid_ids_refused(bad: str) -> None:
    with pytest.raises(PackageError, match="invalid character id"):
        valid_id(bad)
    assert valid_id("韦小宝-2.v1") == "韦小宝-2.v1"


def test_builtin_default_character_is_found_by_id_name_and_alias() -> None:
    for name in ("xiaoman", "林小满", "小满"):
        c = store.load(name)
        assert c.id == "xiaoman"
    c = store.load(store.DEFAULT_CHARACTER)
    assert c.language == "zh" and len(c.scenes) >= 40 and c.persona.strip()
    assert all(any(c.is_self(ln.speaker) for ln in s.lines) for s in c.scenes)


def test_unknown_character_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="unknown character 'nobody'.*xiaoman"):
        store.load("nobody")


def test_user_package_shadows_builtin(character) -> None:
    save_character(character, store.user_package_path("xiaoman"))
    assert store.load("xiaoman").name == "小满"
    assert len(store.load("xiaoman").scenes) == len(character.scenes)


def test_lore_card_vectors_portrait_and_images_round_trip(tmp_path: Path, character) -> None:
    character.portrait = "images/portrait.png"
    character.lore = [LoreEntry(("青雾渡", "石桥"), "渡口终年有雾。", "渡口", {"order": 3})]
    character.card = {"creator": "someone", "extensions": {"x": {"y": None}}}
    character.vectors = {"luotuo_openai": {"s1": "AAAAAA=="}}
    save_character(character, tmp_path / "c", images={"portrait.png": b"\x89PNG"})
    back = load_character(tmp_path / "c")
    assert back.portrait == "images/portrait.png"
    assert back.lore == character.lore and back.card == character.card
    assert back.vectors == character.vectors
    assert (tmp_path / "c" / "images" / "portrait.png").read_bytes() == b"\x89PNG"
    (tmp_path / "c" / "lore.jsonl").write_text('{"keys": "not a list", "content": ""}\n')
    with pytest.raises(ParseError, match=r"lore.jsonl:1: .*keys"):
        load_character(tmp_path / "c")


@pytest.mark.parametrize("bad", ["../x.png", "a/b.png", ".hidden", "", "c:x", "a\x00b"])
def test_unsafe_image_names_refused_and_nothing_written(tmp_path: Path, character, bad) -> None:
    with pytest.raises(PackageError, match="unsafe image"):
        save_character(character, tmp_path / "c", images={bad: b"x"})
    assert not (tmp_path / "c").exists() and not list(tmp_path.iterdir())


def test_line_and_paragraph_separators_survive_save_and_load(tmp_path: Path, character) -> None:
    odd = "one\u2028two\u2029three\x85four"
    character.scenes[0] = Scene("odd", odd, (Line("小满", odd),))
    character.lore = [LoreEntry((odd,), odd)]
    back = load_character(save_character(character, tmp_path / "c"))
    assert back.scenes[0].lines[0].text == odd and back.lore[0].content == odd


@pytest.mark.parametrize(
    "file, text, message",
    [
        ("canon.jsonl", '{"id": "x", "n": ' + "9" * 5000 + "}\n", r"canon.jsonl:1: unusable JSON"),
        ("lore.jsonl", "[" * 100_000 + "\n", r"lore.jsonl:1: unusable JSON"),
        ("card.json", '{"n": ' + "9" * 5000 + "}", r"card.json: unusable JSON"),
        ("character.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n", "invalid TOML"),
    ],
)
def test_unusable_json_or_toml_is_a_parse_error_in_a_folder_and_a_zip(
    tmp_path: Path, character, file: str, text: str, message: str
) -> None:
    folder = save_character(character, tmp_path / "xm")
    (folder / file).write_text(text, encoding="utf-8")
    with pytest.raises(ParseError, match=message):
        load_character(folder)
    with pytest.raises(ParseError, match=message):
        load_character(write_zip(folder, tmp_path / "xm.zip"))
