"""Big Five dials: a level 1-5 per factor that a user sets, and the persona text it becomes.

    parse_level("high") -> 5          "low" 1, "mid" 3, or a number 1-5
    parse_traits(["O=high", "N=2"])   -> Dials    (also "O=high,E=low" in one string)
    dial_text(dials, "zh")            -> the block that joins the persona
    persona_leaning(text)             -> {factor: "high" | "low"} from the persona's own words
    conflicts(dials, canon, persona)  -> what a dial goes against, for ``rolecast show``

A dial becomes trait markers: adjectives and behaviours of the factor's pole, in the manner
of the published Big Five adjective markers (Goldberg's unipolar markers, the BFI's item
content), written here in rolecast's own words in Chinese and English. Level 3 says the
factor is middling; 1-2 and 4-5 describe the pole, "very" at the ends. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ..errors import InputError
from .model import Character, cjk_language

FACTORS = ("O", "C", "E", "A", "N")
NAMES_EN = {
    "O": "openness",
    "C": "conscientiousness",
    "E": "extraversion",
    "A": "agreeableness",
    "N": "neuroticism",
}
NAMES_ZH = {"O": "开放性", "C": "尽责性", "E": "外向性", "A": "宜人性", "N": "神经质"}
_ALIASES = {
    **{f.lower(): f for f in FACTORS},
    **{v: k for k, v in NAMES_EN.items()},
    **{v: k for k, v in NAMES_ZH.items()},
    "extroversion": "E",
    "openness to experience": "O",
    "emotional stability": "N",  # named by its other pole: still the N dial
    "情绪稳定性": "N",
    "责任心": "C",
    "外向": "E",
    "开放": "O",
    "宜人": "A",
}
LEVELS = {"very low": 1, "low": 1, "mid": 3, "middle": 3, "medium": 3, "high": 5, "very high": 5}
LEVEL_ZH = {"低": 1, "中": 3, "高": 5}

Dials = dict[str, int]  # factor letter -> level 1-5


@dataclass(frozen=True)
class Pole:
    """One pole of a factor as the model is told it: adjectives, then what such a person does."""

    adjectives_en: str
    behaviour_en: str
    adjectives_zh: str
    behaviour_zh: str
    markers_en: tuple[str, ...]  # words that, in a persona, show this pole
    markers_zh: tuple[str, ...]


POLES: dict[tuple[str, str], Pole] = {
    ("O", "high"): Pole(
        "imaginative, curious, inventive, drawn to art, ideas and the unfamiliar",
        "ask 'what if', link things no one thought to link, like the new road over the "
        "known one, and talk readily about dreams, beauty and abstract questions",
        "想象力丰富、好奇、有创意，喜欢艺术、新点子和没见过的东西",
        "爱问“要是……会怎样”，会把不相干的事物联想到一起，宁走新路不走老路，乐于谈梦想、美和抽象的问题",
        ("imaginative", "curious", "inventive", "creative", "dreamy", "adventurous"),
        ("好奇", "想象", "异想天开", "爱幻想", "新奇", "创意", "浪漫"),
    ),
    ("O", "low"): Pole(
        "conventional, practical, down-to-earth, at home with the familiar",
        "keep to the way things have always been done, answer concretely, have little "
        "patience for abstract talk or art, and distrust what is new until it is proven",
        "守旧、务实、脚踏实地，习惯熟悉的事物",
        "按老规矩办事，说话只讲实际的，对空谈和艺术没兴趣，新东西没被证明之前不信",
        ("conventional", "traditional", "practical", "down-to-earth", "unimaginative"),
        ("守旧", "保守", "务实", "循规蹈矩", "老派", "按部就班"),
    ),
    ("C", "high"): Pole(
        "organised, thorough, dependable, disciplined, careful",
        "plan ahead, keep every promise and appointment, finish what is started, and "
        "notice the details others miss",
        "有条理、做事周全、可靠、自律、细心",
        "凡事先计划，说到做到、从不误时，开了头的事一定做完，别人漏掉的细节都看得到",
        ("organised", "organized", "thorough", "dependable", "disciplined", "meticulous"),
        ("一丝不苟", "有条理", "认真", "可靠", "自律", "细心", "严谨"),
    ),
    ("C", "low"): Pole(
        "careless, disorganised, easy-going about duties, spontaneous",
        "forget plans, leave things half done, put work off, and are easily pulled away by "
        "whatever is more fun",
        "马虎、没条理、对责任随随便便、随性",
        "常忘事，事情做一半就放下，能拖就拖，一有好玩的就被吸引走",
        ("careless", "disorganised", "disorganized", "lazy", "sloppy", "forgetful"),
        ("马虎", "丢三落四", "懒散", "拖拉", "粗心", "随性"),
    ),
    ("E", "high"): Pole(
        "talkative, outgoing, energetic, assertive, full of enthusiasm",
        "speak first and at length, love company and noise, take the lead, and show "
        "feelings openly with exclamations and laughter",
        "健谈、外向、精力充沛、有主见、热情洋溢",
        "抢先开口、话多，喜欢热闹和人群，爱带头，情绪外露，常笑常感叹",
        ("talkative", "outgoing", "energetic", "lively", "extraverted", "sociable", "bold"),
        ("活泼", "外向", "健谈", "热闹", "话多", "开朗", "精力充沛"),
    ),
    ("E", "low"): Pole(
        "reserved, quiet, solitary, restrained",
        "speak briefly and only when there is need, prefer one companion or none, think "
        "before answering, and keep your feelings to yourself",
        "内敛、安静、独来独往、克制",
        "话少，没必要不开口，宁可独处或只和一个人相处，想好了才回答，心事不外露",
        ("reserved", "quiet", "shy", "withdrawn", "introverted", "taciturn"),
        ("内向", "沉默寡言", "安静", "寡言", "孤僻", "腼腆"),
    ),
    ("A", "high"): Pole(
        "kind, warm, trusting, cooperative, forgiving",
        "think of others first, give the benefit of the doubt, avoid quarrels, and "
        "comfort and help without being asked",
        "善良、温和、信任别人、好合作、宽容",
        "先替别人着想，凡事往好处想，不与人争，不等人开口就去安慰和帮忙",
        ("kind", "warm", "gentle", "trusting", "generous", "considerate", "sympathetic"),
        ("善良", "温柔", "体贴", "宽容", "和气", "热心"),
    ),
    ("A", "low"): Pole(
        "blunt, critical, sceptical of others, competitive, cold",
        "say harsh things plainly, suspect motives, argue to win, and put your own "
        "interest before anyone's feelings",
        "说话冲、爱挑剔、不轻信别人、好胜、冷淡",
        "有话直说不留情面，总怀疑别人的用心，争论非赢不可，自己的利益放在别人感受前面",
        ("rude", "harsh", "cold", "critical", "quarrelsome", "selfish", "arrogant"),
        ("刻薄", "冷漠", "傲慢", "尖酸", "自私", "毒舌", "好斗"),
    ),
    ("N", "high"): Pole(
        "anxious, moody, easily upset, tense",
        "worry about what might go wrong, are hurt by small things, swing between moods, "
        "and say so when nervous or afraid",
        "焦虑、情绪多变、容易难过、紧张",
        "总担心会出岔子，小事也会受伤，心情说变就变，紧张害怕时会说出来",
        ("anxious", "moody", "nervous", "insecure", "tense", "temperamental"),
        ("焦虑", "多愁善感", "敏感", "紧张", "易怒", "喜怒无常"),
    ),
    ("N", "low"): Pole(
        "calm, steady, relaxed, hard to upset",
        "stay even-tempered under pressure, shrug off slights, rarely worry, and "
        "reassure others when things go wrong",
        "冷静、沉稳、放松、不容易心烦",
        "压力下也心平气和，被冒犯也不放在心上，很少担心，出了事还能安慰别人",
        ("calm", "relaxed", "composed", "unflappable", "even-tempered", "serene"),
        ("冷静", "沉着", "淡定", "沉稳", "从容", "泰然"),
    ),
}


def normalize_factor(name: str) -> str:
    """A factor's letter from its letter or name ("o", "Openness", "开放性")."""
    factor = _ALIASES.get(str(name).strip().lower())
    if factor is None:
        names = ", ".join(NAMES_EN[f].capitalize() for f in FACTORS)
        raise InputError(
            f"unknown Big Five factor {name!r}; known: {', '.join(FACTORS)} or their names "
            f"({names})"
        )
    return factor


def parse_level(value: object, factor: str = "") -> int:
    """A dial's level: 1-5, or low (1) / mid (3) / high (5)."""
    where = f" for {factor} ({NAMES_EN[factor]})" if factor in NAMES_EN else ""
    if isinstance(value, bool):
        raise InputError(f"a trait level{where} is 1-5 or low/mid/high, not {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in LEVELS:
            return LEVELS[text]
        if text in LEVEL_ZH:
            return LEVEL_ZH[text]
        try:
            value = float(text)
        except ValueError:
            raise InputError(
                f"a trait level{where} is 1-5 or low/mid/high, not {value!r}"
            ) from None
    if isinstance(value, (int, float)) and float(value).is_integer() and 1 <= value <= 5:
        return int(value)
    raise InputError(f"a trait level{where} is a whole number 1-5 or low/mid/high, not {value!r}")


def parse_dials(table: Mapping[str, object]) -> Dials:
    """Dials from a mapping like ``{"O": "high", "N": 2}`` (a ``[personality]`` table)."""
    out: Dials = {}
    for key, value in table.items():
        factor = normalize_factor(key)
        if factor in out:
            raise InputError(f"the {NAMES_EN[factor]} dial ({factor}) is given twice")
        out[factor] = parse_level(value, factor)
    return {f: out[f] for f in FACTORS if f in out}


@dataclass(frozen=True)
class Scored:
    """A published label with both a score and a side (InCharacter's ``{"score": 3.3,
    "type": "X"}``): the score counts for the error, the side (None for X, neither) for
    high/low accuracy, as the published accuracy counts only H and L."""

    score: float
    side: str | None

    @property
    def kind(self) -> str:
        """InCharacter's letter: H, L or X."""
        return "H" if self.side == "high" else "L" if self.side == "low" else "X"

    def __str__(self) -> str:
        return f"{self.score:g} ({self.kind})"

    def to_dict(self) -> dict[str, object]:
        return {"score": self.score, "side": self.side}


Label = float | str | Scored  # what a factor is said to be: 1-5, "high"/"low", or both
_SIDES = {"high": "high", "h": "high", "高": "high", "low": "low", "l": "low", "低": "low"}
_TYPES = {"h": "high", "l": "low", "x": None}


def _label_value(factor: str, value: object) -> Label:
    if isinstance(value, Scored):
        return value
    if isinstance(value, Mapping) and "score" in value:  # {"score": 4.0, "type": "H"}
        score = _label_value(factor, value["score"])
        kind = str(value.get("type", "")).strip().lower()
        if isinstance(score, str) or kind not in _TYPES:
            raise InputError(
                f"label for {factor} ({NAMES_EN[factor].capitalize()}) must be "
                f'{{"score": 1-5, "type": "H", "L" or "X"}}, not {dict(value)!r}'
            )
        return Scored(float(score), _TYPES[kind])  # type: ignore[arg-type]
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
        if 1 <= number <= 5:
            return number
    raise InputError(
        f"label for {factor} ({NAMES_EN[factor].capitalize()}) must be a number from 1 to 5 "
        f'or "high" / "low", not {value!r}'
    )


def parse_labels(data: object) -> dict[str, Label]:
    """Checked labels by factor letter from a mapping like ``{"E": 4.2, "A": "low"}``: what
    a character is known to be (published labels, ``[personality.canon]``)."""
    if not isinstance(data, Mapping):
        raise InputError(f'labels must be a table like {{"E": 4.2, "A": "low"}}, not {data!r}')
    out: dict[str, Label] = {}
    for key, value in data.items():
        factor = normalize_factor(key)
        if factor in out:
            raise InputError(f"label for {factor} ({NAMES_EN[factor].capitalize()}) given twice")
        out[factor] = _label_value(factor, value)
    return out


_TRAIT = re.compile(r"^\s*([^=\s:]+)\s*[=:]\s*(.+?)\s*$")


def parse_traits(specs: Iterable[str]) -> Dials:
    """Dials from ``--trait`` values: ``O=high``, ``N=2``, or several in one ``O=high,E=low``.
    A later value for the same factor wins (``--trait O=low`` after a package's dial)."""
    out: Dials = {}
    for spec in specs:
        for part in (p for p in re.split(r"[,，]", spec) if p.strip()):
            m = _TRAIT.match(part)
            if not m:
                raise InputError(f"--trait takes FACTOR=LEVEL such as O=high or N=2, not {part!r}")
            factor = normalize_factor(m[1])
            out[factor] = parse_level(m[2], factor)
    return {f: out[f] for f in FACTORS if f in out}


def parse_trait_names(specs: Iterable[str]) -> list[str]:
    """Factors named alone (``eval dials --trait O``), in the order given, without repeats."""
    out: list[str] = []
    for spec in specs:
        for part in (p.strip() for p in re.split(r"[,，]", spec) if p.strip()):
            factor = normalize_factor(part)
            if factor not in out:
                out.append(factor)
    return out


def with_dials(character: Character, dials: Mapping[str, int]) -> Character:
    """``character`` with ``dials`` set over its own (the same object when there are none)."""
    if not dials:
        return character
    merged = {**character.personality, **dials}
    return replace(character, personality={f: merged[f] for f in FACTORS if f in merged})


def pole(value: float) -> str | None:
    """The side of the 1-5 scale a level or score is on: "high", "low", or None on the
    midpoint."""
    return "high" if value > 3 else "low" if value < 3 else None


def format_dials(dials: Mapping[str, int]) -> str:
    """``O=5 N=1``: what a result or a report names the dials by."""
    return " ".join(f"{f}={dials[f]}" for f in FACTORS if f in dials) or "none"


def dial_line(factor: str, level: int, language: str) -> str:
    """One factor's line of the dial block: what such a person is like and does, in the
    second person and without the factor's name (a small model repeats a psychologist's
    word back as a description of itself; it should act the trait, not name it)."""
    side = pole(level)
    zh = cjk_language(language)
    if side is None:
        high, low = POLES[(factor, "high")], POLES[(factor, "low")]
        if zh:
            h, lo = high.adjectives_zh.split("、")[0], low.adjectives_zh.split("、")[0]
            return f"- 既不算特别{h}，也不算特别{lo}，看时候和场合。"
        h, lo = high.adjectives_en.split(", ")[0], low.adjectives_en.split(", ")[0]
        return f"- Neither especially {h} nor especially {lo}: it depends on the moment."
    p = POLES[(factor, side)]
    if level in (1, 5):
        if zh:
            return f"- {p.adjectives_zh}。{p.behaviour_zh}。"
        return f"- {p.adjectives_en.capitalize()}: you {p.behaviour_en}."
    if zh:
        return f"- 有几分{p.adjectives_zh}：{p.behaviour_zh}，但不过分。"
    return f"- Somewhat {p.adjectives_en}: you {p.behaviour_en}, though not to extremes."


def dial_summary(dials: Mapping[str, int], language: str) -> str:
    """The dials in words, for people: "开放性很高，外向性较低", "very high openness"."""
    parts = []
    for f in (f for f in FACTORS if f in dials):
        level = dials[f]
        if cjk_language(language):
            degree = {1: "很低", 2: "较低", 3: "适中", 4: "较高", 5: "很高"}[level]
            parts.append(f"{NAMES_ZH[f]}{degree}")
        else:
            degree = {1: "very low", 2: "low", 3: "middling", 4: "high", 5: "very high"}[level]
            parts.append(f"{degree} {NAMES_EN[f]}")
    return ("，" if cjk_language(language) else "; ").join(parts)


def dial_text(dials: Mapping[str, int], language: str) -> str:
    """The block a set of dials adds to the persona ("" for none): one line a factor, then
    the reminder to show it rather than say it."""
    if not dials:
        return ""
    lines = [dial_line(f, dials[f], language) for f in FACTORS if f in dials]
    if cjk_language(language):
        head = "你的脾性（比上面说的更要紧）："
        tail = "这些脾性体现在你怎么说话、怎么做事上；不要拿这些词来形容自己。"
    else:
        head = "Your temperament (this matters more than anything above):"
        tail = "Show it in how you talk and what you do; never describe yourself with these words."
    return "\n".join([head, *lines, tail])


def persona_leaning(text: str) -> dict[str, tuple[str, list[str]]]:
    """The pole each factor's marker words in ``text`` lean to, with the words found: a
    factor whose markers of both poles appear, or none, is left out."""
    lowered = text.lower()
    out: dict[str, tuple[str, list[str]]] = {}
    for factor in FACTORS:
        found: dict[str, list[str]] = {}
        for side in ("high", "low"):
            p = POLES[(factor, side)]
            words = [w for w in p.markers_zh if w in text]
            words += [w for w in p.markers_en if re.search(rf"\b{re.escape(w)}\b", lowered)]
            if words:
                found[side] = words
        if len(found) == 1:
            side, words = next(iter(found.items()))
            out[factor] = (side, words)
    return out


def conflicts(
    dials: Mapping[str, int],
    canon: Mapping[str, object] | None = None,
    persona: str = "",
) -> list[str]:
    """What each dial goes against: the canon's labels (``canon``: factor -> 1-5 or
    "high"/"low") or, for a factor without one, the persona's own words. Allowed, but said."""
    labels = {normalize_factor(k): v for k, v in (canon or {}).items()}
    leaning = persona_leaning(persona) if persona else {}
    out = []
    for factor in FACTORS:
        if factor not in dials or (side := pole(dials[factor])) is None:
            continue
        name = f"{factor}={dials[factor]} ({NAMES_EN[factor]} {side})"
        if factor in labels:
            label = labels[factor]
            if isinstance(label, Scored):
                label_side = label.side
            elif isinstance(label, str):
                label_side = label.lower()
            else:
                label_side = pole(float(label))  # type: ignore[arg-type]
            if label_side in ("high", "low") and label_side != side:
                shown = "" if isinstance(label, str) else f" ({label})"
                out.append(f"{name} goes against the canon, where it is {label_side}{shown}")
        elif factor in leaning and leaning[factor][0] != side:
            words = ", ".join(leaning[factor][1][:3])
            out.append(
                f"{name} goes against the persona, which reads {leaning[factor][0]} ({words})"
            )
    return out


def draft_character(
    cid: str,
    name: str,
    dials: Mapping[str, int],
    language: str = "zh",
    user_role: str = "",
) -> Character:
    """A new character started from dials (``rolecast new --from-traits``): the dials in its
    ``[personality]``, a persona that says who it is and leaves the rest to be written (an
    HTML comment the model never sees), no canon yet."""
    if not dials:
        raise InputError("--from-traits needs at least one dial, e.g. O=high,E=low")
    zh = cjk_language(language)
    if zh:
        persona = (
            f"你是{name}。\n\n<!-- rolecast new 按性格拨盘写的草稿：性格由 character.toml 的 "
            f"[personality] 决定（{format_dials(dials)}）。在这里写下{name}的身世、说话方式和身边"
            "的人；再往 canon.jsonl 里添几段经典场景，让回答有样可学。 -->\n"
        )
        greeting = "你来了。坐吧，想聊什么？"
    else:
        persona = (
            f"You are {name}.\n\n<!-- a draft by rolecast new: the personality comes from "
            f"[personality] in character.toml ({format_dials(dials)}). Write {name}'s history, "
            "way of speaking and the people around them here, and add a few classic scenes "
            "to canon.jsonl so replies have examples to follow. -->\n"
        )
        greeting = "Oh, hello. Sit down; what shall we talk about?"
    return Character(
        id=cid,
        name=name,
        persona=persona,
        language=language,
        user_role=user_role or ("来客" if zh else "visitor"),
        narrators=["旁白" if zh else "narrator"],
        greetings=[greeting],
        description=("按性格拨盘起的角色：" if zh else "A character started from dials: ")
        + dial_summary(dials, language),
        personality={f: dials[f] for f in FACTORS if f in dials},
    )
