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
    return SceneImages(load_index(c, embedder))


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
    images = SceneImages(load_index(make_character(), embedder))
    assert len(images) == 0 and images.match("煤球") is None


@pytest.mark.corpus
@pytest.mark.skipif(corpus_root() is None, reason="ROLECAST_CORPUS is not set")
def test_haruhi_quotes_find_their_frames(tmp_path: Path, embedder) -> None:
    from rolecast.formats.chatharuhi import import_story_folder

    root = corpus_root()
    assert root is not None
    c = import_story_folder(root / "characters" / "haruhi").character
    frames = {ln.image: ln.text for s in c.scenes for ln in s.lines if ln.image}
    # the line of a frame holds the whole subtitle from text_image_dict.txt, not the file name
    assert frames["images/没有的话，自己组建一个就好了.jpg"].startswith("我想到了！")
    images = SceneImages(load_index(c, embedder))
    cases = {  # a shortened quote of the frame's subtitle line -> the frame
        "没有的话，自己组建一个就好了": "没有的话，自己组建一个就好了.jpg",
        "又不是外星人未来人或者超能力者": "又不是外星人未来人或者超能力者.jpg",
        "那就别跟我搭话 会浪费我的时间的": "那就别跟我搭话  会浪费我的时间的.jpg",
    }
    for subtitle, frame in cases.items():
        m = images.match(subtitle)
        assert m is not None and m.image == f"images/{frame}", subtitle
    assert images.match("喂，阿虚，明天早上九点车站前集合，迟到的人请客！") is None


def test_clauses_of_a_subtitle_line() -> None:
    from rolecast.retrieval.images import clauses

    assert clauses("周一是黄色") == ["周一是黄色"]
    units = clauses("我想到了！ 没有的话  自己组建一个就好了！")
    assert "没有的话自己组建一个就好了！" in units and "我想到了！" in units
    assert clauses("Coal! Drop that fish right now!") == [
        "Coal! Drop that fish right now!",
        "Coal!",
        "Drop that fish right now!",
    ]
