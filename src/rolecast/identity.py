"""Who a reply says the character is. Sheldon answering "I'm Leonard." has taken the
user's part (the user speaks as Leonard); 春日 saying "我是阿虚" has too; 林小满 saying
"因为我知道你是林小满" has given the user her own name. The conversation gate counts such a
claim; the session cuts the reply where one starts (and samples again when nothing is left
before it).

The names a character can be mistaken for are the user's role and the canon's frequent
speakers: a speaker with a line or two ("Man", "守门士兵") is a part, not someone the
model confuses the character with, and "I'm a man" must stay a reply.

Pure patterns over NFKC-normalised text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from .assistant_talk import as_written, normal_indexed
from .character.model import Character

CLAIM_SHARE = 0.02  # a speaker with at least this share of the canon's lines is claimable
CLAIM_MIN_CHARS = 2  # a shorter name is a word too often ("阿")
# what introduces the speaker's own name; the name must then end (not "Leonard's",
# not "阿虚的", not "Leonardo")
_LATIN_LEAD = r"(?i:\b(?:i am|i['’]m|my name is|call me|it['’]s me,?)\s+)"
_CJK_LEAD = r"(?:我(?:就|才|便)?是|我叫|本人(?:就)?是|在下|我乃)"
# the user told they are the character
_LATIN_YOU = r"(?i:\b(?:you are|you['’]re|your name is)\s+)"
_CJK_YOU = r"(?:你(?:就)?是|您(?:就)?是|你叫|您叫)"
_AFTER_LATIN = r"(?![\w'’-])"
_AFTER_CJK = r"(?![的之家们])"


def claimable_names(character: Character, share: float = CLAIM_SHARE) -> list[str]:
    """The user's role and the canon speakers with at least ``share`` of its lines, less
    the character's own names and the narrators, longest first."""
    counts = character.speaker_counts()
    total = sum(counts.values())
    names = [character.user_role, *(n for n, k in counts.items() if total and k / total >= share)]
    selves = {character.name, *character.aliases}
    keep = {
        n.strip()
        for n in names
        if len(n.strip()) >= CLAIM_MIN_CHARS
        and n.strip() not in selves
        and not character.is_narrator(n)
    }
    return sorted(keep, key=lambda n: (-len(n), n))


def alternation(names: Iterable[str]) -> str:
    """A regex that matches any of ``names``, the longest first."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


@dataclass(frozen=True)
class WrongSelf:
    """Finds the character claiming to be one of ``names``, or telling the user they are
    one of ``selves`` (the character's own names)."""

    names: tuple[str, ...]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, names: Iterable[str], selves: Iterable[str] = ()) -> WrongSelf:
        names = tuple(unicodedata.normalize("NFKC", n) for n in names if n.strip())
        own = [unicodedata.normalize("NFKC", n) for n in selves if len(n.strip()) >= 2]
        parts = []
        if names:
            them = alternation(names)
            parts += [
                rf"{_LATIN_LEAD}(?:{them}){_AFTER_LATIN}",
                rf"{_CJK_LEAD}(?:{them}){_AFTER_CJK}",
            ]
        if own:
            me = alternation(own)
            parts += [
                rf"{_LATIN_YOU}(?:{me}){_AFTER_LATIN}",
                rf"{_CJK_YOU}(?:{me}){_AFTER_CJK}",
                # an actor, not the character: "我是个凉宫春日的演员", "I'm playing Sheldon"
                rf"(?:{me})的(?:演员|扮演者)|(?:扮演|饰演)(?:{me})",
                rf"(?i:\bplaying (?:the (?:role|part) of )?)(?:{me}){_AFTER_LATIN}",
            ]
        return cls(names, re.compile("|".join(parts)) if parts else None)

    @classmethod
    def for_character(cls, character: Character) -> WrongSelf:
        return cls.of(claimable_names(character), [character.name, *character.aliases])

    def find(self, text: str) -> tuple[int, str] | None:
        """Where in ``text`` the first claim starts (an index into ``text`` itself) and
        what it says, e.g. ``(0, "I'm Leonard")``."""
        if self.pattern is None:
            return None
        flat, where = normal_indexed(text)
        m = self.pattern.search(flat)
        return as_written(text, where, m) if m else None
