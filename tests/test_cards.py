"""Character cards: V1/V2/V3 JSON, PNG and CHARX import, export, round trips and hostile input."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecast.character.model import Character, Line, LoreEntry, Scene
from rolecast.character.package import valid_id
from rolecast.errors import InputError, ParseError
from rolecast.formats import cards
from rolecast.formats.cards import CardImport, export_card, fuzz_one, import_card, png_chunks

from conftest import make_character

# ---------------------------------------------------------------- helpers (built here)

SIG = b"\x89PNG\r\n\x1a\n"


def chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body)
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def tiny_png(extra: list[bytes] | None = None, rgb: bytes = b"\x10\x80\xf0") -> bytes:
    """A 1x1 RGB PNG, with ``extra`` chunks (already encoded) before IEND."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" + rgb)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + b"".join(extra or [])
    return SIG + body + chunk(b"IEND", b"")


def text_chunk(key: str, card: Any) -> bytes:
    raw = card if isinstance(card, bytes) else json.dumps(card).encode()
    return chunk(b"tEXt", key.encode() + b"\0" + base64.b64encode(raw))


def card_png(card: Any, key: str = "chara") -> bytes:
    return tiny_png([text_chunk(key, card)])


def charx(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, raw in files.items():
            zf.writestr(zipfile.ZipInfo(name), raw, compress_type=method)
    return buf.getvalue()


def v1_card() -> dict[str, Any]:
    return {
        "name": "Odo",
        "description": "{{char}} sells umbrellas at the ferry dock.",
        "personality": "patient, dry humour",
        "scenario": "",
        "first_mes": "Rain again, {{user}}. Need cover?",
        "mes_example": "<START>\n{{user}}: How much?\n{{char}}: Three coins, two if you smile.",
    }


def v2_card() -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Captain Wren",
            "description": "{{char}} keeps the lighthouse on Gull Rock and distrusts <USER>s.",
            "personality": "gruff, loyal, hums sea shanties",
            "scenario": "{{user}} washed up on the rocks during a storm.",
            "first_mes": "*{{char}} lowers the lantern.* You're lucky the tide turned.",
            "mes_example": (
                "<START>\n{{user}}: Where am I?\n{{char}}: Gull Rock. Nobody comes here on"
                " purpose.\nShe sets down a kettle.\n<start>\n"
                "{{user}}: Who else lives here?\nMoss: Me. I'm the cat.\n"
                "<BOT>: Ignore him, he lies about being a cat."
            ),
            "creator_notes": "A salty lighthouse keeper.\n\nLonger notes follow here.",
            "system_prompt": "Stay in character as {{char}}.",
            "post_history_instructions": "Keep replies short.",
            "alternate_greetings": ["Another one? {{user}}, sit by the fire.", "  "],
            "character_book": {
                "name": "Gull Rock",
                "scan_depth": 4,
                "extensions": {"x_book": 1},
                "entries": [
                    {
                        "keys": ["lamp", "lantern"],
                        "content": "The lamp has not gone out in forty years.",
                        "extensions": {"probability": 80},
                        "enabled": True,
                        "insertion_order": 10,
                        "name": "The Lamp",
                        "priority": 3,
                        "secondary_keys": ["light"],
                    },
                    {
                        "keys": ["Moss"],
                        "content": "Moss is a grey cat who insists he is a sailor.",
                        "extensions": {},
                        "enabled": False,
                        "insertion_order": 20,
                        "comment": "the cat",
                    },
                ],
            },
            "tags": ["sea", "mystery"],
            "creator": "someone",
            "character_version": "1.2",
            "extensions": {"talkativeness": "0.6", "depth_prompt": {"depth": 4, "prompt": "Hm."}},
        },
    }


def v3_card() -> dict[str, Any]:
    card = v2_card()
    card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
    data = card["data"]
    data.update(
        name="林小雨",
        nickname="小雨",
        description="{{char}}是镇上的邮递员，每天骑着旧自行车送信。",
        personality="害羞，记性好",
        scenario="",
        system_prompt="",
        first_mes="你的信到了，{{user}}！",
        alternate_greetings=[],
        mes_example="",
        group_only_greetings=["大家好"],
        source=["https://example.invalid/card"],
        creation_date=1700000000,
        modification_date=1700000500,
        creator_notes_multilingual={"en": "A shy mail carrier."},
        assets=[
            {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
            {
                "type": "background",
                "uri": "https://example.invalid/bg.png",
                "name": "bg",
                "ext": "png",
            },
        ],
    )
    data["character_book"]["entries"][1]["use_regex"] = False
    return card


def dumps(card: Any) -> bytes:
    return json.dumps(card, ensure_ascii=False).encode()


def rolecast_fields(c: Character) -> dict[str, Any]:
    return {k: getattr(c, k) for k in vars(c) if k != "vectors"}


# ---------------------------------------------------------------- mapping foreign cards


def test_v1_json_maps_fields() -> None:
    got = import_card(dumps(v1_card()), "odo.json")
    c = got.character
    assert isinstance(got, CardImport) and got.images == {}
    assert (c.id, c.name, c.user_role, c.language) == ("Odo", "Odo", "user", "en")
    assert c.persona == (
        "Odo sells umbrellas at the ferry dock.\n\nPersonality: patient, dry humour"
    )
    assert c.greetings == ["Rain again, user. Need cover?"]
    assert c.source == "the original work" and c.narrators == ["Narrator"]
    assert c.description == "imported from the character card odo.json"
    assert [ln.speaker for ln in c.scenes[0].lines] == ["user", "Odo"]
    assert "spec" not in c.card and c.card["description"].startswith("{{char}}")


def test_v2_json_maps_fields() -> None:
    c = import_card(dumps(v2_card()), "wren.json").character
    assert c.id == "Captain-Wren" and c.name == "Captain Wren" and c.language == "en"
    assert c.persona.split("\n\n") == [
        "Stay in character as Captain Wren.",
        "Captain Wren keeps the lighthouse on Gull Rock and distrusts users.",
        "Personality: gruff, loyal, hums sea shanties",
        "Scenario: user washed up on the rocks during a storm.",
    ]
    assert c.greetings == [
        "*Captain Wren lowers the lantern.* You're lucky the tide turned.",
        "Another one? user, sit by the fire.",
    ]
    assert [s.id for s in c.scenes] == ["example-1", "example-2"]
    assert {s.title for s in c.scenes} == {"example"}
    first, second = c.scenes
    assert first.lines == (
        Line("user", "Where am I?"),
        Line("Captain Wren", "Gull Rock. Nobody comes here on purpose.\nShe sets down a kettle."),
    )
    assert [ln.speaker for ln in second.lines] == ["user", "Moss", "Captain Wren"]
    assert c.description == "A salty lighthouse keeper."
    lamp, moss = c.lore
    assert lamp.keys == ("lamp", "lantern") and lamp.name == "The Lamp"
    assert lamp.extra["priority"] == 3 and lamp.extra["secondary_keys"] == ["light"]
    assert "name" not in lamp.extra and "keys" not in lamp.extra
    assert moss.name == "the cat" and moss.extra["enabled"] is False
    card = c.card
    assert card["spec"] == "chara_card_v2"
    assert card["extensions"] == v2_card()["data"]["extensions"]
    assert card["character_book"] == {
        "name": "Gull Rock",
        "scan_depth": 4,
        "extensions": {"x_book": 1},
    }
    for key in ("description", "personality", "scenario", "system_prompt", "creator", "tags"):
        assert card[key] == v2_card()["data"][key]
    assert card["_composed_persona"] == c.persona


def test_v3_json_maps_fields() -> None:
    c = import_card(dumps(v3_card()), "rain.json", cid="xiaoyu").character
    assert c.id == "xiaoyu" and c.name == "林小雨" and c.aliases == ["小雨"]
    assert c.language == "zh"
    assert c.persona == "林小雨是镇上的邮递员，每天骑着旧自行车送信。\n\nPersonality: 害羞，记性好"
    assert c.greetings == ["你的信到了，user！"] and c.narrators == ["旁白"] and c.source == "原作"
    # no mes_example: the greeting is the canon
    assert c.scenes == [Scene("greeting", "greeting", (Line("林小雨", "你的信到了，user！"),))]
    assert c.card["spec"] == "chara_card_v3"
    assert c.card["group_only_greetings"] == ["大家好"]
    assert c.card["creation_date"] == 1700000000
    assert c.card["assets"] == [v3_card()["data"]["assets"][1]]  # the remote one is kept
    assert c.lore[1].extra["use_regex"] is False


def test_examples_only_in_the_description_still_give_the_greeting_as_canon() -> None:
    card = {
        "name": "Juniper",
        "description": (
            "{{char}} runs the night ferry.\nExample dialogue:\n{{user}}: Is it safe?\n"
            "{{char}}: Safer than the bridge."
        ),
        "first_mes": "*Juniper taps the bell.* Last crossing, {{user}}. In or out?",
        "mes_example": "",
    }
    c = import_card(dumps(card), "juniper.json").character
    assert c.scenes == [
        Scene("greeting", "greeting", (Line("Juniper", c.greetings[0]),)),
    ]
    assert c.greetings[0] == "*Juniper taps the bell.* Last crossing, user. In or out?"
    assert c.language == "en" and c.narrators == ["Narrator"]
    assert "旁白" not in c.narrators
    # a card with example dialogue keeps its examples as the canon, not the greeting
    assert [s.id for s in import_card(dumps(v1_card()), "odo.json").character.scenes] == [
        "example-1"
    ]


def test_card_user_role_replaces_the_user_macro() -> None:
    c = import_card(dumps(v1_card()), "odo.json", user_role="Traveller").character
    assert c.user_role == "Traveller"
    assert c.greetings == ["Rain again, Traveller. Need cover?"]
    assert [ln.speaker for ln in c.scenes[0].lines] == ["Traveller", "Odo"]
    with pytest.raises(InputError, match="must not be empty"):
        import_card(dumps(v1_card()), "odo.json", user_role=" ")


def test_card_speaker_must_be_the_card_character() -> None:
    assert import_card(dumps(v1_card()), "odo.json", speaker=" odo ").character.name == "Odo"
    assert import_card(dumps(v3_card()), "r.json", speaker="小雨").character.name == "林小雨"
    with pytest.raises(InputError, match="holds one character, Odo; 'Moss' is not it"):
        import_card(dumps(v1_card()), "odo.json", speaker="Moss")


def test_derived_ids_are_valid() -> None:
    for name, cid in [("小满 & 朋友", "小满-朋友"), ("...", "character"), ("a/b\\c", "a-b-c")]:
        card = {"name": name, "description": "x"}
        assert import_card(dumps(card), "n.json").character.id == cid
    long = import_card(dumps({"name": "x" * 100}), "n.json").character.id
    assert len(long) == 64


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.text(max_size=80))
def test_derived_id_is_always_valid(name: str) -> None:
    assert valid_id(cards.derive_id(name))


def test_encodings() -> None:
    card = {"name": "小满", "description": "面摊老板"}
    text = json.dumps(card, ensure_ascii=False)
    for raw in (text.encode("utf-16"), text.encode("utf-8-sig"), text.encode("utf-32")):
        assert import_card(raw, "c.json").character.name == "小满"
    with pytest.raises(ParseError):  # UTF-16 without a BOM is not guessed at
        import_card(text.encode("utf-16-be"), "c.json")
    bom_be = b"\xfe\xff" + text.encode("utf-16-be")
    assert import_card(bom_be, "c.json").character.persona == "面摊老板"
    gbk = text.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    with pytest.raises(ParseError, match="not valid UTF-8.*save the card as UTF-8"):
        import_card(gbk, "gbk.json")


# ---------------------------------------------------------------- PNG and CHARX import


def test_png_with_chara_only() -> None:
    data = card_png(v2_card())
    got = import_card(data, "wren.png")
    assert got.character.name == "Captain Wren"
    assert got.character.portrait == "images/portrait.png"
    portrait = got.images["portrait.png"]
    kinds = [t for t, _ in png_chunks(portrait)]
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]  # the card chunks are left out


def test_png_ccv3_wins_over_chara() -> None:
    png = tiny_png([text_chunk("chara", v2_card()), text_chunk("ccv3", v3_card())])
    assert import_card(png, "both.png").character.name == "林小雨"
    png = tiny_png([text_chunk("ccv3", v3_card()), text_chunk("chara", v2_card())])
    assert import_card(png, "both.png").character.name == "林小雨"


def test_png_ztxt_and_itxt_chunks() -> None:
    b64 = base64.b64encode(dumps(v1_card()))
    ztxt = chunk(b"zTXt", b"chara\0\0" + zlib.compress(b64))
    assert import_card(tiny_png([ztxt]), "z.png").character.name == "Odo"
    itxt = chunk(b"iTXt", b"ccv3\0\1\0en\0\0" + zlib.compress(base64.b64encode(dumps(v3_card()))))
    assert import_card(tiny_png([itxt]), "i.png").character.name == "林小雨"
    plain = chunk(b"iTXt", b"chara\0\0\0\0\0" + b64)
    assert import_card(tiny_png([plain]), "i.png").character.name == "Odo"


def test_charx_icon_becomes_portrait() -> None:
    icon, other = tiny_png(), tiny_png(rgb=b"\x01\x02\x03")
    card = v3_card()
    card["data"]["assets"] = [
        {
            "type": "icon",
            "uri": "embeded://assets/icon/images/alt.png",
            "name": "alt",
            "ext": "png",
        },
        {
            "type": "icon",
            "uri": "embeded://assets/icon/images/main.png",
            "name": "main",
            "ext": "png",
        },
        {
            "type": "emotion",
            "uri": "embeded://assets/emotion/images/joy.webp",
            "name": "joy",
            "ext": "webp",
        },
        {
            "type": "sound",
            "uri": "embeded://assets/other/audio/hello.mp3",
            "name": "hi",
            "ext": "mp3",
        },
        {"type": "other", "uri": "embeded://assets/missing.png", "name": "gone", "ext": "png"},
    ]
    data = charx(
        {
            "card.json": dumps(card),
            "assets/icon/images/main.png": icon,
            "assets/icon/images/alt.png": other,
            "assets/emotion/images/joy.webp": b"RIFF....WEBP",
            "assets/other/audio/hello.mp3": b"ID3",
        }
    )
    got = import_card(data, "rain.charx")
    assert got.character.portrait == "images/portrait.png"
    assert got.images == {"portrait.png": icon, "alt.png": other, "joy.webp": b"RIFF....WEBP"}
    kept = [a["name"] for a in got.character.card["assets"]]
    assert kept == ["hi", "gone"]


def test_charx_without_assets_uses_icon_folder() -> None:
    data = charx({"card.json": dumps(v3_card()), "assets/icon/images/x.jpg": b"\xff\xd8jpg"})
    got = import_card(data, "c.charx")
    assert got.images == {"portrait.jpg": b"\xff\xd8jpg"}


def test_charx_image_names_are_cleaned_and_deduplicated() -> None:
    members = [
        "assets/a/images/pic.png",
        "assets/b/images/pic.png",
        "assets/c/images/we*ird?.gif",
        "assets/c/images/.hidden.jpg",
        "assets/c/images/" + "长" * 90 + ".webp",
    ]
    card = v3_card()
    card["data"]["assets"] = [
        {"type": "other", "uri": f"embeded://{m}", "name": "x", "ext": ""} for m in members
    ]
    files = {"card.json": dumps(card), **{m: m.encode() for m in members}}
    images = import_card(charx(files), "names.charx").images
    names = list(images)
    assert names[:4] == ["pic.png", "pic-2.png", "we_ird_.gif", "hidden.jpg"]
    assert names[4].endswith(".webp") and len(names[4].encode()) <= 200
    assert images["pic-2.png"] == b"assets/b/images/pic.png"


def test_other_tools_extensions_survive_on_a_rolecast_card() -> None:
    card = json.loads(export_card(make_character(), None, "json"))
    card["data"]["extensions"]["chub"] = {"id": 7}
    card["data"]["description"] = "edited elsewhere: ignored, the payload wins"
    got = import_card(dumps(card), "x.json").character
    assert got.persona == make_character().persona
    assert got.card == {"extensions": {"chub": {"id": 7}}}
    again = json.loads(export_card(got, None, "json"))["data"]["extensions"]
    assert again["chub"] == {"id": 7} and "rolecast" in again


# ---------------------------------------------------------------- export


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    (d / "portrait.png").write_bytes(card_png(v1_card()))  # an imported PNG still has a card
    (d / "bridge.jpg").write_bytes(b"\xff\xd8bridge")
    (d / "notes.txt").write_text("not an image")
    return d


def rich_character() -> Character:
    c = make_character(10)
    c.portrait = "images/portrait.png"
    c.description = "面摊姑娘"
    c.extra = {"era": "民国", "rating": 4, "tags": ["a", "b"]}
    c.lore = [
        LoreEntry(("桥",), "石桥有三百年了。", "石桥", {"priority": 2}),
        LoreEntry(("煤球", "猫"), "一只黑猫。"),
    ]
    c.scenes[1] = Scene("s001", "图", (Line("小满", "看这里", 1.5, 2.0, "images/bridge.jpg"),))
    return c


@pytest.mark.parametrize("fmt", ["json", "png", "charx"])
def test_export_import_round_trip(fmt: str, images_dir: Path) -> None:
    c = rich_character()
    got = import_card(export_card(c, images_dir, fmt), f"out.{fmt}", cid=c.id)
    assert rolecast_fields(got.character) == rolecast_fields(c)
    if fmt == "json":
        assert got.images == {}
    else:
        assert [t for t, _ in png_chunks(got.images["portrait.png"])] == [
            b"IHDR",
            b"IDAT",
            b"IEND",
        ]
    if fmt == "charx":
        assert got.images["bridge.jpg"] == b"\xff\xd8bridge" and len(got.images) == 2


def test_round_trip_without_cid_keeps_the_id() -> None:
    c = make_character()
    assert import_card(export_card(c, None, "json"), "x.json").character.id == c.id


def test_exported_json_is_a_v3_card() -> None:
    c = rich_character()
    card = json.loads(export_card(c, None, "json").decode("utf-8"))
    data = card["data"]
    assert (card["spec"], card["spec_version"]) == ("chara_card_v3", "3.0")
    assert data["description"] == c.persona and data["nickname"] == "满老板"
    assert data["first_mes"] == "来碗面？" and data["alternate_greetings"] == []
    assert data["creator_notes"] == "面摊姑娘" and data["group_only_greetings"] == []
    blocks = data["mes_example"].split("<START>")[1:]
    assert 1 <= len(blocks) <= 8 and len(data["mes_example"]) <= 2000
    assert "{{user}}: " in blocks[0] and "{{char}}: " in blocks[0]
    entries = data["character_book"]["entries"]
    assert entries[0]["keys"] == ["桥"] and entries[0]["enabled"] is True
    assert entries[0]["priority"] == 2 and entries[0]["name"] == "石桥"
    payload = data["extensions"]["rolecast"]
    assert payload["version"] == 1 and payload["character"]["extra"]["era"] == "民国"


def test_mes_example_sample_is_capped() -> None:
    c = make_character(40)
    c.scenes = [
        Scene(
            f"s{i}", "t", (Line("旅人", "问" * 150), Line("小满", "答" * 150), Line("路人", "嗯"))
        )
        for i in range(40)
    ]
    sample = json.loads(export_card(c, None, "json"))["data"]["mes_example"]
    assert len(sample) <= 2000 and sample.count("<START>") <= 8
    assert "路人: 嗯" in sample


def test_foreign_card_exports_its_original_fields(tmp_path: Path) -> None:
    original = v2_card()["data"]
    imported = import_card(dumps(v2_card()), "wren.json").character
    data = json.loads(export_card(imported, None, "json"))["data"]
    for key in (
        "description",
        "personality",
        "scenario",
        "system_prompt",
        "first_mes",
        "alternate_greetings",
        "mes_example",
        "creator_notes",
        "post_history_instructions",
        "tags",
        "creator",
        "character_version",
    ):
        assert data[key] == original[key], key
    assert {k: v for k, v in data["extensions"].items() if k != "rolecast"} == original[
        "extensions"
    ]
    book = data["character_book"]
    assert book["name"] == "Gull Rock" and book["extensions"] == {"x_book": 1}
    lamp, moss = book["entries"]
    assert lamp["extensions"] == {"probability": 80} and lamp["insertion_order"] == 10
    assert moss["enabled"] is False and moss["comment"] == "the cat"
    # importing the export gives the imported character back, kept card fields included
    again = import_card(export_card(imported, None, "png"), "wren.png", cid=imported.id)
    assert rolecast_fields(again.character) | {"portrait": ""} == rolecast_fields(imported)
    twice = json.loads(export_card(again.character, None, "json"))["data"]
    assert twice["personality"] == original["personality"]

    imported.persona = "A new persona, written by hand."
    imported.greetings = ["Hello."]
    data = json.loads(export_card(imported, None, "json"))["data"]
    assert data["description"] == imported.persona
    assert data["personality"] == data["scenario"] == data["system_prompt"] == ""
    assert data["first_mes"] == "Hello." and data["alternate_greetings"] == []
    assert data["tags"] == original["tags"]


def test_png_export_is_a_valid_png_with_both_chunks(images_dir: Path) -> None:
    c = rich_character()
    for folder in (images_dir, None):
        data = export_card(c, folder, "png")
        chunks = png_chunks(data)  # checks signature, lengths, types and every CRC
        kinds = [t for t, _ in chunks]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and data.endswith(chunk(b"IEND", b""))
        assert len(chunks[0][1]) == 13
        texts = {b.split(b"\0", 1)[0]: b.split(b"\0", 1)[1] for t, b in chunks if t == b"tEXt"}
        assert set(texts) == {b"ccv3", b"chara"}  # the portrait's own chara chunk was replaced
        v3 = json.loads(base64.b64decode(texts[b"ccv3"]))
        v2 = json.loads(base64.b64decode(texts[b"chara"]))
        assert v3["spec"] == "chara_card_v3" and v2["spec"] == "chara_card_v2"
        assert v2["spec_version"] == "2.0" and "rolecast" in v2["data"]["extensions"]
        assert not set(cards.V3_ONLY) & set(v2["data"])
        assert v2["data"]["name"] == c.name
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (256, 256)  # the generated portrait


def test_png_export_opens_in_pillow() -> None:
    image_mod = pytest.importorskip("PIL.Image")
    data = export_card(make_character(), None, "png")
    with image_mod.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (256, 256)


def test_charx_export_layout(images_dir: Path) -> None:
    data = export_card(rich_character(), images_dir, "charx")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        card = json.loads(zf.read("card.json"))
    assert names == {
        "card.json",
        "assets/icon/images/main.png",
        "assets/other/images/bridge.jpg",
    }
    assets = card["data"]["assets"]
    assert assets[0] == {
        "type": "icon",
        "uri": "embeded://assets/icon/images/main.png",
        "name": "main",
        "ext": "png",
    }
    assert assets[1]["type"] == "other" and assets[1]["ext"] == "jpg"


def test_unknown_export_format() -> None:
    with pytest.raises(InputError, match="unknown card format"):
        export_card(make_character(), None, "gif")  # type: ignore[arg-type]


# ---------------------------------------------------------------- bad input


def _png_with(body_chunks: list[bytes]) -> bytes:
    return SIG + b"".join(body_chunks)


IHDR = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))


def _bad_crc() -> bytes:
    good = card_png(v1_card())
    return good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]  # IEND's CRC byte flipped


def _zip_slip(name: str) -> bytes:
    return charx({"card.json": dumps(v3_card()), name: b"x"})


BAD_INPUTS = {
    "truncated png": (card_png(v1_card())[:-20], "truncated"),
    "truncated signature": (SIG[:5], "truncated inside its signature"),
    "bad crc": (_bad_crc(), "bad CRC"),
    "no card chunk": (tiny_png(), "no character card"),
    "bad chunk type": (_png_with([IHDR, chunk(b"ID4T", b"")]), "invalid type"),
    "ihdr not first": (_png_with([chunk(b"IDAT", b""), chunk(b"IEND", b"")]), "not IHDR"),
    "invalid base64": (tiny_png([chunk(b"tEXt", b"chara\0eyJuYW1l$$$")]), "not valid base64"),
    "invalid json in png": (card_png(b'{"name": "x",}'), "not valid JSON"),
    "invalid json": (b'{"name": "x"', "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "array": (b'[{"name": "x"}]', "must be a JSON object, not list"),
    "unknown spec": (dumps({"spec": "chara_card_v9", "data": {}}), "unsupported card 'spec'"),
    "data not object": (dumps({"spec": "chara_card_v2", "data": []}), "'data' must be an object"),
    "name missing": (dumps({"description": "x"}), "'name' is missing or empty"),
    "name blank": (dumps({"spec": "chara_card_v2", "data": {"name": " "}}), "'data.name'"),
    "name wrong type": (dumps({"name": 3}), "'name' is missing or empty"),
    "greetings not list": (
        dumps({"spec": "chara_card_v2", "data": {"name": "x", "alternate_greetings": "hi"}}),
        "'data.alternate_greetings' must be a list of strings",
    ),
    "greetings not strings": (
        dumps({"name": "x", "alternate_greetings": ["a", 1]}),
        "'alternate_greetings' must be a list of strings",
    ),
    "description number": (
        dumps({"name": "x", "description": 5}),
        "'description' must be a string",
    ),
    "extensions list": (dumps({"name": "x", "extensions": []}), "'extensions' must be an object"),
    "book entries": (
        dumps({"name": "x", "character_book": {"entries": {}}}),
        "'character_book.entries' must be a list",
    ),
    "book keys": (
        dumps({"name": "x", "character_book": {"entries": [{"keys": "k", "content": ""}]}}),
        r"'character_book.entries\[0\].keys' must be a list of strings",
    ),
    "assets": (dumps({"name": "x", "assets": [{"uri": 1}]}), r"'assets\[0\].uri'"),
    "dates": (dumps({"name": "x", "creation_date": "today"}), "'creation_date' must be a number"),
    "deep json": (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    "deep but parseable": (
        dumps({"name": "x", "extensions": {"a": json.loads("[" * 150 + "]" * 150)}}),
        "nested more than 100 levels",
    ),
    "huge number": (b'{"name": "x", "n": ' + b"9" * 5000 + b"}", "not usable JSON"),
    "lone surrogate": (b'{"name": "\\ud800x"}', "unpaired surrogate"),
    "zip slip": (_zip_slip("../evil.png"), "unsafe path in zip: '../evil.png'"),
    "absolute path": (_zip_slip("/etc/evil.png"), "unsafe path in zip: '/etc/evil.png'"),
    "backslash": (_zip_slip("assets\\..\\..\\x.png"), "unsafe path in zip"),
    "drive letter": (_zip_slip("C:/x.png"), "unsafe path in zip: 'C:/x.png'"),
    "no card.json": (charx({"assets/a.png": b"x"}), "no card.json"),
    "not a zip": (b"PK\x03\x04" + b"\0" * 40, "not a valid zip"),
    "bzip2 member": (
        charx({"card.json": dumps(v3_card())}, zipfile.ZIP_BZIP2),
        "compression method 12",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_parse_error(case: str) -> None:
    data, message = BAD_INPUTS[case]
    with pytest.raises(ParseError, match=message) as info:
        import_card(data, "bad.card")
    assert str(info.value).startswith("bad.card: ")


def test_zip_duplicate_member() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("card.json", dumps(v3_card()))
        with pytest.warns(UserWarning):
            zf.writestr("card.json", b"{}")
    with pytest.raises(ParseError, match="twice"):
        import_card(buf.getvalue(), "dup.charx")


def test_zip_bomb_of_zeros_is_refused_without_unpacking() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("card.json", dumps(v3_card()))
        with zf.open("assets/other/images/zeros.png", "w") as member:
            block = bytes(1 << 20)
            for _ in range(100):
                member.write(block)
    data = buf.getvalue()
    assert len(data) < 1_000_000
    start = time.perf_counter()
    with pytest.raises(ParseError, match="unpacks to 104857600 bytes, over the"):
        import_card(data, "bomb.charx")
    assert time.perf_counter() - start < 1


def test_zip_member_lying_about_its_size() -> None:
    """A member that declares 100 bytes but inflates to 5 MB: never read past the 100."""
    data = bytearray(charx({"card.json": bytes(5_000_000)}))
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        struct.pack_into("<I", data, at + offset, 100)
    with pytest.raises(ParseError, match="card.json' cannot be read: Bad CRC"):
        import_card(bytes(data), "liar.charx")


def test_zip_total_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cards.limits, "MAX_TOTAL", 1000)
    data = charx({"card.json": dumps(v3_card()), "a.bin": bytes(600), "b.bin": bytes(600)})
    with pytest.raises(ParseError, match="more than the 1000 byte limit"):
        import_card(data, "big.charx")


def test_zip_too_many_members() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(cards.MAX_MEMBERS + 1):
            zf.writestr(f"f{i}", b"")
    with pytest.raises(ParseError, match="10001 members"):
        import_card(buf.getvalue(), "many.charx")


def test_ztxt_bomb_is_refused() -> None:
    bomb = zlib.compress(bytes(100_000_000), 1)
    data = tiny_png([chunk(b"zTXt", b"chara\0\0" + bomb)])
    start = time.perf_counter()
    with pytest.raises(ParseError, match="inflates to more than"):
        import_card(data, "bomb.png")
    assert time.perf_counter() - start < 2


def test_too_many_png_chunks() -> None:
    filler = chunk(b"teSt", b"")
    data = _png_with([IHDR, filler * cards.MAX_CHUNKS, chunk(b"IEND", b"")])
    with pytest.raises(ParseError, match="more than 10000 chunks"):
        import_card(data, "many.png")


def test_oversize_chunk_length_field() -> None:
    header = struct.pack(">I", 0x7FFFFFFF) + b"IDAT"
    with pytest.raises(ParseError, match="declares 2147483647 bytes, over the"):
        import_card(_png_with([IHDR, header + b"\0" * 100]), "big.png")


def test_file_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cards.limits, "MAX_FILE", 1000)
    with pytest.raises(ParseError, match="larger than the 1000 byte limit"):
        import_card(dumps({"name": "x", "description": "y" * 2000}), "big.json")


def _with_payload(change: Any) -> bytes:
    card = json.loads(export_card(make_character(2), None, "json"))
    change(card["data"]["extensions"]["rolecast"], card)
    return dumps(card)


def _set(path: str, value: Any) -> Any:
    def change(payload: dict[str, Any], card: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = payload
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


HOSTILE_PAYLOADS = {
    "not an object": (
        lambda p, c: c["data"]["extensions"].update(rolecast=[1]),
        "must be an object",
    ),
    "newer version": (_set("version", 2), "'extensions.rolecast.version' is 2"),
    "bool version": (_set("version", True), "version' is True"),
    "no character": (lambda p, c: p.pop("character"), "'extensions.rolecast.character' must be"),
    "empty name": (_set("character.name", ""), "name' must be a non-empty string"),
    "aliases string": (_set("character.aliases", "x"), "aliases' must be a list of strings"),
    "persona number": (_set("character.persona", 1), "persona' must be a string"),
    "extra list": (_set("character.extra", []), "extra' must be an object"),
    "extra _root": (_set("character.extra", {"_root": "/etc"}), "reserved key '_root'"),
    "extra name": (_set("character.extra", {"name": "x"}), "reserved key 'name'"),
    "extra null": (_set("character.extra", {"k": None}), "TOML cannot store"),
    "portrait escape": (_set("character.portrait", "../../x.png"), "not a safe relative path"),
    "portrait odd name": (_set("character.portrait", "images/.x"), "unsafe image file name"),
    "bad id": (_set("character.id", "../evil"), "invalid character id"),
    "canon string": (_set("canon", "scenes"), "'extensions.rolecast.canon' must be a list"),
    "canon row": (_set("canon.1", 7), r"canon\[1\]'.*JSON object"),
    "canon text": (_set("canon.0.lines.0.text", 5), r"canon\[0\]'.*string 'text'"),
    "canon start": (_set("canon.0.lines.0.start", "x"), "number of seconds"),
    "canon duplicate": (_set("canon.1.id", "s000"), "duplicate scene id"),
    "lore keys": (_set("lore", [{"keys": "k", "content": "c"}]), r"lore\[0\]'.*keys"),
    "card list": (_set("card", []), "'extensions.rolecast.card' must be an object"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PAYLOADS))
def test_hostile_rolecast_payload(case: str) -> None:
    change, message = HOSTILE_PAYLOADS[case]
    with pytest.raises(ParseError, match=message):
        import_card(_with_payload(change), "hostile.json")


def test_bad_cid_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="invalid character id"):
        import_card(dumps(v1_card()), "x.json", cid="../up")


def test_fuzz_one_swallows_only_parse_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz_one(b"garbage")
    fuzz_one(dumps(v2_card()))

    def boom(data: bytes, filename: str, cid: str | None = None) -> CardImport:
        raise KeyError("bug")

    monkeypatch.setattr(cards.importer, "import_card", boom)
    with pytest.raises(KeyError):
        fuzz_one(b"{}")


# ---------------------------------------------------------------- properties

_cjk = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=12)
_text = st.one_of(st.text(max_size=20), _cjk)
_name = st.one_of(st.text(min_size=1, max_size=12), _cjk.filter(bool)).filter(
    lambda s: s.strip() != ""
)
_seconds = st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False), st.integers(0, 10**6))
_line = st.builds(
    Line,
    speaker=_text,
    text=_text,
    start=_seconds,
    end=_seconds,
    image=st.one_of(st.none(), st.just("images/bridge.jpg")),
)
_scene = st.builds(
    Scene,
    id=st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,8}", fullmatch=True),
    title=_text,
    lines=st.lists(_line, max_size=4).map(tuple),
)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_lore = st.builds(
    LoreEntry,
    keys=st.lists(_text, max_size=3).map(tuple),
    content=_text,
    name=_text,
    extra=st.dictionaries(st.text(max_size=6), _json_scalar, max_size=3),
)
_toml_value = st.one_of(
    _text,
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(_text, max_size=3),
)
_extra = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
        lambda k: k not in cards.payload._TOML_KEYS
    ),
    _toml_value,
    max_size=3,
)
_character = st.builds(
    Character,
    id=st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,20}", fullmatch=True),
    name=_name,
    persona=st.one_of(st.text(max_size=200), _cjk),
    scenes=st.lists(_scene, max_size=4, unique_by=lambda s: s.id),
    aliases=st.lists(_name, max_size=2),
    language=st.sampled_from(["zh", "en", "ja"]),
    source=_text,
    user_role=_text,
    narrators=st.lists(_text, max_size=2),
    greetings=st.lists(_text, max_size=3),
    description=_text,
    portrait=st.sampled_from(["", "images/portrait.png", "images/face.jpg"]),
    lore=st.lists(_lore, max_size=3),
    extra=_extra,
)


@pytest.fixture(scope="module")
def property_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("card-images") / "images"
    d.mkdir()
    (d / "portrait.png").write_bytes(tiny_png())
    (d / "face.jpg").write_bytes(b"\xff\xd8face")
    (d / "bridge.jpg").write_bytes(b"\xff\xd8bridge")
    return d


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(character=_character, fmt=st.sampled_from(["json", "png", "charx"]))
def test_round_trip_property(character: Character, fmt: str, property_images: Path) -> None:
    data = export_card(character, property_images, fmt)  # type: ignore[arg-type]
    got = import_card(data, f"card.{fmt}", cid=character.id)
    assert rolecast_fields(got.character) == rolecast_fields(character)
    name = character.portrait.rpartition("/")[2]
    if fmt == "charx" and name:
        assert got.images[name] == (property_images / name).read_bytes()
    if fmt == "png":
        assert set(got.images) == ({name} if name.endswith(".png") else set())


def _base_samples() -> list[bytes]:
    exported = rich_character()
    return [
        dumps(v2_card()),
        dumps(v1_card()),
        card_png(v3_card(), "ccv3"),
        tiny_png(
            [chunk(b"zTXt", b"chara\0\0" + zlib.compress(base64.b64encode(dumps(v2_card()))))]
        ),
        charx({"card.json": dumps(v3_card()), "assets/icon/images/main.png": tiny_png()}),
        charx({"card.json": dumps(v3_card())}, zipfile.ZIP_STORED),
        export_card(exported, None, "json"),
        export_card(exported, None, "png"),
        export_card(exported, None, "charx"),
    ]


BASES = _base_samples()
_mutation = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete"]),
    st.floats(0, 1, exclude_max=True),
    st.binary(min_size=1, max_size=8),
)


def _mutate(data: bytes, ops: list[tuple[str, float, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, blob in ops:
        at = int(where * len(buf)) if buf else 0
        if op == "flip" and buf:
            buf[at] ^= blob[0] or 1
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = blob
        elif buf:
            del buf[at : at + len(blob)]
    return bytes(buf)


def _outcome(data: bytes) -> None:
    try:
        result = import_card(data, "fuzz.card")
    except ParseError as exc:
        assert str(exc)
        return
    assert isinstance(result, CardImport) and result.character.name.strip()


@settings(max_examples=150, deadline=None, database=None)
@given(base=st.sampled_from(BASES), ops=st.lists(_mutation, min_size=1, max_size=4))
def test_fuzz_byte_mutations(base: bytes, ops: list[tuple[str, float, bytes]]) -> None:
    _outcome(_mutate(base, ops))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


_FIELD_BASES = [v2_card(), json.loads(export_card(make_character(2), None, "json"))]
_FIELD_PATHS = [(i, p) for i, card in enumerate(_FIELD_BASES) for p in _paths(card)]
_json_value = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    target=st.sampled_from(_FIELD_PATHS),
    value=_json_value,
    wrap=st.sampled_from(["json", "png", "charx"]),
)
def test_fuzz_field_values(target: tuple[int, tuple[Any, ...]], value: Any, wrap: str) -> None:
    """Any JSON value in any field, in any container: a CardImport or a ParseError."""
    index, path = target
    card = copy.deepcopy(_FIELD_BASES[index])
    node = card
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    raw = dumps(card)
    data = {"json": raw, "png": card_png(raw), "charx": charx({"card.json": raw})}[wrap]
    _outcome(data)
