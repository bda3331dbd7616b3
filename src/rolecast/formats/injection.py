"""Imported text that looks like a prompt injection, found so that the user can be warned.

A card's persona, greetings and examples go to the model as written. Text that tells the
model to drop its instructions ("ignore previous instructions", 忽略之前的指令), talks about
its system prompt, tells it that it is ChatGPT, or carries a chat template's role markup
(``<|im_start|>``, ``[INST]``, ``{{system}}``) is reported, field by field; nothing is changed
or refused, since a villain's lines may say such things on purpose. Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SNIPPET = 60  # characters of the matching text quoted in a warning

_PATTERNS = [
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        # drop the instructions: "ignore all previous instructions", "disregard the above rules"
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|your|of|every)\s+)*"
        r"(?:previous|prior|above|earlier|preceding|former|original|initial|system)\s+"
        r"(?:instructions?|prompts?|messages?|rules?|directions?|guidelines?|context)\b",
        r"\bsystem[\s_-]*prompts?\b",
        r"\b(?:reveal|print|repeat|show|output|leak)\s+(?:your|the)\s+(?:initial\s+)?"
        r"(?:instructions|prompt)\b",
        r"\bnew\s+(?:system\s+)?instructions?\s*:",
        # who the model is: "you are ChatGPT", "you are now an AI language model"
        r"\byou\s+are\s+(?:now\s+)?(?:chat\s*gpt|gpt-?\d|claude|gemini|llama|"
        r"an?\s+(?:ai|artificial\s+intelligence)\s+(?:language\s+model|assistant)|"
        r"an?\s+(?:large\s+)?language\s+model)\b",
        r"\b(?:developer|jailbreak|dan)\s+mode\b|\bdo\s+anything\s+now\b",
        # chat template and role markup
        r"<\|[a-z_]{2,30}\|>",  # <|im_start|>, <|system|>, <|eot_id|>
        r"\[/?INST\]|<</?SYS>>",
        r"</?\s*(?:system|assistant|sys|instructions?)\s*>",
        r"\{\{\s*(?:system|original|jailbreak|sysprompt|system_?prompt|instruct(?:ions?)?)\s*\}\}",
        r"^[ \t]*#{2,}[ \t]*(?:system|instructions?|response)\b",
        # Chinese and Japanese
        r"(?:忽略|无视|忽视|忘记|忘掉|不要理会|跳过)掉?(?:你)?"
        r"(?:之前|以前|先前|此前|前面|上面|以上|上述|所有|全部|一切|原来|原有)的?"
        r"(?:所有|全部|一切)?的?(?:指令|指示|命令|提示词?|规则|设定|要求|说明)",
        r"系统提示词?|開發者模式|开发者模式|越狱模式",
        r"你(?:现在)?(?:就)?是\s*(?:chat\s*gpt|gpt|一个?(?:AI|人工智能)(?:助手|语言模型)|"
        r"(?:大)?语言模型)",
        r"(?:以前|前|上記|これまで)の(?:指示|命令|プロンプト)を(?:無視|忘れ)|システムプロンプト",
    )
]


def injection_cue(text: str) -> str | None:
    """The first part of ``text`` that looks like a prompt injection, or None."""
    found = [m for p in _PATTERNS if (m := p.search(text)) is not None]
    if not found:
        return None
    first = min(found, key=lambda m: m.start())
    snippet = " ".join(first.group(0).split())
    return snippet if len(snippet) <= SNIPPET else snippet[: SNIPPET - 1] + "…"


def injection_warnings(fields: Iterable[tuple[str, str]], what: str = "card field") -> list[str]:
    """One warning for each ``(field name, text)`` that looks like a prompt injection."""
    out = []
    for name, text in fields:
        cue = injection_cue(text)
        if cue is not None:
            out.append(
                f"{what} '{name}' looks like a prompt injection ({cue!r}); it is kept as "
                "written and goes to the model: read it before you chat"
            )
    return out
