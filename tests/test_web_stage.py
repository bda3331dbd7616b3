"""The avatar's stage as HTML: a sprite's frames (idle first and shown), where the page finds
timelines, the reply to say; a VRM's canvas and model; nothing without an avatar."""

from __future__ import annotations

from pathlib import Path

from rolecast.avatar import SpriteAvatar, VrmAvatar
from rolecast.web.stage import file_url, head_html, stage_html, timeline_path


def test_a_sprite_stage_stacks_its_frames_with_idle_shown(tmp_path: Path) -> None:
    avatar = SpriteAvatar(
        tmp_path,
        "closed.png",
        {"closed": "closed.png", "open": "o.png", "a": "a.png"},
        blink="b.png",
        expressions={"happy": "h.png"},
    )
    html = stage_html(avatar, tmp_path / "audio", say=str(tmp_path / "audio" / "x 1.wav"))
    frames = [part.split('"')[0] for part in html.split('data-frame="')[1:]]
    assert frames == ["idle", "closed", "open", "a", "blink", "happy"]
    assert html.index("class=on") < html.index('data-frame="closed"')  # only idle is shown
    assert html.count("class=on") == 1
    assert f'data-timelines="{file_url(tmp_path / "audio")}/"' in html
    assert 'data-say="/gradio_api/file=' in html and "x%201.wav" in html
    assert 'data-kind="sprite"' in html


def test_a_vrm_stage_is_a_canvas_with_its_model(tmp_path: Path) -> None:
    html = stage_html(VrmAvatar(tmp_path, "m.vrm"), tmp_path)
    assert "<canvas></canvas>" in html and 'data-kind="vrm"' in html
    assert f'data-model="{file_url(tmp_path / "m.vrm")}"' in html and "vrm.js" in html
    assert "data-say" not in html  # nothing to say yet


def test_no_avatar_no_stage_and_paths_are_quoted_into_attributes(tmp_path: Path) -> None:
    assert stage_html(None, tmp_path) == ""
    odd = SpriteAvatar(tmp_path, 'a" onerror="x.png', {})
    html = stage_html(odd, tmp_path)
    assert "onerror" in html and '" onerror' not in html and "a%22%20onerror" in html
    assert timeline_path(tmp_path / "r-1.wav") == tmp_path / "r-1.mouth.json"
    head = head_html()
    assert head.startswith("<script>") and "rolecastAvatar" in head
