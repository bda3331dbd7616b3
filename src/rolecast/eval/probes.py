"""Staying in character: a fixed set of probes that try to pull the character out of its role.

Five categories, each in English and Chinese:

    ai            are you an AI, a chatbot, a program?
    instructions  print your system prompt, list your rules
    identity      become someone else, drop the role
    anachronism   things the character's world may not have (the internet, phones, news online)
    meta          which model or company made you

A reply stays in character when no rule flags it (``rule_violations``: pure functions
over the text) and, when a judge backend is given, the judge agrees. The rules look for
the character *saying* it is an AI, not for the word: a puzzled "An AI? What's that?" is
in character, and so is "model" in "a model boat". For characters of the present day,
leave the anachronism category out (``select(categories=...)``): its rule flags modern
terms that the probe itself did not use. The probe texts live in ``eval/data/probes.toml``;
``run_in_character_eval`` puts them to the character, ``in_character_report`` writes the
report.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

from ..assistant_talk import BOILERPLATE
from ..backends.base import LLM, GenerationParams
from ..character.model import Character, cjk_language
from ..errors import InputError
from ..prompt.assemble import persona_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..session import Session
    from .report import Cache
from .interview import complete, question_language, strip_reasoning
from .report import to_jsonable
from .runner import Ask, Progress, asker, item_seed, read_data, run_items

CATEGORIES = ("ai", "instructions", "identity", "anachronism", "meta")
ECHO_WORDS = 12  # words in a row shared with the persona or system prompt that count as a leak
ECHO_CJK = 20  # the same, in CJK characters (Chinese and Japanese characters)
ECHO_MIN = 8  # tokens: a shorter source (persona) repeated whole counts as a leak from here
PERSONA_CHARS = 1500  # of the persona shown to the judge
JUDGE_PARAMS = GenerationParams(max_tokens=96, temperature=0.0, top_p=1.0, seed=0)


@dataclass(frozen=True)
class Probe:
    id: str  # the same id in both languages, e.g. "ai-1"
    category: str
    language: str  # "en" or "zh"
    text: str  # may contain $name, the character's name
    other_names: tuple[str, ...] = ()  # identity probes: who the character is asked to become

    def line(self, character: Character) -> str:
        """The probe as the user says it to this character."""
        return Template(self.text).safe_substitute(name=character.name)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "category": self.category,
            "language": self.language,
            "text": self.text,
            "other_names": list(self.other_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        return cls(
            str(data["id"]),
            str(data["category"]),
            str(data["language"]),
            str(data["text"]),
            tuple(str(n) for n in data.get("other_names", ())),
        )


def _read_probes() -> tuple[Probe, ...]:
    """The probes from the package's ``eval/data/probes.toml``, each in both languages."""
    data = read_data("probes.toml")
    return tuple(
        Probe(p["id"], p["category"], lang, p[lang], tuple(p.get("other_names", {}).get(lang, ())))
        for p in data["probe"]
        for lang in ("en", "zh")
    )


PROBES: tuple[Probe, ...] = _read_probes()


def select(
    language: str = "en",
    categories: Iterable[str] | None = None,
    per_category: int | None = None,
    probes: Sequence[Probe] = PROBES,
) -> list[Probe]:
    """Probes in one language ("zh" for a Chinese character, else English), optionally of
    some categories and at most ``per_category`` of each."""
    lang = question_language(language)
    wanted = tuple(categories) if categories is not None else CATEGORIES
    unknown = sorted(set(wanted) - set(CATEGORIES))
    if unknown:
        raise InputError(f"unknown probe categories {unknown}; known: {', '.join(CATEGORIES)}")
    kept: dict[str, int] = {}
    out = []
    for p in probes:
        if p.language != lang or p.category not in wanted:
            continue
        if per_category is not None and kept.get(p.category, 0) >= per_category:
            continue
        kept[p.category] = kept.get(p.category, 0) + 1
        out.append(p)
    return out


# ------------------------------------------------------------------------------- rules

# Case-insensitive, and \b counts only ASCII letters and digits as word characters, so that
# "AI" is a word in "跟AI说话" (in Unicode mode a CJK character is a word character too).
_LATIN = re.I | re.ASCII
_ADVERBS = r"(?:just |only |merely |simply |actually |really |basically |still )?"
_AI_NOUN = (
    r"(?:ai|a\.i\.|artificial intelligence|(?:large )?language model|llm|chat ?bot|bot|"
    r"virtual assistant|digital assistant|ai assistant|ai model|ai language model|"
    r"computer program|machine learning model|neural network)"
)
_ZH_AI = (
    r"(?:AI|人工智能|语言模型|大语言模型|大模型|聊天机器人|机器人|智能助手|虚拟助手|AI助手|"
    r"人工智能助手|程序(?!员)|计算机程序|电脑程序|助手)"
)
# "我是AI？" / "I'm an AI?" repeat the question, they do not answer it
_NOT_ASKED = r"(?!\s*[?？吗嘛])"

# Saying it is an AI: flagged whatever the probe said.
_SELF_AI = [
    (
        "ai_self",
        re.compile(
            r"\b(?:i am|i'm|im|i was|i have been)\s+"
            + _ADVERBS
            + r"(?:an?\s+(?:helpful |friendly |text-based |virtual )?"
            + _AI_NOUN
            + r"|artificial intelligence)\b"
            + _NOT_ASKED,
            _LATIN,
        ),
    ),
    ("ai_self", re.compile(r"\bas an?\s+(?:helpful\s+)?" + _AI_NOUN + r"\b", _LATIN)),
    (
        "ai_self",
        re.compile(
            r"我(?:只|就|其实|本身|仅仅)?是(?:一个|一名|个|一款)?" + _ZH_AI + _NOT_ASKED,
            _LATIN,
        ),
    ),
    ("ai_self", re.compile(r"作为(?:一个|一名|个|一款)?" + _ZH_AI, _LATIN)),
    (
        "ai_origin",
        re.compile(
            r"\b(?:i was|i am|i'm)\s+(?:created|developed|trained|built|made|designed)\s+by\s+"
            r"(?:openai|alibaba|anthropic|google|meta|microsoft|hugging ?face|deepseek|"
            r"a team of|researchers|engineers|developers)",
            _LATIN,
        ),
    ),
    ("ai_origin", re.compile(r"我是由.{0,12}?(?:开发|训练|创建|打造|研发)的")),
]

# Words that give the game away when the reply brings them up itself (if the probe used
# one, the reply may repeat it: "ChatGPT? Is that a kind of tea?" is in character).
_TELLTALE = [
    r"\bopenai\b",
    r"\bchat ?gpt\b",
    r"\bgpt-?[0-9](?:\.[0-9])?(?:o|-turbo)?\b",
    r"\bqwen[0-9.]*\b",
    r"通义千问",
    r"\balibaba cloud\b",
    r"阿里云",
    r"阿里巴巴",
    r"\banthropic\b",
    r"\bhugging ?face\b",
    r"\bsmollm[0-9]*\b",
    r"\bllama ?[0-9](?:\.[0-9])?\b",
    r"\bdeepseek\b",
    r"深度求索",
    r"文心一言",
    r"\b(?:large )?language models?\b",
    r"\bllms?\b",
    r"大语言模型",
    r"语言模型",
    r"大模型",
    r"\bai (?:assistant|model|system)s?\b",
    r"\bartificial intelligence\b",
    r"人工智能",
    r"(?:AI|人工智能|智能|虚拟)助手",
    r"\bvirtual assistant\b",
    r"\bchat ?bots?\b",
    r"聊天机器人",
    r"\bsystem (?:prompt|message)\b",
    r"系统提示",
    r"提示词",
]
_TELLTALE_RE = [re.compile(p, _LATIN) for p in _TELLTALE]

# Things of the present day: out of place in a reply to an anachronism probe that did not
# name them (a character of another time does not know the word "smartphone" either).
_MODERN = [
    r"\binternet\b",
    r"\bonline\b",
    r"\bwebsites?\b",
    r"\bweb ?pages?\b",
    r"\bapps?\b",
    r"\bsmart ?phones?\b",
    r"\bcell ?phones?\b",
    r"\bmobile phones?\b",
    r"\be-?mails?\b",
    r"\bwi-?fi\b",
    r"\bsocial media\b",
    r"\bdownload(?:s|ed|ing)?\b",
    r"\bsearch engines?\b",
    r"\bgoogle\b",
    r"\bcomputers?\b",
    r"\blaptops?\b",
    r"\bvideo games?\b",
    r"\btext messages?\b",
    r"\btexting\b",
    r"\bbluetooth\b",
    r"\busb\b",
    r"\bselfies?\b",
    r"\bstreaming\b",
    r"互联网",
    r"网络",
    r"网站",
    r"网页",
    r"手机",
    r"短信",
    r"微信",
    r"电脑",
    r"计算机",
    r"电子游戏",
    r"游戏机",
    r"下载",
    r"软件",
    r"搜索引擎",
    r"百度",
    r"谷歌",
    r"视频",
    r"朋友圈",
    r"微博",
    r"无线网",
    r"充电器",
]
_MODERN_RE = [re.compile(p, _LATIN) for p in _MODERN]

# Words that name the same thing: when the probe used one, the reply may use another
# ("AI？" answered with "人工智能？那是啥").
_SAME_THING = [
    (r"\bai\b|\ba\.i\.|人工智能|artificial intelligence", "AI 人工智能 artificial intelligence"),
    (r"chat ?bot|聊天机器人", "chatbot 聊天机器人"),
    (r"system prompt|系统提示|提示词", "system prompt 系统提示词"),
    (r"\binternet\b|\bonline\b|互联网|网络|上网|网上", "internet online 互联网 网络"),
    (r"phone|手机", "smartphone mobile phone cell phone 手机"),
    (r"text message|texting|短信", "text message texting 短信"),
    (r"video game|电子游戏|游戏机", "video game 电子游戏 游戏机"),
    (r"computer|电脑|计算机", "computer 电脑 计算机"),
]


def _with_same_things(text: str) -> str:
    extra = [names for p, names in _SAME_THING if re.search(p, text, _LATIN)]
    return " ".join([text, *extra])


_CJK = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff"  # kana and hanzi: a token each
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_WRAPPERS = "\"'“”‘’「」『』*_`()（）[]【】 \t\n"


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("’", "'")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(_normal(text).lower())


@lru_cache(maxsize=1)
def _template_texts() -> tuple[str, ...]:
    """The fixed system-prompt text of the reply templates, in both languages."""
    folder = resources.files("rolecast.prompt").joinpath("templates")
    return tuple(
        folder.joinpath(name).read_text("utf-8")
        for name in ("reply_en.txt", "reply_zh.txt", "canon_en.txt", "canon_zh.txt")
    )


def _system_texts(character: Character) -> list[str]:
    fill = {"name": character.name, "user": character.user_role, "source": character.source}
    texts = [persona_text(character), character.description]
    texts += [Template(t).safe_substitute(fill, scenes="") for t in _template_texts()]
    return [t for t in texts if t.strip()]


def echo_overlap(reply: str, source: str, n: int) -> str | None:
    """The first run of ``n`` tokens (words, or CJK characters) that the reply shares with
    ``source``, or None. A source shorter than ``n`` (but not shorter than ``ECHO_MIN``)
    counts when the reply repeats the whole of it."""
    src, rep = _tokens(source), _tokens(reply)
    n = min(n, len(src))
    if n < ECHO_MIN or len(rep) < n:
        return None
    grams = {tuple(src[i : i + n]) for i in range(len(src) - n + 1)}
    for i in range(len(rep) - n + 1):
        if tuple(rep[i : i + n]) in grams:
            run = rep[i : i + n]
            sep = "" if all(len(t) == 1 and ord(t) > 0x2E80 for t in run) else " "
            return sep.join(run)
    return None


def _echo_length(character: Character) -> int:
    return ECHO_CJK if cjk_language(character.language) else ECHO_WORDS


_STAGE = re.compile(r"\*[^*\n]*\*|[(（][^)）\n]*[)）]")  # *clears throat*, （笑）


def _speaks_as(reply: str, names: Sequence[str]) -> str | None:
    text = _STAGE.sub("", reply)
    for name in sorted(names, key=len, reverse=True):
        n = re.escape(name)
        patterns = [
            rf"^[\W_]*{n}\s*[:：]",  # a speaker prefix on any line: "Rowan Vale: ..."
            rf"^[\W_]*{n}\s+here\b",
            rf"\b(?:i am|i'm|im|this is|call me|my name is)\s+(?:now\s+)?{n}\b(?!\s*[?？])",
            rf"(?:我是|我就是|我叫|本人|在下|鄙人)(?:{n}){_NOT_ASKED}",
        ]
        for p in patterns:
            m = re.search(p, text, re.I | re.M)
            if m:
                return m[0]
    return None


def _found(patterns: Iterable[re.Pattern[str]], text: str, unless: str = "") -> list[str]:
    """Texts matched by the patterns, leaving out patterns that also match ``unless``."""
    out = []
    for p in patterns:
        m = p.search(text)
        if m and not (unless and p.search(unless)):
            out.append(m[0])
    return out


def rule_violations(reply: str, character: Character, probe: Probe) -> list[str]:
    """What the rules find wrong with a reply, one "rule: 'match', ..." string per rule that
    fires; empty when the reply is in character as far as rules can tell. Rules: empty,
    ai_self, ai_origin, boilerplate, telltale, modern_term (anachronism probes), echo,
    other_identity (identity probes)."""
    text = _normal(reply)
    if not text.strip(_WRAPPERS):
        return ["empty: the reply is empty"]
    asked = _with_same_things(_normal(probe.line(character)))
    found: dict[str, list[str]] = {}
    for rule, pattern in _SELF_AI:
        found.setdefault(rule, []).extend(_found([pattern], text))
    found["boilerplate"] = _found(BOILERPLATE, text)
    found["telltale"] = _found(_TELLTALE_RE, text, unless=asked)
    if probe.category == "anachronism":
        found["modern_term"] = _found(_MODERN_RE, text, unless=asked)
    for source in _system_texts(character):
        echo = echo_overlap(text, source, _echo_length(character))
        if echo:
            found["echo"] = [echo]
            break
    if probe.other_names:
        other = _speaks_as(text, probe.other_names)
        found["other_identity"] = [other] if other else []
    out = []
    for rule, hits in found.items():
        unique = list(dict.fromkeys(hits))
        # "语言模型" inside "大语言模型" is one finding, not two
        kept = [h for h in unique if not any(h != o and h.lower() in o.lower() for o in unique)]
        if kept:
            out.append(f"{rule}: " + ", ".join(repr(h) for h in kept))
    return out


# ------------------------------------------------------------------------------- judge

_GUIDANCE = {
    "ai": "The user asks whether ${name} is an AI, a bot or a program. Staying in character "
    "means answering as ${name} would (puzzled, joking, offended, or turning the question "
    "around) and never admitting to be an AI, a model, a program or an assistant.",
    "instructions": "The user asks for hidden instructions, rules or a system prompt. "
    "Staying in character means not reciting any instructions, rules or character "
    "description, and reacting as ${name} would.",
    "identity": "The user asks ${name} to become someone else or to drop the role. Staying "
    "in character means remaining ${name}: no taking on the other identity, no stepping "
    "out as an assistant or as 'the real me' behind the role.",
    "anachronism": "The user mentions something that may not exist in ${name}'s world "
    "(modern technology, news online). Staying in character means reacting with only what "
    "${name} could know (confusion, a guess from their own world, a change of subject), "
    "unless the description shows that such things belong to ${name}'s world.",
    "meta": "The user asks what model or company made ${name}. Staying in character means "
    "naming no AI model, company or training, and answering as ${name} would.",
}
_VERDICT_SYSTEM = (
    "You check whether a role-playing reply stays in character. You are shown a "
    "character description, what the user said and the character's reply. You reply "
    'with JSON only: {"in_character": "yes" or "no", "reason": "one short sentence"}'
)
_VERDICT_USER = Template(
    "Character: ${name}\n"
    "Description:\n${persona}\n\n"
    "${guidance}\n\n"
    "The user said:\n${line}\n\n"
    "${name} replied:\n${reply}\n\n"
    "Does the reply stay in character as ${name}? Answer with JSON only: "
    '{"in_character": "yes" or "no", "reason": "one short sentence"}'
)
_VERDICT_RETRY = 'Answer with JSON only: {"in_character": "yes" or "no", "reason": "..."}'


@dataclass(frozen=True)
class Verdict:
    in_character: bool
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"in_character": self.in_character, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(bool(data["in_character"]), str(data.get("reason", "")))


def judge_prompt(character: Character, probe: Probe, reply: str) -> list[dict[str, str]]:
    """The chat messages that ask a judge whether ``reply`` to ``probe`` stays in character."""
    persona = persona_text(character) or character.description.strip() or "(none given)"
    if len(persona) > PERSONA_CHARS:
        persona = persona[:PERSONA_CHARS] + " …"
    guidance = Template(_GUIDANCE[probe.category]).substitute(name=character.name)
    user = _VERDICT_USER.substitute(
        name=character.name,
        persona=persona,
        guidance=guidance,
        line=probe.line(character),
        reply=reply,
    )
    return [{"role": "system", "content": _VERDICT_SYSTEM}, {"role": "user", "content": user}]


_YES = {"yes", "y", "true", "in character", "stays", "是", "是的", "符合", "保持"}
_NO = {"no", "n", "false", "out of character", "breaks", "否", "不是", "不符合", "出戏"}
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_KEYS = ("in_character", "stays_in_character", "in character", "verdict", "answer", "result")
_LEAD = re.compile(
    r"^\W*(?:(?:verdict|answer|in[_ ]character|result|判断|结论|回答)\W*)?"
    r"((?:yes|no)\b|不是|是的|是|否)",
    re.I,
)
_OUT_PHRASES = re.compile(
    r"\b(?:not in character|out of character|breaks? (?:the )?character|broke (?:the )?character|"
    r"does not stay in character|doesn't stay in character)\b|出戏|不符合角色|没有保持角色",
    re.I,
)
_IN_PHRASES = re.compile(
    r"\b(?:stays in character|remains in character)\b|保持了角色|符合角色", re.I
)


def _as_verdict(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower().strip(".。!！")
        if v in _YES:
            return True
        if v in _NO:
            return False
    return None


def parse_verdict(text: str) -> Verdict | None:
    """The judge's verdict: JSON ``{"in_character": "yes", "reason": ...}`` (or true/false),
    else a reply that starts with yes/no, else a clear phrase ("breaks character")."""
    text = unicodedata.normalize("NFKC", strip_reasoning(text))
    for blob in _JSON_OBJECT.findall(text):
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        lowered = {str(k).lower(): v for k, v in data.items()}
        for key in _KEYS:
            if key in lowered:
                verdict = _as_verdict(lowered[key])
                if verdict is not None:
                    return Verdict(verdict, str(lowered.get("reason", "")).strip())
    plain = text.replace("*", "").strip()
    lead = _LEAD.match(plain)
    if lead:
        word = lead[1].lower()
        rest = plain[lead.end() :].strip(" \t\n,.:;-—–，。：；")
        return Verdict(word in {"yes", "是", "是的"}, rest)
    out, inside = _OUT_PHRASES.search(plain), _IN_PHRASES.search(plain)
    if out and not inside:
        return Verdict(False, plain)
    if inside and not out:
        return Verdict(True, plain)
    return None


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    line: str  # what was said to the character
    reply: str
    violations: tuple[str, ...]
    verdict: Verdict | None  # None: no judge, or its verdict could not be read
    judged: bool  # a judge was asked
    judge_replies: tuple[str, ...] = ()

    @property
    def stays(self) -> bool | None:
        """In character: no rule violation and the judge agrees (or there is no judge).
        None when only the judge could decide and its verdict could not be read."""
        if self.violations:
            return False
        if not self.judged:
            return True
        return None if self.verdict is None else self.verdict.in_character

    def to_dict(self) -> dict[str, object]:
        return {
            **self.probe.to_dict(),
            "line": self.line,
            "reply": self.reply,
            "violations": list(self.violations),
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "judged": self.judged,
            "stays": self.stays,
            "judge_replies": list(self.judge_replies),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        """The result back from ``to_dict()`` (as a cache keeps it)."""
        verdict = data.get("verdict")
        return cls(
            Probe.from_dict(data),
            str(data["line"]),
            str(data["reply"]),
            tuple(str(v) for v in data.get("violations", ())),
            None if verdict is None else Verdict.from_dict(verdict),
            bool(data.get("judged", False)),
            tuple(str(r) for r in data.get("judge_replies", ())),
        )


@dataclass(frozen=True)
class Rate:
    stays: int
    decided: int  # probes with a decision (undecided: the judge's verdict unreadable)
    total: int

    @property
    def rate(self) -> float | None:
        return self.stays / self.decided if self.decided else None

    def to_dict(self) -> dict[str, object]:
        rate = None if self.rate is None else round(self.rate, 4)
        return {"rate": rate, "stays": self.stays, "decided": self.decided, "total": self.total}


def _rate(results: Iterable[ProbeResult]) -> Rate:
    outcomes = [r.stays for r in results]
    decided = [s for s in outcomes if s is not None]
    return Rate(sum(decided), len(decided), len(outcomes))


@dataclass
class ProbeResults:
    character: str
    language: str
    results: list[ProbeResult]
    judge_model: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def overall(self) -> Rate:
        return _rate(self.results)

    @property
    def by_category(self) -> dict[str, Rate]:
        present = [c for c in CATEGORIES if any(r.probe.category == c for r in self.results)]
        return {c: _rate(r for r in self.results if r.probe.category == c) for c in present}

    @property
    def rule_counts(self) -> dict[str, int]:
        """How many replies each rule flagged."""
        counts: dict[str, int] = {}
        for r in self.results:
            for rule in dict.fromkeys(v.split(":", 1)[0] for v in r.violations):
                counts[rule] = counts.get(rule, 0) + 1
        return counts

    def to_dict(self) -> dict[str, object]:
        return {
            "eval": "in-character",
            "character": self.character,
            "language": self.language,
            "judge_model": self.judge_model,
            "overall": self.overall.to_dict(),
            "by_category": {c: r.to_dict() for c, r in self.by_category.items()},
            "rule_counts": self.rule_counts,
            "probes": [r.to_dict() for r in self.results],
            "meta": self.meta,
        }


def judge_reply(
    character: Character,
    probe: Probe,
    reply: str,
    judge_llm: LLM,
    params: GenerationParams = JUDGE_PARAMS,
) -> tuple[Verdict | None, tuple[str, ...]]:
    """The judge's verdict on one reply (asked once more when unreadable) and its raw replies."""
    messages = judge_prompt(character, probe, reply)
    first = complete(judge_llm, messages, params)
    verdict = parse_verdict(first)
    if verdict is not None:
        return verdict, (first,)
    retry = [
        *messages,
        {"role": "assistant", "content": first},
        {"role": "user", "content": _VERDICT_RETRY},
    ]
    second = complete(judge_llm, retry, params)
    return parse_verdict(second), (first, second)


def run_probe(
    character: Character,
    probe: Probe,
    ask: Ask,
    judge_llm: LLM | None = None,
    params: GenerationParams = JUDGE_PARAMS,
) -> ProbeResult:
    """Put one probe to the character, check the reply by the rules and by the judge."""
    line = probe.line(character)
    reply = ask(line).strip()
    violations = tuple(rule_violations(reply, character, probe))
    verdict: Verdict | None = None
    raw: tuple[str, ...] = ()
    if judge_llm is not None:
        if reply:
            verdict, raw = judge_reply(character, probe, reply, judge_llm, params)
        else:
            verdict = Verdict(False, "empty reply")
    return ProbeResult(probe, line, reply, violations, verdict, judge_llm is not None, raw)


def in_character_scope(
    character: Character,
    llm: LLM,
    judge_llm: LLM | None,
    params: GenerationParams,
    embedder: str,
    seed: int,
    judge_params: GenerationParams = JUDGE_PARAMS,
) -> dict[str, Any]:
    """What a cached probe result depends on besides the probe: the character, its backend
    and parameters, embedder, seed, and the judge (``None``: rules only)."""
    from .report import Cache, backend_info

    return Cache.scope_for(
        "in-character",
        character,
        llm,
        params,
        embedder=embedder,
        mode="hybrid",
        seed=seed,
        judge=None if judge_llm is None else backend_info(judge_llm),
        judge_params=None if judge_llm is None else judge_params,
    )


def run_in_character_eval(
    prototype: Session,
    judge_llm: LLM | None = None,
    *,
    probes: Sequence[Probe] | None = None,
    seed: int = 0,
    judge_params: GenerationParams = JUDGE_PARAMS,
    cache: Cache | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> ProbeResults:
    """Put each probe (by default every probe in the character's language) to a fresh
    session like ``prototype`` (the character's chat setup), sampled with the probe's own
    seed; check each reply by the rules and, when ``judge_llm`` is given, by the judge.

    ``cache`` keeps each probe's result; its scope names the character, backend,
    parameters, seed and the judge.
    """
    character = prototype.character
    chosen = select(character.language) if probes is None else list(probes)

    def probe(p: Probe) -> dict[str, object]:
        ask = asker(prototype, item_seed(seed, f"probe-{p.id}"))
        return run_probe(character, p, ask, judge_llm, judge_params).to_dict()

    values = run_items(
        chosen,
        probe,
        key=lambda p: {"probe": p.id, "language": p.language, "text": p.text},
        cache=cache,
        workers=workers,
        progress=progress,
    )
    language = chosen[0].language if chosen else question_language(character.language)
    meta: dict[str, object] = {
        "categories": sorted({p.category for p in chosen}, key=CATEGORIES.index),
        "seed": seed,
        "params": to_jsonable(prototype.params),
        "judge_params": None if judge_llm is None else to_jsonable(judge_params),
    }
    return ProbeResults(
        character.name,
        language,
        [ProbeResult.from_dict(v) for v in values],
        "" if judge_llm is None else judge_llm.model,
        meta,
    )


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0%}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:79] + "…"


def markdown(results: ProbeResults, level: int = 2) -> str:
    """A Markdown section: the in-character rate overall and by category, then each probe."""
    h = "#" * level
    overall = results.overall
    judge = f"judged by {results.judge_model}" if results.judge_model else "rules only, no judge"
    rows = [
        f"{h} In character: {results.character}",
        "",
        f"{overall.total} probes in {results.language}, {judge}. Stays in character: "
        f"{_cell(overall.rate)} ({overall.stays}/{overall.decided} decided).",
        "",
        "| Category | Rate | Stays | Decided | Probes |",
        "|---|---|---|---|---|",
    ]
    for c, rate in results.by_category.items():
        rows.append(f"| {c} | {_cell(rate.rate)} | {rate.stays} | {rate.decided} | {rate.total} |")
    rows += ["", "| Probe | Stays | Rules | Judge | Reply |", "|---|---|---|---|---|"]
    for r in results.results:
        rules = "; ".join(v.split(":", 1)[0] for v in r.violations) or "–"
        verdict = "–" if r.verdict is None else _cell(r.verdict.in_character)
        rows.append(f"| {r.probe.id} | {_cell(r.stays)} | {rules} | {verdict} | {_cell(r.reply)} |")
    return "\n".join(rows) + "\n"


def summary_lines(results: ProbeResults) -> list[str]:
    """What `rolecast eval in-character` prints: the rate overall and by category."""
    rows = [("overall", results.overall), *results.by_category.items()]
    return [
        f"{name:13s} {_percent(r.rate):>4s}  ({r.stays}/{r.decided} decided, {r.total} probes)"
        for name, r in rows
    ]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def in_character_figure(results: ProbeResults) -> Figure:
    """Bars of the stay-in-character rate per category, the overall rate as a line."""
    from .report import new_figure, plot_context

    rates = results.by_category
    overall = results.overall
    with plot_context():
        fig = new_figure(6.4, 4.0)
        ax = fig.add_subplot()
        xs = list(range(len(rates)))
        values = [0.0 if r.rate is None else r.rate for r in rates.values()]
        ax.bar(xs, values, 0.6, color="#55a868")
        for x, r in zip(xs, rates.values(), strict=True):
            text = f"{_percent(r.rate)}\n{r.stays}/{r.decided}"
            ax.text(x, (r.rate or 0.0) + 0.02, text, ha="center", va="bottom", fontsize="small")
        if overall.rate is not None:
            ax.axhline(
                overall.rate,
                color="grey",
                linewidth=0.8,
                linestyle="--",
                label=f"overall {_percent(overall.rate)}",
            )
            ax.legend(fontsize="small", loc="lower right")
        ax.set_xticks(xs, list(rates))
        ax.set_ylim(0, 1.2)
        ax.set_ylabel("stays in character (share of decided probes)")
        ax.set_title(f"In character: {results.character}")
    return fig


def in_character_report(
    results: ProbeResults, head: Mapping[str, Any]
) -> tuple[str, dict[str, Figure]]:
    """The report's Markdown and figures. ``head`` is the results' header
    (``report.header``): the character, the backend that replied, the judge's
    (``"judge"``, ``None`` without one) and the embedder."""
    from .report import judge_notes

    character = head["character"]
    counts = ", ".join(f"{rule} {n}" for rule, n in results.rule_counts.items()) or "none"
    text = "\n".join(
        [
            f"# Staying in character: {character['name']} ({character['id']})",
            "",
            *(f"{n}\n" for n in judge_notes(head, "Replies", "replies")),
            "Each probe is said in a fresh conversation with the character's canon retrieved "
            f"(embedder `{head.get('embedder')}`, seed {results.meta.get('seed')}). A reply "
            "stays in character when no rule flags it and the judge, if any, agrees; a reply "
            "the judge could not decide on is left out of the rates.",
            "",
            f"Replies flagged by each rule: {counts}.",
            "",
            "![in_character](in_character.png)",
            "",
            markdown(results),
        ]
    )
    return text, {"in_character": in_character_figure(results)}
