"""A personality interview: the 44 items of the Big Five Inventory, asked as open questions.

In the manner of InCharacter (Wang et al., 2024), the character is not handed a
questionnaire to tick; each item becomes an open question asked in character, in a
fresh conversation, and a judge backend rates on 1-5 how strongly the answer shows the
trait the item describes. Reverse-keyed items are turned around (6 - s) and each factor
is the mean of its items.

    interview(character, ask)            -> [Answer]       the character's side
    judge(answers, judge_llm)            -> [Judged]       the judge's side
    big_five(judged)                     -> {factor: FactorScore}
    compare(scores, labels)              -> errors and high/low accuracy against labels

The item keying (factor and direction of each of the 44 items) is John & Srivastava's
(1999) published scoring key. The questions and the trait descriptions given to the
judge are rolecast's own wording, not the inventory's.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from ..backends.base import LLM, GenerationParams
from ..character.model import Character
from ..errors import InputError, NoReplyError, ParseError

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger(__name__)

FACTORS = ("E", "A", "C", "N", "O")
FACTOR_NAMES = {
    "E": "Extraversion",
    "A": "Agreeableness",
    "C": "Conscientiousness",
    "N": "Neuroticism",
    "O": "Openness",
}
SCALE_MIN, SCALE_MAX = 1, 5
MIDPOINT = 3.0  # the middle of the 1-5 scale: above it is the "high" side of a factor
Progress = Callable[[int, int], None]  # (done, in all)
Ask = Callable[[str], str]  # one user line in, the character's reply out


@dataclass(frozen=True)
class Item:
    """One BFI item: its number, factor and keying, and rolecast's own wording for it."""

    number: int
    factor: str
    reverse: bool
    trait: str  # what the item describes, in the keyed direction; shown to the judge
    question_en: str
    question_zh: str

    @property
    def key(self) -> str:
        return f"{self.number}{'R' if self.reverse else ''}"

    def question(self, language: str) -> str:
        return self.question_zh if question_language(language) == "zh" else self.question_en

    def keyed(self, score: int) -> int:
        """A judge score turned into the factor's direction."""
        return SCALE_MIN + SCALE_MAX - score if self.reverse else score

    def to_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "factor": self.factor,
            "reverse": self.reverse,
            "trait": self.trait,
        }


# fmt: off
_ITEMS: tuple[tuple[int, str, bool, str, str, str], ...] = (
    (1, "E", False, "talks a lot and easily with other people",
     "When you're with other people, are you usually the one doing most of the talking, "
     "or do you mostly listen?",
     "和别人待在一起的时候，你通常是话最多的那个，还是更愿意在一旁听？"),
    (2, "A", True, "is quick to notice and point out what other people do wrong",
     "When someone around you makes a mess of something, what goes through your mind, "
     "and do you tell them?",
     "身边的人把事情搞砸了，你心里会怎么想？会不会直接挑他们的毛病？"),
    (3, "C", False, "does tasks carefully and completely",
     "Tell me about the last piece of work you did. How carefully did you see to every "
     "part of it?",
     "说说你最近做的一件活儿吧，你是每个细节都顾到了，还是差不多就行？"),
    (4, "N", False, "often feels low, sad or downhearted",
     "How often do you find yourself feeling down or gloomy, and what is that like for you?",
     "你会不会常常觉得心里发闷、提不起劲？那种时候是什么样子？"),
    (5, "O", False, "comes up with fresh ideas of their own",
     "When a problem comes up, do you tend to invent your own new way of dealing with it, "
     "or do you go with what people usually do?",
     "遇到难题的时候，你喜欢自己琢磨出新办法，还是照着大家惯常的做法来？"),
    (6, "E", True, "holds back and keeps to themselves around others",
     "When you meet someone for the first time, how much of yourself do you let them see?",
     "第一次见到一个人，你会向对方敞开多少？还是先把自己藏着点？"),
    (7, "A", False, "helps others freely, without thinking of their own gain",
     "If a neighbour needed a hand with something that gave you nothing in return, "
     "what would you do?",
     "要是邻居需要帮忙，而帮了对你一点好处都没有，你会怎么做？"),
    (8, "C", True, "can be sloppy or careless",
     "Have you ever had to redo something because you rushed it? How often does that "
     "happen to you?",
     "你有没有因为毛手毛脚，不得不把事情返工？这种事在你身上常见吗？"),
    (9, "N", True, "stays relaxed and copes well with pressure",
     "When everything piles up at once and you're under pressure, how do you hold up?",
     "事情一股脑儿全压过来的时候，你一般扛得住吗？心里是什么感觉？"),
    (10, "O", False, "is curious about a wide range of things",
     "What sorts of things make you want to find out more, and how far does your "
     "curiosity reach?",
     "什么样的事情会勾起你的好奇心？你感兴趣的东西多不多、杂不杂？"),
    (11, "E", False, "is lively and full of energy",
     "How would you describe your energy on an ordinary day? Are you always on the move?",
     "平常的一天里，你的精神头怎么样？是不是总闲不下来？"),
    (12, "A", True, "gets into arguments and fights with people",
     "When you disagree with someone, how often does it turn into a real argument, and "
     "who usually starts it?",
     "跟人意见不合的时候，会不会常常吵起来？一般是谁先挑的头？"),
    (13, "C", False, "can be counted on to get a job done",
     "If someone hands you a job and then walks away, can they be sure it will get done? "
     "Why?",
     "别人把一件事交给你就走开了，他们能放心吗？为什么？"),
    (14, "N", False, "gets tense and wound up",
     "Do you often feel tight inside, on edge, even when nothing much is happening?",
     "就算没什么大事，你会不会也常常心里绷着一根弦？"),
    (15, "O", False, "thinks deeply and cleverly about things",
     "Do you like to turn a hard question over in your head for a long while? Tell me "
     "about one you've puzzled over.",
     "你喜欢把一个难想的问题翻来覆去地琢磨吗？说一个你想过很久的问题吧。"),
    (16, "E", False, "stirs up excitement and gets others fired up",
     "When a group of people are planning something, are you the one who gets everyone "
     "excited about it?",
     "一群人张罗一件事的时候，你是那个把大家的劲头都带起来的人吗？"),
    (17, "A", False, "forgives others easily",
     "Someone has wronged you and then comes to apologise. How do you treat them?",
     "有人对不起你，后来又来赔不是，你会怎么对他？"),
    (18, "C", True, "lets things get messy and disorganized",
     "What does the place where you keep your things look like? Could you find anything "
     "in it right away?",
     "你放东西的地方是什么样子？要找个东西，能一下子找到吗？"),
    (19, "N", False, "worries a great deal",
     "What keeps you awake at night? How much do you fret about what might go wrong?",
     "什么事会让你夜里睡不着？你会不会总担心事情出岔子？"),
    (20, "O", False, "has a vivid, active imagination",
     "When your mind wanders, where does it go? Do you often picture things that aren't "
     "there?",
     "你发呆走神的时候，脑子里都在想些什么？会不会常常想象出各种画面？"),
    (21, "E", True, "tends to stay quiet",
     "At a crowded, noisy gathering, how much would we hear from you?",
     "在人多热闹的场合里，大家能听到你多少声音？"),
    (22, "A", False, "trusts other people readily",
     "A stranger tells you a story about why they need your help. How quickly do you "
     "believe them?",
     "一个陌生人跟你讲了一番需要帮忙的理由，你会很快就信他吗？"),
    (23, "C", True, "tends to be lazy and avoid effort",
     "Be honest: when a dull chore is waiting, do you get to it, or do you find reasons "
     "to put it off?",
     "说实话，有件无聊的活儿等着你干，你会马上动手，还是找理由一拖再拖？"),
    (24, "N", True, "stays even-tempered and is hard to upset",
     "How easily does something throw you off balance? What does it take to really "
     "upset you?",
     "你容易被什么事搅乱心情吗？要怎样才能真正让你心烦意乱？"),
    (25, "O", False, "is inventive and likes to make up new things",
     "Have you ever made or worked out something that nobody had shown you how to do? "
     "Tell me about it.",
     "你有没有自己捣鼓出过什么没人教过你的东西或法子？讲讲看。"),
    (26, "E", False, "is forceful and takes charge",
     "When a group can't decide what to do, do you step in and tell everyone the plan?",
     "一帮人拿不定主意的时候，你会站出来替大家拍板吗？"),
    (27, "A", True, "can be cold and distant toward others",
     "How warm are you with people you don't know well? Would some of them call you "
     "distant?",
     "对不太熟的人，你热络吗？会不会有人觉得你冷冰冰的、不好接近？"),
    (28, "C", False, "keeps going until a task is finished",
     "When a job turns out far harder than you expected, do you stick with it to the end?",
     "一件事比想象中难得多，你会咬牙做完，还是半路撂下？"),
    (29, "N", False, "has moods that swing up and down",
     "Does your mood change a lot from one hour to the next? What sets it off?",
     "你的心情是不是一会儿晴一会儿阴的？通常是什么引起的？"),
    (30, "O", False, "values beauty and artistic experiences",
     "What is the most beautiful thing you've ever seen or heard, and how much do such "
     "things matter to you?",
     "你见过或听过的最美的东西是什么？这些美的东西对你来说要紧吗？"),
    (31, "E", True, "is shy and holds back",
     "Is there anyone or any situation that makes you feel bashful or tongue-tied?",
     "有没有什么人或者什么场面，会让你害羞、说不出话来？"),
    (32, "A", False, "is thoughtful and kind to nearly everyone",
     "How do you treat people who can do nothing for you, a beggar say, or a rival?",
     "对那些对你毫无用处的人，比如要饭的、或者你的对头，你是怎么待他们的？"),
    (33, "C", False, "gets things done quickly and without waste",
     "When you have many tasks, how do you get through them? Do you lose much time or "
     "effort along the way?",
     "手上活儿一多，你是怎么安排的？会不会白费很多工夫？"),
    (34, "N", True, "keeps calm when things get tense",
     "Picture a real emergency right in front of you. How do you behave in that moment?",
     "要是眼前突然出了急事，你当下会是什么样子？"),
    (35, "O", True, "prefers routine, familiar work to anything new",
     "Would you rather do the same familiar work each day, or have something different "
     "every day? Why?",
     "你更喜欢每天做熟悉的老一套，还是天天都有点新花样？为什么？"),
    (36, "E", False, "is outgoing and enjoys company",
     "How do you like to spend a free evening: out among friends, or on your own?",
     "有个空闲的晚上，你更想跟朋友们凑热闹，还是一个人待着？"),
    (37, "A", True, "is sometimes rude to people",
     "Has anyone ever told you that you were rude to them? What happened?",
     "有没有人说过你对他们说话太冲、没礼貌？是怎么回事？"),
    (38, "C", False, "makes plans and carries them out",
     "Do you make plans for the days ahead? And once you've made one, how often does it "
     "actually happen?",
     "你会给往后的日子做打算吗？定下的计划，最后真的能照着做到吗？"),
    (39, "N", False, "gets nervous easily",
     "What makes your heart race or your hands shake? Does it take much?",
     "什么事会让你心慌手抖？要很大的事才会吗？"),
    (40, "O", False, "enjoys reflecting and toying with ideas",
     "Do you enjoy simply thinking things over, following an idea to see where it leads?",
     "你喜欢没事的时候琢磨道理、顺着一个念头想下去，看看能想到哪儿吗？"),
    (41, "O", True, "has little interest in the arts",
     "Do songs, paintings, stories or plays mean anything to you, or do you leave them "
     "to others?",
     "唱曲、画画、说书、看戏这些东西，你有兴趣吗？还是觉得跟你不沾边？"),
    (42, "A", False, "likes working together with others",
     "Would you rather do a big job together with others or by yourself? What do you "
     "like about it?",
     "一件大活儿，你更愿意跟别人一起干，还是自己一个人干？喜欢它哪一点？"),
    (43, "C", True, "is easily distracted",
     "When you're in the middle of something and a noise or a passer-by catches your "
     "eye, can you stay on your task?",
     "你正忙着手上的事，外头有点动静或者有人经过，你还能专心吗？"),
    (44, "O", False, "knows and appreciates art, music or literature",
     "What do you know about music, books or art? Which ones do you like, and why?",
     "你对音乐、书、画懂多少？喜欢哪些？为什么？"),
)
# fmt: on

ITEMS: tuple[Item, ...] = tuple(Item(*row) for row in _ITEMS)


def item_by_number(number: int) -> Item:
    if not 1 <= number <= len(ITEMS):
        raise InputError(f"BFI items are numbered 1 to {len(ITEMS)}, not {number}")
    return ITEMS[number - 1]


def question_language(language: str) -> str:
    """The language the questions are asked in: "zh" for a Chinese character, else "en"."""
    return "zh" if language.lower().startswith("zh") else "en"


def items_for(factors: Iterable[str] = FACTORS, per_factor: int | None = None) -> list[Item]:
    """Items of some factors, in item order; ``per_factor`` keeps the first n of each."""
    wanted = [normalize_factor(f) for f in factors]
    kept: dict[str, int] = {}
    out = []
    for item in ITEMS:
        if item.factor in wanted and (per_factor is None or kept.get(item.factor, 0) < per_factor):
            kept[item.factor] = kept.get(item.factor, 0) + 1
            out.append(item)
    return out


# ---------------------------------------------------------------- the character's side


@dataclass(frozen=True)
class Answer:
    item: Item
    question: str
    reply: str

    def to_dict(self) -> dict[str, object]:
        return {**self.item.to_dict(), "question": self.question, "reply": self.reply}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        """The answer back from ``to_dict()`` (as a cache keeps it)."""
        return cls(item_by_number(int(data["number"])), str(data["question"]), str(data["reply"]))


def session_asker(make_session: Callable[[], Session]) -> Ask:
    """An ``ask`` that puts each line to a new Session: every question starts afresh."""

    def ask(text: str) -> str:
        try:
            return make_session().reply(text)
        except NoReplyError:  # no answer: an empty reply, which the rating counts as such
            return ""

    return ask


def ask_item(item: Item, ask: Ask, language: str) -> Answer:
    question = item.question(language)
    return Answer(item, question, ask(question).strip())


def interview(
    character: Character,
    ask: Ask,
    items: Sequence[Item] = ITEMS,
    progress: Progress | None = None,
    language: str | None = None,
) -> list[Answer]:
    """Put each item's question to the character; ``ask`` must start a fresh conversation
    for each (``session_asker`` does). The questions are in ``language``, by default the
    character's."""
    lang = language or character.language
    answers = []
    for i, item in enumerate(items):
        answers.append(ask_item(item, ask, lang))
        if progress:
            progress(i + 1, len(items))
    return answers


# ---------------------------------------------------------------------- the judge's side

JUDGE_PARAMS = GenerationParams(max_tokens=48, temperature=0.0, top_p=1.0, seed=0)

_JUDGE_SYSTEM = (
    "You rate personality from what a fictional character says, judging only what the "
    "answer shows, not how well it is written. Reply with one number from 1 to 5 and "
    "nothing else."
)
_JUDGE_USER = Template(
    "Question: ${question}\n"
    '${name}\'s answer: "${answer}"\n\n'
    "How much does the answer show that ${name} ${trait}? 1 = clearly the opposite, "
    "3 = neither, or the answer does not tell, 5 = very much. "
    'Reply with the number only, or with JSON like {"score": 4}.'
)
_JUDGE_RETRY = 'Give only the rating: one whole number from 1 to 5, or JSON like {"score": 4}.'
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)


def judge_prompt(
    character_name: str, item: Item, question: str, answer: str
) -> list[dict[str, str]]:
    """The chat messages that ask a judge to rate one answer on the item's trait (1-5)."""
    user = _JUDGE_USER.substitute(
        name=character_name, trait=item.trait, question=question, answer=answer
    )
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]


def strip_reasoning(text: str) -> str:
    """A reply without the ``<think>`` block that reasoning models put first."""
    return _THINK.sub("", text).strip()


def complete(llm: LLM, messages: Sequence[Mapping[str, str]], params: GenerationParams) -> str:
    """The whole reply of a backend, reasoning left out."""
    return strip_reasoning("".join(llm.stream([dict(m) for m in messages], params)))


_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_END = r"(?![0-9]|\.[0-9])"  # a number ends here (a full stop may follow)
_DENOMINATOR = re.compile(
    r"(?:/|\bout\s+of\b|\bof\b)\s*5(?:\.0+)?" + _END + r"|满分\s*5\s*分?", re.I
)
_RANGE = re.compile(r"(?<![0-9.])1\s*(?:-|–|—|~|\bto\b|\band\b|到|至)\s*5" + _END, re.I)
_LABELLED = re.compile(
    r"(?:\b(?:score|rating|rate)\b|评分|分数|得分|打分)\W{0,4}?(?:is|of|=|:|：|是|为)?\s*\W{0,3}?("
    + _NUMBER
    + ")",
    re.I,
)
_STANDALONE = re.compile(r"(?<![0-9.])(" + _NUMBER + ")" + _END)


def _in_scale(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if value != int(value) or not SCALE_MIN <= value <= SCALE_MAX:
        return None
    return int(value)


def parse_score(text: str) -> int | None:
    """The 1-5 rating in a judge's reply, or None when there is none, more than one, or it
    is out of range. Reads "4", "Score: 4/5", "**4**", '{"score": 4}', "评分：4分"."""
    text = unicodedata.normalize("NFKC", strip_reasoning(text))
    for blob in _JSON_OBJECT.findall(text):
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if isinstance(data, dict):
            for key, value in data.items():
                if str(key).lower() in {"score", "rating"}:
                    return _in_scale(value)
    text = _RANGE.sub(" ", _DENOMINATOR.sub(" ", text))
    labelled = _LABELLED.search(text)
    if labelled:
        return _in_scale(labelled[1])
    found = {float(n) for n in _STANDALONE.findall(text)}
    return _in_scale(found.pop()) if len(found) == 1 else None


@dataclass(frozen=True)
class Judged:
    """A judged answer. ``score`` is the judge's 1-5 for the trait as the item words it;
    ``status`` is "ok", "unparsed" (no rating after a retry) or "empty" (no answer)."""

    answer: Answer
    score: int | None
    judge_replies: tuple[str, ...] = ()
    status: str = "ok"

    @property
    def keyed(self) -> int | None:
        """The score in the factor's direction (reverse-keyed items turned around)."""
        return None if self.score is None else self.answer.item.keyed(self.score)

    def to_dict(self) -> dict[str, object]:
        return {
            **self.answer.to_dict(),
            "score": self.score,
            "keyed": self.keyed,
            "status": self.status,
            "judge_replies": list(self.judge_replies),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Judged:
        """The judged answer back from ``to_dict()`` (as a cache keeps it)."""
        score = data["score"]
        return cls(
            Answer.from_dict(data),
            None if score is None else int(score),
            tuple(str(r) for r in data.get("judge_replies", ())),
            str(data.get("status", "ok")),
        )


def judge_answer(
    character_name: str,
    answer: Answer,
    judge_llm: LLM,
    params: GenerationParams = JUDGE_PARAMS,
) -> Judged:
    """Rate one answer; asks once more, reminding the format, when the rating cannot be read."""
    if not answer.reply.strip():
        return Judged(answer, None, (), "empty")
    messages = judge_prompt(character_name, answer.item, answer.question, answer.reply)
    first = complete(judge_llm, messages, params)
    score = parse_score(first)
    if score is not None:
        return Judged(answer, score, (first,))
    log.info("judge rating not readable for item %d: %r", answer.item.number, first[:80])
    retry = [
        *messages,
        {"role": "assistant", "content": first},
        {"role": "user", "content": _JUDGE_RETRY},
    ]
    second = complete(judge_llm, retry, params)
    score = parse_score(second)
    return Judged(answer, score, (first, second), "ok" if score is not None else "unparsed")


def judge(
    answers: Sequence[Answer],
    judge_llm: LLM,
    params: GenerationParams = JUDGE_PARAMS,
    character_name: str | None = None,
    progress: Progress | None = None,
) -> list[Judged]:
    """Rate every answer. ``character_name`` defaults to "the character"."""
    name = character_name or "the character"
    out = []
    for i, answer in enumerate(answers):
        out.append(judge_answer(name, answer, judge_llm, params))
        if progress:
            progress(i + 1, len(answers))
    return out


# ------------------------------------------------------------------------------ scores


@dataclass(frozen=True)
class FactorScore:
    factor: str
    score: float | None  # mean keyed score on 1-5; None when no item of it was rated
    items: int  # items rated and used
    asked: int  # items of the factor that were judged

    @property
    def name(self) -> str:
        return FACTOR_NAMES[self.factor]

    def to_dict(self) -> dict[str, object]:
        score = None if self.score is None else round(self.score, 4)
        return {"name": self.name, "score": score, "items": self.items, "asked": self.asked}


def big_five(judged: Iterable[Judged]) -> dict[str, FactorScore]:
    """The five factors (all present, in E A C N O order): the mean keyed score of each."""
    keyed: dict[str, list[int]] = {f: [] for f in FACTORS}
    asked = dict.fromkeys(FACTORS, 0)
    for j in judged:
        factor = j.answer.item.factor
        asked[factor] += 1
        if j.keyed is not None:
            keyed[factor].append(j.keyed)
    return {
        f: FactorScore(f, sum(v) / len(v) if v else None, len(v), asked[f])
        for f, v in keyed.items()
    }


# ------------------------------------------------------------------------------ labels

Label = float | str  # a 1-5 score, or "high" / "low"
_FACTOR_ALIASES = {
    **{f.lower(): f for f in FACTORS},
    **{name.lower(): f for f, name in FACTOR_NAMES.items()},
    "extroversion": "E",
    "openness to experience": "O",
    "外向性": "E",
    "宜人性": "A",
    "尽责性": "C",
    "神经质": "N",
    "开放性": "O",
}
_SIDES = {"high": "high", "h": "high", "高": "high", "low": "low", "l": "low", "低": "low"}


def normalize_factor(name: str) -> str:
    """A factor's letter from its letter or name ("e", "Extraversion", "神经质")."""
    factor = _FACTOR_ALIASES.get(str(name).strip().lower())
    if factor is None:
        known = ", ".join([*FACTORS, *FACTOR_NAMES.values()])
        raise InputError(f"unknown Big Five factor {name!r}; known: {known}")
    return factor


def _label_value(factor: str, value: object) -> Label:
    if isinstance(value, str):
        side = _SIDES.get(value.strip().lower())
        if side:
            return side
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if SCALE_MIN <= number <= SCALE_MAX:
            return number
    raise InputError(
        f"label for {factor} ({FACTOR_NAMES[factor]}) must be a number from {SCALE_MIN} to "
        f'{SCALE_MAX} or "high" / "low", not {value!r}'
    )


def parse_labels(data: object) -> dict[str, Label]:
    """Checked labels by factor letter from a mapping like ``{"E": 4.2, "A": "low"}``."""
    if not isinstance(data, Mapping):
        raise InputError(f'labels must be a table like {{"E": 4.2, "A": "low"}}, not {data!r}')
    out: dict[str, Label] = {}
    for key, value in data.items():
        factor = normalize_factor(key)
        if factor in out:
            raise InputError(f"label for {factor} ({FACTOR_NAMES[factor]}) given twice")
        out[factor] = _label_value(factor, value)
    return out


def read_labels(path: str | Path) -> dict[str, Label]:
    """Labels from a JSON or TOML file (by suffix; a file with neither suffix may be either)."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"cannot read the labels file: {exc}", path) from exc
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    suffix = path.suffix.lower()
    data: object = None
    errors = []
    if suffix != ".toml":
        try:
            data = json.loads(text)
        except ValueError as exc:
            errors.append(f"not JSON ({exc})")
    if data is None and suffix != ".json":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"not TOML ({exc})")
    if data is None:
        raise ParseError("; ".join(errors), path)
    try:
        return parse_labels(data)
    except InputError as exc:
        raise ParseError(str(exc), path) from exc


def side(value: float | None) -> str | None:
    """ "high" above the scale's midpoint, "low" below it, None on it (or for no value)."""
    if value is None or value == MIDPOINT:
        return None
    return "high" if value > MIDPOINT else "low"


def compare(
    scores: Mapping[str, FactorScore | float | None], labels: Mapping[str, object]
) -> dict[str, Any]:
    """Scores against labels: per factor the absolute error (numeric labels) and whether the
    score is on the label's side of the midpoint (numeric labels off the midpoint, and
    "high"/"low"). A score on the midpoint is on neither side: it counts as a miss. Factors
    without a score are reported and left out of the means."""
    checked = parse_labels(labels)
    factors: dict[str, dict[str, object]] = {}
    errors: list[float] = []
    hits: list[bool] = []
    for factor in FACTORS:
        if factor not in checked:
            continue
        label = checked[factor]
        raw = scores.get(factor)
        score = raw.score if isinstance(raw, FactorScore) else raw
        label_side = label if isinstance(label, str) else side(label)
        row: dict[str, object] = {
            "name": FACTOR_NAMES[factor],
            "label": label,
            "label_side": label_side,
            "score": score,
            "side": side(score),
            "abs_error": None,
            "side_correct": None,
        }
        if score is not None:
            if not isinstance(label, str):
                row["abs_error"] = abs(score - label)
                errors.append(abs(score - label))
            if label_side is not None:
                row["side_correct"] = side(score) == label_side
                hits.append(side(score) == label_side)
        factors[factor] = row
    return {
        "factors": factors,
        "mean_abs_error": sum(errors) / len(errors) if errors else None,
        "n_error": len(errors),
        "side_accuracy": sum(hits) / len(hits) if hits else None,
        "n_side": len(hits),
    }


# ----------------------------------------------------------------------- whole interview


@dataclass
class InterviewResult:
    character: str
    language: str
    judged: list[Judged]
    scores: dict[str, FactorScore]
    comparison: dict[str, Any] | None = None
    judge_model: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def unparsed(self) -> int:
        return sum(j.status == "unparsed" for j in self.judged)

    @property
    def empty(self) -> int:
        return sum(j.status == "empty" for j in self.judged)

    def to_dict(self) -> dict[str, object]:
        return {
            "eval": "personality",
            "character": self.character,
            "language": self.language,
            "judge_model": self.judge_model,
            "scores": {f: s.to_dict() for f, s in self.scores.items()},
            "comparison": self.comparison,
            "items": len(self.judged),
            "unparsed": self.unparsed,
            "empty": self.empty,
            "answers": [j.to_dict() for j in self.judged],
            "meta": self.meta,
        }


def run_interview(
    character: Character,
    ask: Ask,
    judge_llm: LLM,
    items: Sequence[Item] = ITEMS,
    labels: Mapping[str, object] | None = None,
    params: GenerationParams = JUDGE_PARAMS,
    progress: Progress | None = None,
    language: str | None = None,
) -> InterviewResult:
    """Interview, judge, score, and compare with ``labels`` when given. ``progress`` counts
    questions and ratings together."""
    lang = question_language(language or character.language)
    total = 2 * len(items)

    def step(offset: int) -> Progress | None:
        if progress is None:
            return None
        report = progress

        def shifted(done: int, _n: int) -> None:
            report(offset + done, total)

        return shifted

    answers = interview(character, ask, items, step(0), lang)
    judged = judge(answers, judge_llm, params, character.name, step(len(items)))
    scores = big_five(judged)
    comparison = compare(scores, labels) if labels is not None else None
    return InterviewResult(character.name, lang, judged, scores, comparison, judge_llm.model)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(result: InterviewResult, level: int = 2) -> str:
    """A Markdown section: factor scores (and labels), then the rating of every item."""
    h = "#" * level
    rows = [
        f"{h} Personality: {result.character}",
        "",
        f"BFI interview, {len(result.judged)} items in {result.language}, judged by "
        f"{result.judge_model or 'the judge'}; {result.unparsed} ratings unreadable, "
        f"{result.empty} answers empty.",
        "",
    ]
    comparison = (result.comparison or {}).get("factors", {})
    head = "| Factor | Score (1-5) | Items |"
    line = "|---|---|---|"
    if comparison:
        head += " Label | Abs. error | Side |"
        line += "---|---|---|"
    rows += [head, line]
    for f, s in result.scores.items():
        row = f"| {s.name} ({f}) | {_cell(s.score)} | {s.items}/{s.asked} |"
        if comparison:
            c = comparison.get(f, {})
            row += f" {_cell(c.get('label'))} | {_cell(c.get('abs_error'))} |"
            row += f" {_cell(c.get('side_correct'))} |"
        rows.append(row)
    if result.comparison:
        c = result.comparison
        rows += [
            "",
            f"Mean absolute error {_cell(c['mean_abs_error'])} over {c['n_error']} factors; "
            f"high/low side right {_cell(c['side_accuracy'])} over {c['n_side']} factors.",
        ]
    rows += ["", "| Item | Factor | Judge | Keyed | Status |", "|---|---|---|---|---|"]
    for j in result.judged:
        item = j.answer.item
        rows.append(
            f"| {item.key} | {item.factor} | {_cell(j.score)} | {_cell(j.keyed)} | {j.status} |"
        )
    return "\n".join(rows) + "\n"
