"""The face for a reply, from its tone: happy, angry, sad, surprised, or none (the idle face).

    expression("哈哈，太好了！")        -> "happy"
    expression("What?! You ate it?")    -> "surprised"
    expression("The bus is at nine.")   -> None

A small lexicon per feeling in Chinese, Japanese and English, plus what the punctuation and
emoticons say; the feeling with the most cues wins when it has at least ``MIN_CUES``. Pure and
quick (a reply is scored once, when it is spoken), and honest about what it is: cues, not
understanding; a sprite without that expression's picture keeps its idle face.
"""

from __future__ import annotations

import re

MIN_CUES = 1
# cues per feeling, "|" between them; an English word counts only as a whole word
_CUES = {
    "happy": [
        "哈哈|嘿嘿|嘻嘻|太好了|开心|高兴|喜欢|好耶|真棒|谢谢|笑",
        "嬉しい|楽しい|やった|よかった|ありがとう|好き|ふふ|えへへ",
        "haha|hehe|yay|great|glad|love|wonderful|thank|thanks|happy",
        "(^|^^|♪|☆|😊|😄|😂|❤",
    ],
    "angry": [
        "哼|可恶|混蛋|笨蛋|闭嘴|滚|气死|生气|烦死|讨厌|岂有此理|他娘的",
        "うるさい|ばか！|ばかじゃ|バカ|ふざけ|怒|許さない|むかつく",
        "damn|idiot|shut up|how dare|stupid|angry|furious|enough!",
        "😠|😡|💢",
    ],
    "sad": [
        "呜|难过|伤心|可惜|唉|哭|寂寞|孤单|对不起|抱歉|遗憾",
        "悲しい|寂しい|ごめん|残念|泣|つらい|辛い",
        "sorry|sad|miss you|lonely|alas|crying|unfortunately|sigh",
        "😢|😭",
    ],
    "surprised": [
        "什么？|什么?|啊？|诶|咦|天哪|竟然|居然|真的吗|不会吧",
        "えっ|ええっ|まさか|本当に？|うそっ|うそ！|嘘|なに？|びっくり",
        "what?|really?|wow|no way|whoa|oh!|surprise",
        "?!|？！|!?|！？|😮|😲",
    ],
}
CUES: dict[str, tuple[str, ...]] = {
    k: tuple("|".join(parts).split("|")) for k, parts in _CUES.items()
}
_EXCLAIM = re.compile(r"[!！]")


def _count(low: str, cue: str) -> int:
    """How often a cue is in the text: an English word as a whole word ("sad", not
    "crusade"), anything else as it is."""
    if cue.isascii() and cue[:1].isalpha():
        return len(re.findall(rf"\b{re.escape(cue)}\b", low))
    return low.count(cue)


def scores(text: str) -> dict[str, int]:
    """How many cues of each feeling the text has."""
    low = text.lower()
    out = {name: sum(_count(low, cue) for cue in cues) for name, cues in CUES.items()}
    bangs = len(_EXCLAIM.findall(text)) - sum(low.count(c) for c in ("?!", "!?", "？！", "！？"))
    if bangs and out["angry"] + out["happy"]:  # an exclamation strengthens what is there
        out["angry" if out["angry"] > out["happy"] else "happy"] += 1
    return out


def expression(text: str) -> str | None:
    """The reply's face: the feeling with the most cues (ties go to the first of happy,
    angry, sad, surprised), or None when none has ``MIN_CUES``."""
    got = scores(text)
    best = max(got, key=lambda k: got[k])
    return best if got[best] >= MIN_CUES else None
