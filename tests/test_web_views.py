"""The page's HTML views: bubbles, the canon as lines, the gallery's cards; everything from a
character, card or model escaped."""

from __future__ import annotations

from rolecast.character.model import Line, Scene
from rolecast.web.views import Card, bubble_html, canon_html, gallery_html, said, styled

from conftest import make_english_character


def test_a_bubble_says_whose_it_is_and_escapes_what_is_said() -> None:
    html = bubble_html("Mia", "/gradio_api/file=/p.png", "<script>x()</script> (waves) Hi\nthere")
    assert '<img class="rc-face" src="/gradio_api/file=/p.png" alt="Mia">' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<span class="rc-narr">(waves)</span>' in html and "Hi<br>there" in html
    assert said(html) == "<script>x()</script> (waves) Hi\nthere"
    # no picture: the name's initial on its own colour, never an empty box
    bare = bubble_html("旅人", None, "你好", "user")
    assert "rc-initial" in bare and ">旅</span>" in bare and "<img" not in bare
    framed = bubble_html("Mia", None, "Coal!", frame="/f.png", frame_caption="coal", notes=["2/3"])
    assert 'class="rc-inline-frame"><img src="/f.png" alt="coal"' in framed and "2/3" in framed


def test_styled_marks_each_kind_of_narration() -> None:
    assert styled("（擦手）好【笑】*nods*") == (
        '<span class="rc-narr">（擦手）</span>好<span class="rc-narr">【笑】</span>'
        '<span class="rc-narr">*nods*</span>'
    )


def test_the_canon_shows_lines_own_and_closest_marked_sent_first() -> None:
    c = make_english_character()
    long = tuple(Line("Mia" if i % 2 else "Guest", f"line {i}") for i in range(20))
    c.scenes.append(Scene("long", "a long talk", long))
    rows = [
        {
            "kind": "canon",
            "scene": "rain",
            "title": "rain",
            "score": 0.01,
            "dense": 0.1,
            "bm25": 0.2,
            "sent": False,
            "best_line": None,
        },
        {
            "kind": "canon",
            "scene": "long",
            "title": "a long talk",
            "score": 0.03,
            "dense": 0.5,
            "bm25": 1.0,
            "sent": True,
            "best_line": 12,
        },
        {
            "kind": "lore",
            "scene": "lore:bridge",
            "title": "bridge",
            "text": "The old <bridge>.",
            "score": None,
            "sent": True,
        },
        {
            "kind": "memory",
            "scene": "memory 1",
            "title": "from memory: Guest: my cat",
            "text": "Guest: my cat is white",
            "score": None,
            "sent": True,
        },
    ]
    html = canon_html(rows, c)
    assert "canon behind this reply: 1 of 2 scenes sent" in html
    assert html.index('data-scene="long"') < html.index('data-scene="rain"')  # sent first
    long_part = html[html.index('data-scene="long"') : html.index('data-scene="lore:bridge"')]
    # 8 lines around the closest one (12): lines 9-16, with the cut marked at both ends
    assert "line 9<" in long_part and "line 16<" in long_part and "line 8<" not in long_part
    assert long_part.count('class="rc-more"') == 2
    assert '<li class="rc-line rc-best"><span class="rc-best-mark"' in long_part  # line 12: Guest
    assert long_part.count("rc-own") == 4  # Mia's lines, 9 11 13 15, highlighted
    assert "not sent</span>" in html and ">lore</span>" in html and ">from memory</span>" in html
    assert "&lt;bridge&gt;" in html and "earlier in this chat" in html
    assert canon_html([], c) == ""


def test_gallery_cards_carry_what_search_and_pick_need() -> None:
    cards = [
        Card("mia", "Mia", "Bridge Tales", "Two coins a bowl!", "/gradio_api/file=/m.png"),
        Card("x", 'Ev"il<', "", "", None),
    ]
    html = gallery_html(cards, current="mia")
    assert 'class="rc-card rc-current" data-id="mia"' in html
    assert 'data-search="mia mia bridge tales two coins a bowl!"' in html
    assert "Ev&quot;il&lt;" in html and 'Ev"il<' not in html
    assert html.count("<button") == 3 and html.count("rc-import-card") == 1  # and the import tile
