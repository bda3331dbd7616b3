"""ChatHaruhi roles: JSONL rows, the 2.0 role zip, story folders with images, hf://, export."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecast.character.dialogue import format_dialogue
from rolecast.character.model import Character, Line, Scene
from rolecast.errors import InputError, ParseError
from rolecast.formats.chatharuhi import (
    FRAMES_SCENE,
    SpeakerHints,
    choose_speaker,
    decode_vector,
    export_role_jsonl,
    import_chatharuhi,
    import_hf,
    import_role_jsonl,
    import_role_zip,
    import_story_folder,
)

from conftest import corpus_root, make_character

STORY_A = (
    "旁白:雾里有灯\n阿青:「你又来了？」\n小满:「来碗面，八文。」\n阿青:「好。」\n小满:「坐稳了。」"
)
PERSONA = "你是小满，桥头面摊的老板，说话爽快。"
STORY_B = "阿青:「猫呢？」\n小满:「在偷鱼咯。」\n小满:「煤球，放下！」"


def vec(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f">{len(values)}f", *values)).decode()


def jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def role_rows(dim: int = 4) -> list[dict]:
    return [
        {"text": PERSONA, "luotuo_openai": "system_prompt", "bge_zh_s15": "system_prompt"},
        {"text": STORY_A, "luotuo_openai": vec([0.5] * dim), "bge_zh_s15": vec([1.0, 2.0])},
        {
            "enc_text": base64.b64encode(STORY_B.encode()).decode(),
            "luotuo_openai": vec([0.25] * dim),
            "bge_zh_s15": vec([3.0, 4.0]),
        },
    ]


def test_role_jsonl_reads_text_enc_text_prompt_and_keeps_vectors() -> None:
    r = import_role_jsonl(jsonl(*role_rows()), where="xiaoman.jsonl")
    c = r.character
    assert (c.id, c.name, c.user_role, c.persona, c.language) == (
        "xiaoman",
        "小满",
        "阿青",
        PERSONA,
        "zh",
    )
    assert [[ln.text for ln in s.lines] for s in c.scenes][1] == [
        "猫呢？",
        "在偷鱼咯。",
        "煤球，放下！",
    ]
    assert set(c.vectors) == {"luotuo_openai", "bge_zh_s15"}
    sid = c.scenes[1].id
    assert decode_vector(c.vectors["bge_zh_s15"][sid]) == (3.0, 4.0)  # big-endian float32


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda rows: rows[2].update(luotuo_openai=vec([0.1] * 3)), "3 floats where earlier"),
        (lambda rows: rows[1].update(luotuo_openai="@@not base64@@"), "invalid base64"),
        (lambda rows: rows[1].update(luotuo_openai=vec([1.0])[:-3]), "invalid base64|not a vector"),
        (lambda rows: rows[2].update(enc_text="%%%"), "enc_text"),
        (lambda rows: rows[1].update(text=7), "'text' must be a string"),
        (lambda rows: rows[1].pop("text"), "neither 'text' nor 'enc_text'"),
        (lambda rows: [r.pop("luotuo_openai") and r.pop("bge_zh_s15") for r in rows], "no embed"),
    ],
)
def test_role_jsonl_bad_rows_are_named(mutate, message: str) -> None:
    rows = role_rows()
    mutate(rows)
    with pytest.raises(ParseError, match=message) as err:
        import_role_jsonl(jsonl(*rows), where="r.jsonl")
    assert "r.jsonl" in str(err.value)


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"text": "x", "c": \n', "invalid JSON"),
        (b"[1, 2]\n", "JSON object"),
        ('{"text": "阿青:「你好」", "c": "AAAAAA=="}\n'.encode("gbk"), "GB18030"),
        (b"", "no story rows"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
    ],
)
def test_role_jsonl_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        import_role_jsonl(data)


def test_utf16_with_bom_is_read() -> None:
    text = jsonl(*role_rows()).decode()
    r = import_role_jsonl(text.encode("utf-16"), cid="x")
    assert r.character.name == "小满"


def chroma_db(docs: list[str]) -> bytes:
    con = sqlite3.connect(":memory:")
    con.executescript(
        "CREATE TABLE embeddings (id INTEGER PRIMARY KEY, segment_id TEXT, embedding_id TEXT,"
        " seq_id BLOB);"
        "CREATE TABLE embedding_metadata (id INTEGER, key TEXT, string_value TEXT,"
        " int_value INTEGER, float_value REAL, bool_value INTEGER, PRIMARY KEY (id, key));"
    )
    for i, d in enumerate(docs, start=1):
        con.execute("INSERT INTO embeddings VALUES (?, 's', ?, x'00')", (i, f"{i - 1}_{d}"))
        con.execute(
            "INSERT INTO embedding_metadata (id, key, string_value) VALUES (?, ?, ?)",
            (i, "chroma:document", d),
        )
    con.commit()
    return con.serialize()


def role_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_role_zip_reads_chroma_sqlite_without_chromadb() -> None:
    data = role_zip(
        {
            "content/xiaoman/chroma.sqlite3": chroma_db([STORY_A, STORY_B]),
            "content/system_prompt.txt": PERSONA.encode(),
        }
    )
    c = import_role_zip(data).character
    assert (c.id, c.name, c.persona, len(c.scenes)) == ("xiaoman", "小满", PERSONA, 2)
    assert c.scenes[0].lines[2] == Line("小满", "来碗面，八文。")


@pytest.mark.parametrize(
    "members, message",
    [
        ({"content/x/readme.txt": b"hi"}, "found 0"),
        ({"content/x/chroma.sqlite3": b"SQLite format 3\x00" + b"\x00" * 100}, "cannot be read"),
        ({"content/x/chroma.sqlite3": b"not a database"}, "not an SQLite"),
        ({"content/x/chroma.sqlite3": chroma_db([])}, "no documents"),
    ],
)
def test_bad_role_zips(members: dict[str, bytes], message: str) -> None:
    with pytest.raises(ParseError, match=message):
        import_role_zip(role_zip(members))


def test_role_zip_with_a_damaged_schema_that_is_not_utf8_is_refused() -> None:
    db = chroma_db(["x"])
    damaged = db.replace(b"embedding_metadata (id", b"embedding_metadata \x89id")
    assert damaged != db
    with pytest.raises(ParseError, match="chroma.sqlite3 cannot be read: malformed database"):
        import_role_zip(role_zip({"content/x/chroma.sqlite3": damaged}))


def test_role_zip_bomb_is_refused_by_the_cap(monkeypatch) -> None:
    import rolecast.formats.chatharuhi as ch

    monkeypatch.setattr(ch, "MAX_FILE", 1 << 20)
    data = role_zip({"content/x/chroma.sqlite3": b"\x00" * (8 << 20)})  # 8 MiB of zeros: ~8 KB
    assert len(data) < 64 << 10
    with pytest.raises(ParseError, match="too large|more than"):
        import_role_zip(data)


def test_story_folder_attaches_images_to_matching_lines(tmp_path: Path) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "1.txt").write_text(STORY_A, encoding="utf-8")
    (tmp_path / "texts" / "2.txt").write_text(STORY_B, encoding="utf-8")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "来碗面 八文.jpg").write_bytes(b"jpeg1")  # punctuation differs
    (tmp_path / "images" / "在偷鱼.jpg").write_bytes(b"jpeg2")  # a trimmed subtitle
    (tmp_path / "images" / "好.jpg").write_bytes(b"jpeg3")  # too short a match: not attached
    (tmp_path / "images" / "从来没说过的话.jpg").write_bytes(b"jpeg4")
    r = import_story_folder(tmp_path, "xm")
    images = {ln.text: ln.image for s in r.character.scenes for ln in s.lines if ln.image}
    assert images["来碗面，八文。"] == "images/来碗面 八文.jpg"
    assert images["在偷鱼咯。"] == "images/在偷鱼.jpg"
    assert "好。" not in images
    frames = r.character.scenes[-1]
    assert frames.id == FRAMES_SCENE and [ln.text for ln in frames.lines] == ["从来没说过的话"]
    assert r.images["在偷鱼.jpg"] == b"jpeg2"


def test_hf_import_goes_through_the_downloader(tmp_path: Path) -> None:
    f = tmp_path / "xiaoman.jsonl"
    f.write_bytes(jsonl(*role_rows()))
    asked = []

    def download(repo: str, filename: str) -> str:
        asked.append((repo, filename))
        return str(f)

    r = import_hf("hf://silk-road/ChatHaruhi-RolePlaying/xiaoman", download=download)
    assert asked == [("silk-road/ChatHaruhi-RolePlaying", "xiaoman.jsonl")]
    c = r.character
    assert c.id == "xiaoman" and c.name == "小满" and c.source == "原作"
    assert (
        c.description
        == "imported from the ChatHaruhi role hf://silk-road/ChatHaruhi-RolePlaying/xiaoman"
    )
    for bad in ("hf://only/two", "hf://a/b/../c", "http://x/y/z"):
        with pytest.raises(ParseError, match="hf://OWNER"):
            import_hf(bad, download=download)


def test_export_jsonl_writes_kept_vectors_back_and_round_trips() -> None:
    r = import_role_jsonl(jsonl(*role_rows()), where="xiaoman.jsonl")
    out = export_role_jsonl(r.character)
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert rows[0]["luotuo_openai"] == "system_prompt" and rows[1]["bge_zh_s15"] == "config"
    assert rows[3]["bge_zh_s15"] == vec([3.0, 4.0])
    back = import_role_jsonl(out).character
    assert back.scenes == r.character.scenes and back.vectors == r.character.vectors


def test_export_jsonl_embeds_when_no_vectors_came_with_the_character(character) -> None:
    out = export_role_jsonl(character, embed=lambda texts: [[float(len(t)), 1.0] for t in texts])
    rows = [json.loads(x) for x in out.decode().splitlines()]
    assert decode_vector(rows[2]["rolecast"])[1] == 1.0 and len(rows) == 2 + len(character.scenes)


_text = (
    st.text(
        alphabet=st.sampled_from(list("面汤雾桥猫灯钟河abcXYZ019，。！？ ")),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
_name = st.text(alphabet=st.sampled_from(list("小满阿青李四ABmn")), min_size=1, max_size=4)


@st.composite
def characters(draw) -> Character:
    name = draw(_name)
    user = draw(_name.filter(lambda n: n != name))
    speakers = st.sampled_from([name, user, "旁白"])
    scenes = []
    for i in range(draw(st.integers(1, 5))):
        lines = draw(st.lists(st.tuples(speakers, _text), min_size=1, max_size=5))
        scenes.append(Scene(f"sc{i}", draw(_text), tuple(Line(s, t) for s, t in lines)))
    if not any(ln.speaker == name for s in scenes for ln in s.lines):
        scenes[0] = Scene(scenes[0].id, scenes[0].title, (*scenes[0].lines, Line(name, "嗯")))
    return Character(
        id="rt",
        name=name,
        persona=draw(st.text(max_size=60)),
        scenes=scenes,
        aliases=draw(st.lists(_name, max_size=2)),
        language=draw(st.sampled_from(["zh", "en"])),
        source=draw(_text),
        user_role=user,
        narrators=["旁白"],
        greetings=draw(st.lists(_text, max_size=3)),
        description=draw(_text),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(characters())
def test_jsonl_round_trip_property(c: Character) -> None:
    back = import_role_jsonl(export_role_jsonl(c), cid="rt").character
    for field in ("name", "scenes", "aliases", "language", "source", "user_role", "narrators"):
        assert getattr(back, field) == getattr(c, field), field
    assert (back.greetings, back.description) == (c.greetings, c.description)
    assert back.persona == c.persona.strip()


ROOT = corpus_root()
needs_corpus = pytest.mark.skipif(ROOT is None, reason="ROLECAST_CORPUS is not set")
corpus = pytest.mark.corpus  # over the real corpus: left out of the fast loop (e2e)


@corpus
@needs_corpus
def test_corpus_role_zip_and_story_folder_agree_on_haruhi() -> None:
    assert ROOT is not None
    base = ROOT / "ChatHaruhi2.0" / "data" / "characters" / "haruhi"
    folder = import_chatharuhi(base).character
    zipped = import_chatharuhi(base / "haruhi.zip").character
    assert sorted(format_dialogue(s.lines) for s in folder.scenes) == sorted(
        format_dialogue(s.lines) for s in zipped.scenes
    )
    assert (zipped.name, zipped.user_role, zipped.persona) == (
        folder.name,
        folder.user_role,
        folder.persona,
    )


@corpus
@needs_corpus
def test_corpus_haruhi_frames_become_images() -> None:
    assert ROOT is not None
    r = import_story_folder(ROOT / "characters" / "haruhi")
    pictures = {ln.image for s in r.character.scenes for ln in s.lines if ln.image}
    assert len(pictures) == len(r.images) == 19
    assert all(p.removeprefix("images/") in r.images for p in pictures)


@corpus
@needs_corpus
def test_corpus_liyunlong_without_images_says_so() -> None:
    assert ROOT is not None
    r = import_story_folder(ROOT / "characters" / "liyunlong")
    assert any("no images/ folder" in n for n in r.notes) and not r.images


def test_make_character_exports_as_jsonl() -> None:
    c = make_character(3)
    assert len(export_role_jsonl(c).decode().splitlines()) == 5


@corpus
@needs_corpus
@pytest.mark.parametrize(
    "folder", ["haruhi", "Sheldon", "Harry", "weixiaobao", "zhongli", "liyunlong"]
)
def test_corpus_characters_survive_a_jsonl_round_trip(folder: str) -> None:
    assert ROOT is not None
    c = import_story_folder(ROOT / "characters" / folder).character
    back = import_role_jsonl(export_role_jsonl(c), cid=c.id).character
    assert (back.name, back.user_role, back.persona, back.language) == (
        c.name,
        c.user_role,
        c.persona,
        c.language,
    )

    def plain(scene: Scene) -> Scene:  # JSONL rows carry no images
        return Scene(scene.id, scene.title, tuple(Line(ln.speaker, ln.text) for ln in scene.lines))

    differ = [s.id for s, b in zip(c.scenes, back.scenes, strict=True) if plain(s) != b]
    # one known loss: a bracketed line of narration with no speaker (zhongli) loses its brackets
    assert len(differ) <= 1, differ


# ---------------------------------------------------------------- which speaker is the character

# Theo, the partner, speaks more than Mia in every fixture below: line counts alone pick him.
STORY_EN = (
    "Theo: Are you open yet?\nMia: Nearly. Sit down and wait a minute.\n"
    "Theo: It smells like ginger.\nTheo: Is that the new broth?\n"
    "Mia: Two bowls of it, and you pay for both this time.\n"
)
STORY_EN_2 = "Theo: The cat is back.\nTheo: It has a fish.\nMia: Coal! Drop that fish!\n"


def en_folder(root: Path, persona: str | None = None, header: str | None = None) -> Path:
    """A story folder where Theo has 5 lines and Mia 3 (texts written here, not the corpus)."""
    (root / "texts").mkdir(parents=True)
    (root / "texts" / "1.txt").write_text(STORY_EN, encoding="utf-8")
    (root / "texts" / "2.txt").write_text(STORY_EN_2, encoding="utf-8")
    if persona is not None:
        (root / "system_prompt.txt").write_text(persona, encoding="utf-8")
    if header is not None:
        (root / "gradio_header.md").write_text(header, encoding="utf-8")
    return root


def test_the_folder_name_picks_the_character_over_line_counts(tmp_path: Path) -> None:
    r = import_story_folder(en_folder(tmp_path / "mia"))
    c = r.character
    assert (c.name, c.user_role) == ("Mia", "Theo")
    assert any("named by the folder name" in n and "Theo" in n for n in r.notes)


def test_without_a_hint_the_most_lines_win_with_a_close_call_note(tmp_path: Path) -> None:
    # 4 lines against 5 is close: say both counts and how to choose
    (tmp_path / "close" / "texts").mkdir(parents=True)
    (tmp_path / "close" / "texts" / "1.txt").write_text(
        STORY_EN + "Mia: Fine, one bowl free.\n", encoding="utf-8"
    )
    (tmp_path / "close" / "texts" / "2.txt").write_text(STORY_EN_2, encoding="utf-8")
    r = import_story_folder(tmp_path / "close")
    close = [n for n in r.notes if "use --speaker NAME to choose" in n]
    assert r.character.name == "Theo" and len(close) == 1
    assert "Theo (5 lines)" in close[0] and "Mia (4 lines)" in close[0]


def test_a_clear_majority_gets_no_close_call_note(tmp_path: Path) -> None:
    r = import_story_folder(en_folder(tmp_path / "role", persona="x" * 40))
    assert r.character.name == "Theo"
    assert not [n for n in r.notes if "--speaker" in n]  # 3 of 5 is not close


def test_the_persona_names_the_character(tmp_path: Path) -> None:
    persona = "You are Mia, who runs the noodle stall by the bridge. Theo is your regular."
    r = import_story_folder(en_folder(tmp_path / "role", persona=persona))
    assert r.character.name == "Mia" and r.character.persona == persona
    assert any("named by the persona" in n for n in r.notes)


def test_a_possessive_is_not_who_the_persona_makes_you(tmp_path: Path) -> None:
    persona = "You are Mia's oldest customer, Theo; you tease Mia about the price of broth."
    r = import_story_folder(en_folder(tmp_path / "role", persona=persona))
    assert r.character.name == "Theo"


def test_gradio_header_names_the_character(tmp_path: Path) -> None:
    r = import_story_folder(en_folder(tmp_path / "role", header="## Chat with Mia\nA demo"))
    assert r.character.name == "Mia"


def test_speaker_argument_overrides_every_hint(tmp_path: Path) -> None:
    folder = en_folder(tmp_path / "mia", persona="You are Mia, the noodle stall keeper, always.")
    r = import_story_folder(folder, speaker="theo")  # case does not matter
    c = r.character
    assert (c.name, c.user_role) == ("Theo", "Mia") and c.is_self("Theo")
    assert not [n for n in r.notes if "--speaker" in n]


def test_unknown_speaker_is_an_error_listing_the_speakers(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        import_story_folder(en_folder(tmp_path / "mia"), speaker="Megumi")
    assert "'Megumi'" in str(err.value) and "Theo (5), Mia (3)" in str(err.value)


def test_user_role_argument(tmp_path: Path) -> None:
    folder = en_folder(tmp_path / "mia")
    assert import_story_folder(folder, user_role="theo").character.user_role == "Theo"
    r = import_story_folder(folder, user_role="A stranger")
    assert r.character.user_role == "A stranger"
    assert any("A stranger speaks no line" in n for n in r.notes)
    with pytest.raises(InputError, match="must not be empty"):
        import_story_folder(folder, user_role="  ")
    with pytest.raises(InputError, match="is the character itself"):
        import_story_folder(folder, speaker="Mia", user_role="mia")


def test_user_role_is_not_taken_as_the_character(tmp_path: Path) -> None:
    # no hint names anyone: with Theo as the user, the character is the other speaker
    r = import_story_folder(en_folder(tmp_path / "role"), user_role="Theo")
    assert (r.character.name, r.character.user_role) == ("Mia", "Theo")


def test_a_tiny_persona_is_replaced_by_a_marked_draft(tmp_path: Path) -> None:
    from rolecast.ingest.workdir import DRAFT_MARK

    r = import_story_folder(en_folder(tmp_path / "mia", persona="N\n"))
    c = r.character
    first, *rest = c.persona.splitlines()
    assert first == DRAFT_MARK
    body = "\n".join(rest)
    assert body.startswith("You are Mia.") and "You often talk with Theo." in body
    assert '- "Coal! Drop that fish!"' in body and "Are you open yet" not in body  # hers only
    assert any("'N' is too short" in n and "draft" in n for n in r.notes)


def test_a_missing_chinese_persona_gets_a_chinese_draft(tmp_path: Path) -> None:
    (tmp_path / "xm" / "texts").mkdir(parents=True)
    (tmp_path / "xm" / "texts" / "1.txt").write_text(STORY_A + "\n" + STORY_B, encoding="utf-8")
    r = import_story_folder(tmp_path / "xm")
    persona = r.character.persona
    assert "你是小满。你常和阿青说话。" in persona and "- 「煤球，放下！」" in persona
    assert r.character.source == "原作" and r.character.narrators == ["旁白"]
    assert any("no persona" in n for n in r.notes)


def test_a_short_but_real_chinese_persona_is_kept(tmp_path: Path) -> None:
    (tmp_path / "xm" / "texts").mkdir(parents=True)
    (tmp_path / "xm" / "texts" / "1.txt").write_text(STORY_A, encoding="utf-8")
    (tmp_path / "xm" / "system_prompt.txt").write_text("你是小满，桥头面摊的老板。", "utf-8")
    assert import_story_folder(tmp_path / "xm").character.persona == "你是小满，桥头面摊的老板。"


def test_english_role_reads_as_english(tmp_path: Path) -> None:
    persona = "I want you to act like Mia from The Bridge Stories.\nAnswer like Mia would."
    c = import_story_folder(en_folder(tmp_path / "mia", persona=persona)).character
    assert c.language == "en" and c.narrators == ["Narrator"]
    assert c.source == "The Bridge Stories"
    c = import_story_folder(en_folder(tmp_path / "other" / "mia")).character
    assert c.source == "the original work" and c.source != "mia"


def test_jsonl_and_zip_names_pick_the_character_and_take_the_arguments() -> None:
    rows = [
        {"text": STORY_EN, "v": vec([0.5, 0.5])},
        {"text": STORY_EN_2, "v": vec([0.5, 0.5])},
    ]
    assert import_role_jsonl(jsonl(*rows), where="Mia.jsonl").character.name == "Mia"
    r = import_role_jsonl(jsonl(*rows), where="Mia.jsonl", speaker="Theo", user_role="Mia")
    assert (r.character.name, r.character.user_role) == ("Theo", "Mia")
    data = role_zip({"content/mia/chroma.sqlite3": chroma_db([STORY_EN, STORY_EN_2])})
    assert import_role_zip(data).character.name == "Mia"
    assert import_role_zip(data, speaker="THEO").character.name == "Theo"
    with pytest.raises(InputError, match="speakers found: Theo"):
        import_role_zip(data, speaker="Nobody")


def test_a_foreign_config_name_counts_only_when_it_is_a_speaker() -> None:
    rows = [
        {"text": json.dumps({"role_name": "Mia"}), "v": "config"},
        {"text": STORY_EN, "v": vec([0.5])},
    ]
    assert import_role_jsonl(jsonl(*rows), where="r.jsonl").character.name == "Mia"
    rows[0]["text"] = json.dumps({"role_name": "Haruko"})  # no such speaker: ignored
    assert import_role_jsonl(jsonl(*rows), where="r.jsonl").character.name == "Theo"


@pytest.mark.parametrize(
    "counts, hints, want",
    [
        # folder names: the same name but for case and spaces, or a whole-word part of it
        ({"Theo": 9, "Megumi": 7}, SpeakerHints(names=("megumi",)), "Megumi"),
        ({"Theo": 9, "Megumi Kato": 7}, SpeakerHints(names=("Megumi",)), "Megumi Kato"),
        ({"Theo": 9, "Sheldon": 7}, SpeakerHints(names=("Sheldon_Cooper",)), "Sheldon"),
        ({"Theo": 9, "Sheldon": 7}, SpeakerHints(names=("Don",)), "Theo"),  # not a word of it
        ({"阿青": 9, "小满": 7}, SpeakerHints(names=("林小满",)), "小满"),
        ({"阿青": 9, "满": 7}, SpeakerHints(names=("小满",)), "阿青"),  # one character: no
        # a header or persona: who it makes you, else who it names most
        ({"阿青": 9, "春香": 7}, SpeakerHints(header="## Chat 陈春香\n项目"), "春香"),
        ({"阿青": 9, "春香": 7}, SpeakerHints(persona="你正在扮演陈春香，阿青是你的邻居"), "春香"),
        ({"阿青": 9, "春香": 7}, SpeakerHints(persona="你是春香的朋友阿青。"), "阿青"),
        ({"Theo": 9, "Mia": 7}, SpeakerHints(persona="Mia runs a stall. Mia is loud."), "Mia"),
        ({"Theo": 9, "Mia": 7}, SpeakerHints(persona="Mia and Theo run a stall."), "Theo"),
        # the order: folder name before header before persona
        ({"A1": 9, "Bo": 8, "Cy": 7}, SpeakerHints(names=("Cy",), header="Bo"), "Cy"),
        ({"A1": 9, "Bo": 8, "Cy": 7}, SpeakerHints(header="Bo", persona="You are Cy."), "Bo"),
    ],
)
def test_choose_speaker(counts: dict[str, int], hints: SpeakerHints, want: str) -> None:
    from collections import Counter

    assert choose_speaker(Counter(counts), hints)[0] == want


def test_own_config_keeps_name_and_persona_exactly() -> None:
    c = make_character(3)
    c.persona = "短"
    back = import_role_jsonl(export_role_jsonl(c), where="other.jsonl").character
    assert (back.name, back.persona, back.user_role) == (c.name, "短", c.user_role)


@corpus
@needs_corpus
@pytest.mark.parametrize(
    "folder, name, source, narrator",
    [
        ("haruhi", "春日", "原作", "旁白"),
        ("Harry", "Harry", "Harry Potter", "Narrator"),
        ("Sheldon", "Sheldon", "Big Bang Theory", "Narrator"),
        ("weixiaobao", "韦小宝", "《鹿鼎记》", "旁白"),
        ("liyunlong", "李云龙", "原作", "旁白"),
    ],
)
def test_corpus_roles_pick_their_character_and_read_their_source(
    folder: str, name: str, source: str, narrator: str
) -> None:
    assert ROOT is not None
    r = import_story_folder(ROOT / "characters" / folder)
    c = r.character
    assert (c.name, c.source) == (name, source)
    if narrator == "Narrator":  # an English role: its narrator is never 旁白
        assert "旁白" not in c.narrators and c.narrators
    assert not [n for n in r.notes if "--speaker" in n]  # a clear choice: nothing to warn
    runner_up = import_story_folder(ROOT / "characters" / folder, speaker=c.user_role)
    assert runner_up.character.name == c.user_role


@corpus
@needs_corpus
def test_corpus_role_zip_without_header_reads_the_persona() -> None:
    assert ROOT is not None
    base = ROOT / "ChatHaruhi2.0" / "data" / "characters" / "haruhi"
    assert import_chatharuhi(base / "haruhi.zip").character.name == "春日"
