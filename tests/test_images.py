"""Scene images: the frame of the canon line a reply is closest to."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecast.character.model import Line, Scene
from rolecast.retrieval.images import THRESHOLD, SceneImages
from rolecast.retrieval.index import load_index

from conftest import corpus_root, make_character


@pytest.fixture
def images(tmp_path: Path, embedder) -> SceneImages:
    c = make_character()
    c.scenes.append(
        Scene(
            "frames",
            "frames",
            (
                Line("小满", "煤球！给我把鱼放下！", image="images/cat.jpg"),
                Line("小满", "给晚归的船照个亮。", image="images/lamp.jpg"),
                Line("旁白", "narration with a picture is not a spoken line", image="images/x.jpg"),
            ),
        )
    )
    return SceneImages(load_index(c, embedder, tmp_path))


def test_a_reply_close_to_an_image_line_gets_its_frame(images: SceneImages) -> None:
    assert len(images) == 2  # narration is not embedded, so it cannot be matched
    m = images.match("煤球！给我把鱼放下")
    assert m is not None and m.image == "images/cat.jpg" and m.score >= THRESHOLD
    lamp = images.match("我给晚归的船照个亮")
    assert lamp is not None and lamp.image == "images/lamp.jpg"


def test_an_unrelated_reply_gets_no_frame(images: SceneImages) -> None:
    assert images.match("明天的天气怎么样，要不要带伞？") is None
    assert images.match("") is None


def test_a_character_without_images(tmp_path: Path, embedder) -> None:
    images = SceneImages(load_index(make_character(), embedder, tmp_path))
    assert len(images) == 0 and images.match("煤球") is None


@pytest.mark.skipif(corpus_root() is None, reason="ROLECAST_CORPUS is not set")
def test_haruhi_subtitles_find_their_frames(tmp_path: Path, embedder) -> None:
    from rolecast.formats.chatharuhi import import_story_folder

    root = corpus_root()
    assert root is not None
    c = import_story_folder(root / "characters" / "haruhi").character
    images = SceneImages(load_index(c, embedder, tmp_path))
    cases = {  # the full subtitle line (text_image_dict.txt) -> the frame named after it
        "我来介绍  她叫朝比奈实玖瑠哦": "我来介绍，她叫朝比奈实玖瑠哦.jpg",
        "又不是外星人  未来人或者超能力者": "又不是外星人未来人或者超能力者.jpg",
        "那就别跟我搭话 会浪费我的时间的": "那就别跟我搭话  会浪费我的时间的.jpg",
    }
    for subtitle, frame in cases.items():
        m = images.match(subtitle)
        assert m is not None and m.image == f"images/{frame}", subtitle
    assert images.match("喂，阿虚，明天早上九点车站前集合，迟到的人请客！") is None
