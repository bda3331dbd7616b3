"""Sprite avatars: drafted from a portrait (only the mouth and eye regions change), read back,
and bad input named."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rolecast.avatar import draft_sprites, read_avatar
from rolecast.character.package import save_character
from rolecast.cli.main import main
from rolecast.errors import InputError

from conftest import make_character

MOUTH = (40, 70, 40, 16)
EYES = [(28, 38, 18, 10), (74, 38, 18, 10)]


def portrait() -> Image.Image:
    im = Image.new("RGB", (120, 120), (240, 214, 190))  # a skin tone
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 119, 20), fill=(60, 40, 30))  # hair
    for x, y, w, h in EYES:
        d.ellipse((x, y, x + w, y + h), fill=(30, 30, 60))
    d.line((48, 78, 72, 78), fill=(160, 70, 70), width=2)
    return im


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def outside(a: Image.Image, b: Image.Image, boxes) -> bool:  # type: ignore[no-untyped-def]
    """Whether two frames are the same everywhere outside ``boxes``."""
    x, y = np.asarray(a.convert("RGB")).copy(), np.asarray(b.convert("RGB")).copy()
    for bx, by, bw, bh in boxes:
        x[by : by + bh, bx : bx + bw] = 0
        y[by : by + bh, bx : bx + bw] = 0
    return bool((x == y).all())


def test_sprites_change_only_the_mouth_and_the_eyes() -> None:
    frames = draft_sprites(portrait(), MOUTH, EYES)
    assert set(frames) == {"closed", "half", "open", "blink"}
    base = portrait()
    for name in ("closed", "half", "open"):
        assert outside(frames[name], base, [MOUTH])
    assert outside(frames["blink"], base, [MOUTH, *EYES])

    def dark(im: Image.Image) -> int:  # the mouth's dark inside, in pixels
        x, y, w, h = MOUTH
        region = np.asarray(im.convert("RGB"))[y : y + h, x : x + w]
        return int((region.sum(axis=2) < 250).sum())

    assert dark(frames["closed"]) < dark(frames["half"]) < dark(frames["open"])
    # the eyes are painted over in the skin's tone when blinking
    ex, ey, ew, eh = EYES[0]
    eye = np.asarray(frames["blink"].convert("RGB"))[ey + 1 : ey + 3, ex + 2 : ex + ew - 2]
    assert abs(int(eye[..., 0].mean()) - 240) < 15
    with pytest.raises(InputError, match="reaches outside the portrait"):
        draft_sprites(portrait(), (100, 100, 40, 40))


def test_avatar_make_writes_a_package_avatar_the_reader_takes(rolecast_home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    c = make_character()
    c.portrait = "images/portrait.png"
    pkg = rolecast_home / "characters" / "xm"
    save_character(c, pkg, images={"portrait.png": png(portrait())})
    argv = ["avatar", "make", "xm", "--from-portrait", "--mouth", "40,70,40,16"]
    assert main([*argv, "--eyes", "28,38,18,10", "--eyes", "74,38,18,10"]) == 0
    avatar = read_avatar(pkg)
    assert avatar is not None and avatar.blink == "blink.png"
    assert (
        avatar.frame("open").name == "open.png"
        and avatar.frame("closed", blinking=True).name == "blink.png"
    )
    assert avatar.frame("half", blinking=True).name == "half.png"  # no blinking mid-word
    assert main(argv) == 1 and "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert main(["avatar", "make", "xm", "--from-portrait", "--mouth", "1,2,3"]) == 1
    assert "X,Y,WIDTH,HEIGHT" in capsys.readouterr().err
    assert main(["avatar", "make", "xiaoman", "--from-portrait", "--mouth", "1,1,5,5"]) == 1
    assert "built in and read-only" in capsys.readouterr().err


def test_a_broken_avatar_toml_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "avatar"
    folder.mkdir()
    assert read_avatar(tmp_path) is None
    (folder / "a.png").write_bytes(png(portrait()))
    (folder / "avatar.toml").write_text('idle = "a.png"\n[mouth]\nopen = "missing.png"\n', "utf-8")
    with pytest.raises(InputError, match="mouth.open: 'missing.png' is not in"):
        read_avatar(tmp_path)
    (folder / "avatar.toml").write_text('idle = "../../etc/passwd"\n', "utf-8")
    with pytest.raises(InputError, match="outside the avatar folder"):
        read_avatar(tmp_path)
    (folder / "avatar.toml").write_text('kind = "live2d"\nidle = "a.png"\n', "utf-8")
    with pytest.raises(InputError, match="kind 'live2d' is not one of sprite, vrm"):
        read_avatar(tmp_path)
    (folder / "avatar.toml").write_text('idle = "a.png"\n[mouth]\nx = "a.png"\n', "utf-8")
    with pytest.raises(InputError, match=r"\[mouth\] takes closed, half, open, a, i, u, e, o"):
        read_avatar(tmp_path)
    # a VRM: the model must be a binary glTF in the folder, and takes no sprite keys
    (folder / "avatar.toml").write_text('kind = "vrm"\nmodel = "a.png"\n', "utf-8")
    with pytest.raises(InputError, match="'a.png' is not a VRM"):
        read_avatar(tmp_path)
    (folder / "avatar.toml").write_text('kind = "vrm"\nmodel = "m.vrm"\nidle = "a.png"\n', "utf-8")
    with pytest.raises(InputError, match="'idle' is for sprites"):
        read_avatar(tmp_path)
    (folder / "avatar.toml").write_text('kind = "vrm"\n', "utf-8")
    with pytest.raises(InputError, match="model must name"):
        read_avatar(tmp_path)


def test_visemes_and_a_vrm_model_are_read(tmp_path: Path) -> None:
    from minimal_vrm import minimal_vrm

    from rolecast.avatar import SpriteAvatar, VrmAvatar

    folder = tmp_path / "avatar"
    folder.mkdir()
    for name in ("a.png", "va.png", "vo.png"):
        (folder / name).write_bytes(png(portrait()))
    (folder / "avatar.toml").write_text(
        'idle = "a.png"\n[mouth]\nopen = "va.png"\na = "va.png"\no = "vo.png"\n', "utf-8"
    )
    sprite = read_avatar(tmp_path)
    assert isinstance(sprite, SpriteAvatar) and sprite.mouth == {
        "open": "va.png",
        "a": "va.png",
        "o": "vo.png",
    }
    minimal_vrm(folder / "m.vrm")
    (folder / "avatar.toml").write_text('kind = "vrm"\nmodel = "m.vrm"\n', "utf-8")
    assert read_avatar(tmp_path) == VrmAvatar(folder, "m.vrm")


def test_the_page_shows_the_avatar_in_place_of_the_portrait(rolecast_home: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from rolecast.backends.scripted import ScriptedLLM
    from rolecast.character.package import load_character
    from rolecast.retrieval.index import load_index
    from rolecast.web.app import WebApp
    from rolecast.web.chat import ChatTab

    c = make_character()
    c.portrait = "images/portrait.png"
    pkg = rolecast_home / "characters" / "xm"
    save_character(c, pkg, images={"portrait.png": png(portrait())})
    loaded = load_character(pkg)
    tab = ChatTab(loaded, load_index(loaded, embedder), ScriptedLLM())
    assert tab.portrait() == str(pkg / "images" / "portrait.png")
    assert main(["avatar", "make", "xm", "--from-portrait", "--mouth", "40,70,40,16"]) == 0
    assert tab.portrait() == str(pkg / "avatar" / "closed.png")
    app = WebApp("xm", backend="scripted")
    assert pkg / "avatar" in app.served_paths()
    # the stage shows the avatar; the picture box only a scene's frame (no portrait twice)
    assert tab.shown_image() == (None, "")
    stage = app.stage(tab)
    assert 'data-frame="open"' in stage and "closed.png" in stage and "data-say" not in stage
    (pkg / "avatar" / "avatar.toml").write_text("idle = 3\n", "utf-8")  # broken: the portrait
    assert tab.portrait() == str(pkg / "images" / "portrait.png")
