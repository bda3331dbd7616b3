"""What a character never says: an assistant's refusals, its self-description and its
service closers. The conversation gate and the in-character probes count them; the session
cuts them out of a reply as it streams (and samples again when nothing else is left).

Pure patterns over NFKC-normalised text, typographic quotes made ASCII. Latin patterns are
case-insensitive and use ASCII word boundaries, so "AI" is a word in "跟AI说话".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_LATIN = re.I | re.ASCII
# the apology a refusal starts with belongs to it ("I'm sorry, but I don't have access...")
_SORRY = r"(?:(?:i'm |i am )?(?:sorry|afraid)[,.]? (?:but )?)?"

# An assistant declining, or describing its limits.
BOILERPLATE = [
    re.compile(
        r"\bi(?:'m| am)? (?:sorry|afraid),? but i (?:can(?:'|no)t|am (?:not able|unable)) "
        r"(?:help|assist|comply|fulfil|provide|do that|browse|access)",
        _LATIN,
    ),
    re.compile(
        _SORRY + r"\bi (?:cannot|can't|am (?:not able|unable) to) "
        r"(?:fulfil+|comply with|assist with|help with) (?:that|this|your) request",
        _LATIN,
    ),
    # seen from the default model as Sheldon: "Sorry, but I can't assist with that."
    re.compile(
        r"\b(?:sorry|afraid)[,.]? (?:but )?i (?:can(?:'|no)t|am (?:not able|unable) to) "
        r"(?:assist|help) (?:you )?with (?:that|this)",
        _LATIN,
    ),
    re.compile(
        _SORRY
        + r"\bi (?:cannot|can't|am (?:not able|unable) to|don't have the ability to|do not have "
        r"the ability to) (?:browse|access|search) the (?:internet|web)",
        _LATIN,
    ),
    # "I'm sorry, but I don't have the capability to watch TV…" (seen as Sheldon)
    re.compile(
        r"\b(?:sorry|afraid)[,.]? (?:but )?i (?:don't|do not) have the (?:capability|ability|"
        r"capacity) to|\bi (?:don't|do not) have the (?:capability|capacity) to",
        _LATIN,
    ),
    re.compile(
        _SORRY + r"\bi (?:don't|do not) have (?:personal |any )?(?:feelings|emotions|opinions|"
        r"consciousness|a physical (?:body|form)|access to (?:real-time|the internet|current|"
        r"your|personal|any (?:personal|real-time)))",
        _LATIN,
    ),
    re.compile(
        r"\b(?:my training data|my knowledge cutoff|as of my last (?:update|training)|"
        r"my programming|i was programmed)",
        _LATIN,
    ),
    re.compile(
        r"(?:抱歉|对不起)[，,。\s]*(?:但是?)?我(?:无法|不能)(?:提供|满足|回答|协助|帮助|完成|"
        r"继续(?:这个|这段|此|我们的)?(?:对话|话题|请求|角色扮演|聊天))"
    ),
    re.compile(r"我(?:无法|不能)(?:访问|浏览|连接)(?:互联网|网络|网页|实时)"),
    re.compile(r"我没有(?:个人的?|真正的?|任何)?(?:情感|感情|意识|实体|身体|个人观点|主观)"),
    re.compile(r"(?:我的训练数据|训练数据截至|知识截止|截至我的|我的知识库)"),
]

# An assistant saying what it is.
ASSISTANT_SELF = [
    re.compile(r"(?:作为|身为)(?:一[个名款])?(?:AI|人工智能|语言模型|智能助手|助手|机器人)", re.I),
    re.compile(
        r"我(?:只)?是(?:一[个名款])?(?:AI|人工智能|(?:自然|大型|大)?语言模型|虚拟助手|智能助手|"
        r"聊天机器人)",
        re.I,
    ),
    # seen from the default model as 林小满: "是的，我是一个自然语言处理（NLP）程序。"
    re.compile(
        r"我(?:只)?是(?:一[个名款种])?(?:基于)?(?:自然语言处理|NLP|计算机|电脑|AI)"
        r"(?:[（(][^）)]{0,12}[）)])?(?:的)?(?:程序(?!员)|软件|系统|模型)",
        re.I,
    ),
    re.compile(
        r"\bas an? (?:ai|artificial intelligence|language model|assistant|chatbot)\b", _LATIN
    ),
    re.compile(
        r"\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|language model|"
        r"ai assistant|virtual assistant|chatbot|computer program|natural language processing)\b",
        _LATIN,
    ),
]

# An assistant's service closers ("feel free to ask"), its framing ("based on what you
# said") and its numbered lists: not a refusal, but no character talks like that; the session
# cuts the reply where one starts.
CLOSERS = [
    re.compile(
        r"\b(?:if|let me know if|please let me know if) (?:there(?:'s| is) anything else|"
        r"you have any (?:other |more |further )?questions|you need (?:any )?(?:more |further )?"
        r"(?:help|assistance))",
        _LATIN,
    ),
    re.compile(r"\bfeel free to (?:ask|reach out|let me know)", _LATIN),
    re.compile(r"\b(?:how|is there anything else) (?:else )?(?:can|may) i (?:help|assist)", _LATIN),
    re.compile(r"\bi(?:'m| am) (?:glad|happy) (?:i could|to) (?:help|assist)", _LATIN),
    # seen from the default model as Sheldon: "but I'm always here to help. How about you?"
    re.compile(r"\bi(?:'m| am) (?:always |still |just )?here to (?:help|assist)", _LATIN),
    re.compile(r"如果(?:你|您)?(?:还)?有(?:其他|任何|别的)(?:的)?(?:问题|需要|疑问)"),
    re.compile(r"(?:有|还有)什么(?:其他|别的)?(?:问题|事情|需要)?(?:我)?可以(?:帮|为)(?:你|您)"),
    re.compile(r"(?:随时|欢迎)(?:都)?(?:可以)?(?:向我)?(?:提问|问我|告诉我)"),
    re.compile(r"(?:尽力|竭诚|乐意)(?:为(?:你|您))?提供(?:帮助|服务|支持)"),
    # seen from the default model as 林小满: "不客气，有啥事想聊的就告诉我，我一定会帮你的。"
    re.compile(
        r"有(?:啥|什么)(?:事|事情|问题|需要|想聊的|要帮忙的)[^。！？!?\n]{0,6}"
        r"(?:就|尽管|随时|都可以)(?:告诉|找|问|跟|和)(?:我|咱)"
    ),
    # an assistant's framing and layout: "根据你的叙述，…", "…你可以选择：1. … 2. …"
    re.compile(r"(?:根据|按照)(?:你|您)(?:的|所)(?:叙述|描述|提供的信息|说的)"),
    re.compile(
        r"\b(?:based on|according to) (?:the information|what|your description)"
        r"(?: you(?:'ve)? (?:provided|described|said|gave))?",
        _LATIN,
    ),
    re.compile(r"(?:^|(?<=[:：\n]))\s*1[.、）)]\s*\S[^\n]{0,80}?\s*2[.、）)]\s*\S"),
    # the prompt's own material talked about: "The way Sheldon talks in these scenes…",
    # "要理解李云龙在原作中的经典片段…", "请注意，孔捷的口吻和用词…"
    re.compile(
        r"\b(?:in|from) (?:these|the above|the following|the given) "
        r"(?:scenes|excerpts|examples|dialogues|moments)\b",
        _LATIN,
    ),
    re.compile(r"(?:经典片段|这些片段|上述片段|以上片段|原作(?:中|里)的|口吻(?:、|和)用词)"),
    # a conversation analysed from outside: "从旅人和林小满的对话中，我们可以推断出…"
    re.compile(
        r"(?:从|根据|在)[^。！？!?\n]{0,16}(?:和|与|跟)[^。！？!?\n]{0,16}的对话(?:中|里|来看)"
    ),
    re.compile(r"我们(?:可以|能够?)(?:推断|看出|得出|总结)"),
    re.compile(r"(?:和|与|跟)[^。！？!?\n，,]{1,10}之间的对话"),  # "旅人和小满姐之间的对话"
    re.compile(
        r"\b(?:from|in|based on) the (?:conversation|dialogue|exchange) (?:between|above)\b",
        _LATIN,
    ),
    re.compile(r"\bwe can (?:infer|conclude|deduce|see) (?:that|from)\b", _LATIN),
    re.compile(r"很高兴(?:能)?(?:为(?:你|您)(?:服务|提供)|帮(?:到|助)(?:你|您))"),
    re.compile(r"我(?:一直|随时|会一直)?(?:都)?在(?:这里|这儿)(?:帮助|帮|为)(?:你|您)"),
]


# typographic quotes the model writes as often as ASCII ones ("I’m sorry, but I can’t…")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_QUOTES)


def boilerplate_matches(text: str) -> list[str]:
    """What each refusal / limits pattern found in ``text``."""
    text = normal(text)
    return [m[0] for p in BOILERPLATE if (m := p.search(text))]


def refusal(text: str) -> str | None:
    """The first refusal or assistant self-description in ``text`` (what the gate counts)."""
    text = normal(text)
    hits = boilerplate_matches(text) + [m[0] for p in ASSISTANT_SELF if (m := p.search(text))]
    return hits[0] if hits else None


def normal_indexed(text: str) -> tuple[str, list[int]]:
    """``text`` NFKC-normalised, and for each of its characters the index in ``text`` it
    came from (NFKC may widen a character: "…" is "...")."""
    pieces = [normal(ch) for ch in text]
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


def as_written(text: str, where: Sequence[int], m: re.Match[str]) -> tuple[int, str]:
    """Where a match ``m`` in ``normal_indexed(text)`` starts in ``text``, and its text as
    ``text`` has it (``where`` is that function's index map)."""
    start = where[m.start()]
    return start, text[start : where[m.end() - 1] + 1]


def first_assistant_talk(text: str) -> tuple[int, str] | None:
    """Where in ``text`` the earliest refusal, self-description or service closer starts
    (an index into ``text`` itself), and what it says (as ``text`` has it)."""
    flat, where = normal_indexed(text)
    found = [
        as_written(text, where, m)
        for p in (*BOILERPLATE, *ASSISTANT_SELF, *CLOSERS)
        if (m := p.search(flat))
    ]
    return min(found) if found else None
