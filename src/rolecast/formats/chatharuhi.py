"""ChatHaruhi roles in every published form, read without their libraries, and written back.

- story folder: ``texts/*.txt`` (one scene per file) + ``system_prompt.txt``, and the 1.0 image
  lookup (``images/<caption>.jpg`` with ``text_image_dict.txt``);
- role JSONL / Hugging Face dataset rows: ``{"text" | "enc_text": ..., "<embedding column>":
  "system_prompt" | "config" | base64 of big-endian float32}``;
- the 2.0 role zip: ``content/<role>/chroma.sqlite3`` (read with :mod:`sqlite3`, no chromadb)
  + ``content/system_prompt.txt``.

Everything here reads bytes and returns a :class:`ImportResult`; nothing is written. Every
problem with the input is a :class:`~rolecast.errors.ParseError` that names it.

Which speaker is the character (:func:`choose_speaker`): the one asked for, else the one a
config written by rolecast names, the folder (zip role, file) name, ``gradio_header.md``, a
foreign config or the persona ("你是X", "act like X", the name said most), else the one with the
most lines, with a note when the runner-up is close. A persona of a few characters is treated
as missing: a draft is written from the canon (:func:`draft_persona`) and marked as a draft.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import sqlite3
import struct
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..character.dialogue import format_dialogue, parse_dialogue
from ..character.model import DEFAULT_NARRATORS, Character, Line, Scene, cjk_language
from ..character.package import jsonl_rows, slug_id, valid_id
from ..character.safezip import SafeZip
from ..errors import InputError, ParseError

_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
MAX_FILE = 256 * 1024 * 1024  # a role JSONL, a role zip, or one member of it
MAX_ROWS = 200_000
MAX_DIM = 65_536
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
NEAR_SHARE = 0.6  # a caption and a line match when one holds the other and is >= 60% of it
FRAMES_SCENE = "frames"  # image captions that match no canon line
OWN_COLUMN = "rolecast"  # the vector column export writes when no foreign one covers the canon
CLOSE_SHARE = 0.8  # a runner-up with >= 80% of the top speaker's lines makes line counts a guess
CANDIDATES = 5  # a name found in a folder name, header or persona picks among this many speakers
CUE_WINDOW = 12  # characters after "你是" / "You are" in which the character's name is looked for
MIN_PERSONA_WIDTH = 20  # a persona narrower than this (a CJK character counts 2) is missing
DRAFT_LINES = 5  # the character's own lines quoted in a drafted persona
DRAFT_LINE_CHARS = (4, 80)  # shortest and longest line worth quoting
HEADER = "gradio_header.md"  # a role folder's page header, which names the character


@dataclass
class ImportResult:
    character: Character
    problems: list[ParseError] = field(default_factory=list)  # lines left out
    repaired: list[ParseError] = field(default_factory=list)  # lines kept after a repair
    images: dict[str, bytes] = field(default_factory=dict)  # files for the package's images/
    notes: list[str] = field(default_factory=list)  # about the whole import, not one line
    warnings: list[str] = field(default_factory=list)  # text to read before chatting


# ---------------------------------------------------------------- shared


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 (BOM or not) or UTF-16 with a BOM; anything else is a clear error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ParseError(f"invalid UTF-16 (byte {exc.start})", where) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = ""
        try:
            data.decode("gb18030")
            hint = "; it looks like GBK/GB18030: convert it with iconv -f GB18030 -t UTF-8"
        except UnicodeDecodeError:
            pass
        line = data[: exc.start].count(b"\n") + 1
        raise ParseError(f"not UTF-8 text (byte {exc.start}, line {line}){hint}", where) from None


def _is_narrator(speaker: str) -> bool:
    s = speaker.strip().lower()
    return s == "" or s in {n.lower() for n in DEFAULT_NARRATORS}


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def default_narrator(language: str) -> str:
    """The narrator's name when a canon names none: 旁白 for Chinese, else Narrator."""
    return "旁白" if language.startswith("zh") else "Narrator"


def default_source(language: str) -> str:
    """What the canon comes from when nothing says: the words the prompt uses then too."""
    return "原作" if cjk_language(language) else "the original work"


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())


def _same_name(name: str | None, speakers: Sequence[str]) -> str | None:
    """The speaker whose name is ``name`` but for case, spaces and punctuation (most lines
    first: ``speakers`` is in that order)."""
    if name is None or not name.strip():
        return None
    want = _norm(name) or name.strip()
    return next((s for s in speakers if (_norm(s) or s) == want), None)


def _holds(a: str, b: str) -> bool:
    """One name holds the other: whole words for Latin names ("Megumi" in "Megumi Kato"),
    characters for CJK ones ("春日" in "凉宫春日"), never a single character."""
    short, long_ = sorted((_norm(a), _norm(b)), key=len)
    if len(short) < 2:
        return False
    if _CJK.search(short):
        return short in long_
    ws, wl = sorted((_words(a), _words(b)), key=len)
    return any(wl[i : i + len(ws)] == ws for i in range(len(wl) - len(ws) + 1))


def _named_by(names: Sequence[str], speakers: Sequence[str], top: Sequence[str]) -> str | None:
    """The speaker a folder (or file, or zip role) name names: the same name, else the one
    top speaker whose name holds it or is held by it."""
    for name in names:
        found = _same_name(name, speakers)
        if found is not None:
            return found
        held = [s for s in top if _holds(name, s)]
        if len(held) == 1:
            return held[0]
    return None


def _mention(name: str) -> re.Pattern[str] | None:
    """Where ``name`` is said in a text: anywhere for a CJK name, as whole words otherwise."""
    clean = unicodedata.normalize("NFKC", name).strip()
    if len(_norm(clean)) < 2:
        return None
    n = re.escape(clean)
    return re.compile(n if _CJK.search(clean) else rf"(?<![^\W_]){n}(?![^\W_])", re.IGNORECASE)


def _said_most(text: str, top: Sequence[str]) -> str | None:
    """The top speaker a text names more often than any other (at least once)."""
    text = unicodedata.normalize("NFKC", text)
    counts = []
    for s in top:
        pattern = _mention(s)
        counts.append((len(pattern.findall(text)) if pattern else 0, s))
    counts.sort(key=lambda x: -x[0])
    if not counts or counts[0][0] == 0 or (len(counts) > 1 and counts[1][0] == counts[0][0]):
        return None
    return counts[0][1]


_CUE = re.compile(
    r"你是|你就是|你叫|扮演|\b(?:you are|you're|act like|act as|role-?play(?:ing)? as|"
    r"play(?:ing)? the role of|play(?:ing)? as|pretend to be)\b",
    re.IGNORECASE,
)
_POSSESSIVE = re.compile(r"\s*(?:['’]s\b|的|之)")


def _persona_names(persona: str, top: Sequence[str]) -> str | None:
    """The top speaker a persona makes the model be ("你是X", "扮演X", "You are X", "act like
    X"), else the one it names most; nobody when it makes the model someone related to a
    speaker ("You are X's friend": then who X's friend is, it does not say)."""
    text = unicodedata.normalize("NFKC", persona)
    patterns = [(s, p) for s in top if (p := _mention(s)) is not None]
    related = False
    for cue in _CUE.finditer(text):
        window = text[cue.end() : cue.end() + CUE_WINDOW]
        hits = []
        for s, pattern in patterns:
            m = pattern.search(window)
            if m is None:
                continue
            if _POSSESSIVE.match(window, m.end()):
                related = True
            else:
                hits.append((m.start(), -len(s), s))
        if hits:
            return min(hits)[2]
    return None if related else _said_most(text, top)


@dataclass(frozen=True)
class SpeakerHints:
    """What a role says about which speaker is its character (see :func:`choose_speaker`)."""

    speaker: str | None = None  # asked for (--speaker): must be a speaker
    own_name: str | None = None  # the name in a config rolecast wrote: taken as it is
    names: tuple[str, ...] = ()  # the folder, zip role or file name
    header: str = ""  # gradio_header.md
    config_name: str | None = None  # the role_name of a foreign config
    persona: str = ""
    user_role: str | None = None  # asked for (--user-role): not the character, unless asked


def speaker_listing(counts: Counter[str], limit: int = 8) -> str:
    """The speakers with the most lines, with their counts: "春日 (590), 阿虚 (296), ..."."""
    shown = ", ".join(f"{s} ({n})" for s, n in counts.most_common(limit))
    more = len(counts) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def choose_speaker(counts: Counter[str], hints: SpeakerHints) -> tuple[str, list[str]]:
    """The character among the speakers of a canon (``counts``: lines per speaker), and notes
    for the user when the choice may be wrong.

    An explicit ``hints.speaker`` wins (matched but for case and spaces; an unknown one is an
    :class:`InputError` listing the speakers); then a name in a config rolecast wrote; then
    the first speaker named by the folder name, ``gradio_header.md``, a foreign config or the
    persona; then the one with the most lines.
    """
    ranked = [s for s, _ in counts.most_common()]
    if hints.speaker is not None:
        found = _same_name(hints.speaker, ranked)
        if found is None:
            raise InputError(
                f"no line is spoken by {hints.speaker!r}; speakers found: {speaker_listing(counts)}"
            )
        return found, []
    if hints.own_name:
        return hints.own_name, []
    pool = [s for s in ranked if _same_name(hints.user_role, [s]) is None] or ranked
    top = pool[:CANDIDATES]
    config = (hints.config_name,) if hints.config_name else ()
    steps: list[tuple[str, Callable[[], str | None]]] = [
        ("the folder name", lambda: _named_by(hints.names, pool, top)),
        (HEADER, lambda: _said_most(hints.header, top)),
        ("the role's config", lambda: _named_by(config, pool, top)),
        ("the persona", lambda: _persona_names(hints.persona, top)),
    ]
    for why, step in steps:
        found = step()
        if found is None:
            continue
        notes = []
        if found != pool[0]:
            notes.append(
                f"the character is {found} ({counts[found]} lines), named by {why}, not "
                f"{pool[0]} who has the most lines ({counts[pool[0]]}); use --speaker NAME "
                "to choose another"
            )
        return found, notes
    name, notes = pool[0], []
    if len(pool) > 1 and counts[pool[1]] >= CLOSE_SHARE * counts[name]:
        notes.append(
            f"took {name} ({counts[name]} lines) as the character over {pool[1]} "
            f"({counts[pool[1]]} lines) only because they speak more; nothing else names the "
            "character: use --speaker NAME to choose"
        )
    return name, notes


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def persona_is_missing(persona: str) -> bool:
    """True for no persona, or one too short to describe anyone (Megumi's "N")."""
    return _width(persona.strip()) < MIN_PERSONA_WIDTH


_DRAFT = {
    "zh": (
        "你是{name}{origin}。{partner}\n{name}说话的样子（原作里的台词）：\n{lines}\n"
        "回答时照着{name}的口吻、用词和态度说话。"
    ),
    "en": (
        "You are {name}{origin}.{partner}\nHow {name} talks (lines from the original):\n"
        "{lines}\nAnswer in {name}'s tone, wording and attitude."
    ),
}


def _quoted_lines(c: Character, k: int = DRAFT_LINES) -> list[str]:
    """Up to ``k`` of the character's lines, spread over the canon, none very short or long."""
    said: list[str] = []
    for scene in c.scenes:
        for ln in scene.lines:
            text = " ".join(ln.text.split())
            if ln.speaker.strip() == c.name and text and text not in said:
                said.append(text)
    lo, hi = DRAFT_LINE_CHARS
    fit = [t for t in said if lo <= len(t) <= hi] or [t[:hi] for t in said]
    if len(fit) <= k:
        return fit
    return [fit[i * len(fit) // k] for i in range(k)]


def draft_persona(c: Character) -> str:
    """A persona written from the canon alone (no model): who the character is, who they talk
    with, a few of their lines; marked as a draft the way ``ingest package`` marks one."""
    from ..ingest.workdir import DRAFT_MARK

    zh = c.language.startswith("zh")
    has_source = c.source and c.source != default_source(c.language)
    if zh:
        origin = f"，出自{c.source}" if has_source else ""
        partner = f"你常和{c.user_role}说话。" if c.user_role != "user" else ""
        lines = "\n".join(f"- 「{t}」" for t in _quoted_lines(c))
    else:
        origin = f", from {c.source}" if has_source else ""
        partner = f" You often talk with {c.user_role}." if c.user_role != "user" else ""
        lines = "\n".join(f'- "{t}"' for t in _quoted_lines(c))
    body = _DRAFT["zh" if zh else "en"].format(
        name=c.name, origin=origin, partner=partner, lines=lines
    )
    return f"{DRAFT_MARK}\n{body}\n"


_FROM = re.compile(
    r"\b(?:act|acts|acting|play|plays|playing)\s+(?:like|as)\s+[^\n]{1,40}?\s+from\s+"
    r"(?P<src>[^\n.,;!?。，；！？]{2,60})",
    re.IGNORECASE,
)
_BOOK = re.compile(r"《(?P<src>[^》\n]{1,40})》")


def source_from_persona(persona: str, language: str) -> str | None:
    """The work a persona says the character is from ("act like X from Y", 《Y》)."""
    m = _BOOK.search(persona) or _FROM.search(persona)
    if m is None:
        return None
    src = m["src"].strip()
    return f"《{src}》" if language.startswith("zh") and not m.group(0).startswith("《") else src


def imported_from(origin: str) -> str:
    return f"imported from the ChatHaruhi role {origin}"


def character_from_stories(
    stories: Sequence[tuple[str, str, str, str | Path]],
    persona: str,
    cid: str,
    origin: str,
    where: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    hints: SpeakerHints | None = None,
) -> ImportResult:
    """Scenes from ``(id, title, dialogue text, where)`` stories; the character (see
    :func:`choose_speaker`), user role and language inferred (``where`` names the story in
    problems: a file, or a row of a file; ``origin`` names the role in the description).

    ``meta`` (from a role's config) overrides what is inferred: name, user_role, language,
    narrators, aliases, greetings, description, source. A persona too short to use is replaced
    by a draft (:func:`draft_persona`) unless the config is one rolecast wrote.
    """
    meta = meta or {}
    hints = hints or SpeakerHints()
    user_role = hints.user_role
    if user_role is not None:
        user_role = user_role.strip()
        if not user_role:
            raise InputError("the user role must not be empty")
    own = bool(meta.get("own"))
    result = ImportResult(Character(id=valid_id(cid), name="", persona=persona))
    speakers: Counter[str] = Counter()
    scenes: list[Scene] = []
    for sid, title, text, story_where in stories:
        parsed = parse_dialogue(text, path=story_where)
        result.problems.extend(parsed.problems)
        result.repaired.extend(parsed.repaired)
        if not parsed.lines:
            continue
        scenes.append(Scene(sid, title, tuple(parsed.lines)))
        speakers.update(ln.speaker.strip() for ln in parsed.lines if not _is_narrator(ln.speaker))
    if not speakers:
        raise ParseError(f"no spoken line found in {len(stories)} stories", where)

    name_meta = str(meta.get("name") or "") or None
    name, notes = choose_speaker(
        speakers,
        SpeakerHints(
            speaker=hints.speaker,
            own_name=name_meta if own else None,
            names=hints.names,
            header=hints.header,
            config_name=None if own else name_meta,
            persona=persona,
            user_role=user_role,
        ),
    )
    result.notes.extend(notes)
    if user_role is not None and _same_name(user_role, [name]) is not None:
        raise InputError(
            f"the user role {user_role!r} is the character itself; choose another role"
        )
    cues: Counter[str] = Counter()  # who speaks right before the character: the usual partner
    for scene in scenes:
        for prev, cur in zip(scene.lines, scene.lines[1:], strict=False):
            p = prev.speaker.strip()
            if cur.speaker.strip() == name and p not in ("", name) and not _is_narrator(p):
                cues[p] += 1
    sample = "".join(ln.text for s in scenes[:50] for ln in s.lines)
    cjk = len(_CJK.findall(sample)) / max(len(sample), 1)
    language = str(meta.get("language") or ("zh" if cjk > 0.2 else "en"))
    narrators = sorted(
        {
            ln.speaker.strip()
            for s in scenes
            for ln in s.lines
            if ln.speaker.strip() and _is_narrator(ln.speaker)
        }
    ) or [default_narrator(language)]

    if user_role is not None:
        user_role = _same_name(user_role, [s for s, _ in speakers.most_common()]) or user_role
        if user_role not in speakers:
            result.notes.append(
                f"the user role {user_role} speaks no line in the canon; speakers found: "
                f"{speaker_listing(speakers, 5)}"
            )
    else:
        user_role = str(meta.get("user_role") or (cues.most_common(1)[0][0] if cues else "user"))
    c = result.character
    c.name = name
    c.scenes = scenes
    c.language = language
    c.source = str(
        meta.get("source") or source_from_persona(persona, language) or default_source(language)
    )
    c.user_role = user_role
    c.narrators = [str(n) for n in meta.get("narrators") or narrators]
    c.aliases = [str(a) for a in meta.get("aliases") or []]
    c.greetings = [str(g) for g in meta.get("greetings") or []]
    c.description = str(meta.get("description") or imported_from(origin))
    if not own and persona_is_missing(persona):
        c.persona = draft_persona(c)
        what = f"the persona {persona.strip()!r} is too short" if persona.strip() else "no persona"
        result.notes.append(
            f"{what}: wrote a draft from the canon, marked as a draft; read and edit persona.md"
        )
    return result


# ---------------------------------------------------------------- story folder


def import_story_folder(
    path: str | Path,
    cid: str | None = None,
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> ImportResult:
    """A ChatHaruhi story folder, with its 1.0 scene images attached to canon lines; the
    character is ``speaker``, else the one the folder name, ``gradio_header.md`` or the persona
    names, else the one with the most lines."""
    root = Path(path)
    texts = root / "texts"
    if not texts.is_dir():
        raise ParseError("not a ChatHaruhi story folder: it has no texts/ folder", root)
    own = _OwnFiles(root)
    files = sorted(
        (own(f) for f in own(texts).iterdir() if f.suffix == ".txt" and own.is_file(f)),
        key=lambda f: _natural_key(f.stem),
    )
    if not files:
        raise ParseError("holds no .txt story files", texts)
    stories = [(f.stem, f.stem, decode_text(f.read_bytes(), f), f) for f in files]
    prompt = root / "system_prompt.txt"
    persona = decode_text(own(prompt).read_bytes(), prompt).strip() if own.is_file(prompt) else ""
    header = root / HEADER
    hints = SpeakerHints(
        speaker=speaker,
        names=(root.name,),
        header=decode_text(own(header).read_bytes(), header) if own.is_file(header) else "",
        user_role=user_role,
    )
    result = character_from_stories(
        stories, persona, cid or root.name, root.name, texts, hints=hints
    )
    images, lookup = root / "images", root / "text_image_dict.txt"
    subtitles = _subtitles(own(lookup)) if own.is_file(lookup) else []
    if own.is_dir(images):
        pictures = {
            f.name: own(f).read_bytes()
            for f in sorted(own(images).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES and own.is_file(f)
        }
        result.character.scenes = attach_images(result.character, pictures, subtitles)
        result.images.update(pictures)
    elif subtitles:
        result.notes.append(
            f"{lookup} names {len(subtitles)} frames but there is no images/ folder: "
            "no scene images imported"
        )
    return result


class _OwnFiles:
    """The files of a story folder, each refused (a ``ParseError`` naming it) when it is a
    symbolic link or leads outside the folder: a link would import whatever it points at
    (``/etc/passwd`` as the persona)."""

    def __init__(self, root: Path):
        self.real = root.resolve()

    def __call__(self, path: Path) -> Path:
        if path.is_symlink():
            raise ParseError(
                "is a symbolic link; a story folder must hold its files themselves, not links "
                "to them: copy the file in",
                path,
            )
        try:
            inside = path.resolve().is_relative_to(self.real)
        except (OSError, RuntimeError):  # a loop of links
            inside = False
        if not inside:
            raise ParseError("leads outside the story folder (through a linked folder)", path)
        return path

    def is_file(self, path: Path) -> bool:
        """Whether ``path`` is a file of the folder; a link is refused, not skipped."""
        return path.is_file() or path.is_symlink()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir() or path.is_symlink()


def _subtitles(path: Path) -> list[str]:
    """The caption lines of a 1.0 ``text_image_dict.txt`` (caption, frame name, caption, ...)."""
    rows = [r.strip() for r in decode_text(path.read_bytes(), path).splitlines() if r.strip()]
    return rows[0::2]


_NOISE = re.compile(r"[\W_]+", re.UNICODE)


def _norm(text: str) -> str:
    return _NOISE.sub("", unicodedata.normalize("NFKC", text)).lower()


def attach_images(
    character: Character, pictures: Iterable[str], subtitles: Sequence[str] = ()
) -> list[Scene]:
    """Attach each picture (named after the line it shows, as in ChatHaruhi 1.0) to a canon line.

    A picture's caption is its file name, or the full subtitle line of ``text_image_dict.txt``
    that holds it (file names are often shortened). The line is the character's own line whose
    text matches the caption (equal after dropping spaces and punctuation, else one holding the
    other at >= 60% of its length); a caption that matches no line becomes a line of the
    character in a ``frames`` scene, so it is still shown.
    """
    full = [(_norm(s), s) for s in subtitles]
    scenes = [list(s.lines) for s in character.scenes]
    own = [
        (si, li, _norm(ln.text))
        for si, s in enumerate(scenes)
        for li, ln in enumerate(s)
        if character.is_self(ln.speaker)
    ]
    orphans: list[Line] = []
    for name in pictures:
        stem = PurePosixPath(name).stem.strip()
        caption = _norm(stem)
        if len(caption) < 2:
            continue
        longer = [(n, s) for n, s in full if caption in n]
        if longer:  # the whole subtitle line the file name was cut from
            caption, stem = min(longer, key=lambda x: len(x[0]))
        exact = [(si, li) for si, li, t in own if t == caption]
        near = [  # one holds the other and they are close in length: a trimmed subtitle
            (si, li)
            for si, li, t in own
            if (caption in t or t in caption)
            and min(len(t), len(caption)) >= NEAR_SHARE * max(len(t), len(caption))
        ]
        spot: tuple[int, int] | None = (exact or near or [None])[0]  # type: ignore[list-item]
        if spot is None:
            orphans.append(Line(character.name, stem, image=name))
            continue
        si, li = spot
        if scenes[si][li].image is None:
            ln = scenes[si][li]
            scenes[si][li] = Line(ln.speaker, ln.text, ln.start, ln.end, f"images/{name}")
    out = [
        Scene(s.id, s.title, tuple(lines))
        for s, lines in zip(character.scenes, scenes, strict=True)
    ]
    if orphans:
        lines = tuple(Line(o.speaker, o.text, image=f"images/{o.image}") for o in orphans)
        out.append(Scene(FRAMES_SCENE, "scene frames", lines))
    return out


# ---------------------------------------------------------------- role JSONL


def _float_count(value: str, where: str, row: int, column: str) -> int:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"column {column!r}: invalid base64", where, row) from None
    if len(raw) % 4 or not raw or len(raw) // 4 > MAX_DIM:
        raise ParseError(
            f"column {column!r}: {len(raw)} bytes is not a vector of float32", where, row
        )
    return len(raw) // 4


def decode_vector(value: str) -> tuple[float, ...]:
    """A ChatHaruhi vector: base64 of big-endian float32."""
    raw = base64.b64decode(value, validate=True)
    return struct.unpack(f">{len(raw) // 4}f", raw)


def encode_vector(values: Iterable[float]) -> str:
    vals = list(values)
    return base64.b64encode(struct.pack(f">{len(vals)}f", *vals)).decode()


def import_role_jsonl(
    data: bytes,
    cid: str | None = None,
    where: str | Path = "<jsonl>",
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> ImportResult:
    """Role rows as published on Hugging Face; foreign vectors are kept, checked for shape.
    The file's name (``where``) is the role's name when choosing the character."""
    if len(data) > MAX_FILE:
        raise ParseError(f"larger than {MAX_FILE} bytes", where)
    text = decode_text(data, where)
    persona, meta = "", {}
    stories: list[tuple[str, str, str, str | Path]] = []
    kept: dict[str, dict[str, str]] = {}
    dims: dict[str, int] = {}
    for lineno, raw in enumerate(jsonl_rows(text), start=1):
        if not raw.strip():
            continue
        if lineno > MAX_ROWS:
            raise ParseError(f"more than {MAX_ROWS} rows", where)
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ParseError(f"invalid JSON: {exc}", where, lineno) from None
        if not isinstance(row, dict):
            raise ParseError("each row must be a JSON object", where, lineno)
        body = _row_text(row, where, lineno)
        columns = {k: v for k, v in row.items() if k not in ("text", "enc_text")}
        if not columns:
            raise ParseError("row has no embedding column next to its text", where, lineno)
        marks = set(columns.values())
        if "system_prompt" in marks:
            persona = body.strip()
            continue
        if "config" in marks:
            meta = _config(body, where, lineno)
            continue
        ids = meta.get("scene_ids") or []
        n = len(stories)
        sid = str(ids[n]) if n < len(ids) else f"story-{n + 1:04d}"
        titles = meta.get("scene_titles") or []
        title = str(titles[n]) if n < len(titles) else sid
        stories.append((sid, title, body, f"{where} row {lineno}"))
        for column, value in columns.items():
            if not isinstance(value, str):
                raise ParseError(f"column {column!r} must be a base64 string", where, lineno)
            if column == OWN_COLUMN:
                continue  # ours, re-made from the canon whenever needed
            dim = _float_count(value, str(where), lineno, column)
            if dims.setdefault(column, dim) != dim:
                raise ParseError(
                    f"column {column!r}: vector of {dim} floats where earlier rows have "
                    f"{dims[column]}",
                    where,
                    lineno,
                )
            kept.setdefault(column, {})[sid] = value
    if not stories:
        raise ParseError("no story rows (only a system prompt or config, or nothing)", where)
    name = cid or str(meta.get("id") or "") or Path(str(where)).stem
    hints = SpeakerHints(speaker=speaker, names=(Path(str(where)).stem,), user_role=user_role)
    result = character_from_stories(
        stories, persona, slug_id(name), Path(str(where)).name, where, meta, hints=hints
    )
    result.character.vectors = kept
    return result


def _row_text(row: dict[str, Any], where: str | Path, lineno: int) -> str:
    if "text" in row:
        if not isinstance(row["text"], str):
            raise ParseError("'text' must be a string", where, lineno)
        return str(row["text"])
    if "enc_text" in row:
        enc = row["enc_text"]
        if not isinstance(enc, str):
            raise ParseError("'enc_text' must be a base64 string", where, lineno)
        try:
            return base64.b64decode(enc, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ParseError("'enc_text' is not base64 of UTF-8 text", where, lineno) from None
    raise ParseError("row has neither 'text' nor 'enc_text'", where, lineno)


_META_KEYS = {
    "id": str,
    "name": str,
    "user_role": str,
    "language": str,
    "source": str,
    "description": str,
    "aliases": list,
    "narrators": list,
    "greetings": list,
    "scene_ids": list,
    "scene_titles": list,
}


def _config(body: str, where: str | Path, lineno: int) -> dict[str, Any]:
    """The config row: ours carries what stories cannot; a foreign one is read where it can be."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    meta = obj.get("rolecast", obj)
    if not isinstance(meta, dict):
        raise ParseError("config row: 'rolecast' must be an object", where, lineno)
    out: dict[str, Any] = {"own": "rolecast" in obj}  # ours: its name and persona are exact
    if isinstance(obj.get("role_name"), str):
        out["name"] = obj["role_name"]
    for key, kind in _META_KEYS.items():
        if key not in meta:
            continue
        val = meta[key]
        if not isinstance(val, kind) or (kind is list and not all(isinstance(v, str) for v in val)):
            raise ParseError(f"config row: {key!r} has the wrong type", where, lineno)
        out[key] = val
    return out


def export_role_jsonl(
    character: Character, embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None
) -> bytes:
    """Role rows: system prompt, a config row with what stories cannot carry, one row per scene.

    Foreign vector columns that cover every scene are written back as they came; otherwise
    ``embed`` (scene texts -> vectors) fills a ``rolecast`` column so the file is complete.
    """
    texts = [_story_text(s) for s in character.scenes]
    ids = [s.id for s in character.scenes]
    columns = {col: rows for col, rows in character.vectors.items() if all(i in rows for i in ids)}
    if not columns:
        vectors = embed(texts) if embed is not None and texts else [[] for _ in texts]
        columns = {OWN_COLUMN: {i: encode_vector(v) for i, v in zip(ids, vectors, strict=True)}}
    config = {
        "role_name": character.name,
        "rolecast": {
            "id": character.id,
            "name": character.name,
            "user_role": character.user_role,
            "language": character.language,
            "source": character.source,
            "description": character.description,
            "aliases": character.aliases,
            "narrators": character.narrators,
            "greetings": character.greetings,
            "scene_ids": ids,
            "scene_titles": [s.title for s in character.scenes],
        },
    }
    out = io.StringIO()

    def row(text: str, values: dict[str, str]) -> None:
        out.write(json.dumps({"text": text, **values}, ensure_ascii=False) + "\n")

    row(character.persona, dict.fromkeys(columns, "system_prompt"))
    row(json.dumps(config, ensure_ascii=False), dict.fromkeys(columns, "config"))
    for sid, text in zip(ids, texts, strict=True):
        row(text, {col: rows[sid] for col, rows in columns.items()})
    return out.getvalue().encode("utf-8")


def _story_text(scene: Scene) -> str:
    """A scene as ChatHaruhi story text; narration without a speaker keeps its bare ``:``."""
    return "\n".join(
        f":{ln.text}" if not ln.speaker.strip() else format_dialogue([ln], ()) for ln in scene.lines
    )


# ---------------------------------------------------------------- role zip


def import_role_zip(
    data: bytes,
    cid: str | None = None,
    where: str | Path = "<zip>",
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> ImportResult:
    """A ChatHaruhi 2.0 role zip: stories from Chroma's SQLite file, no chromadb needed. The
    role's folder in the zip, then the zip's own name, name the character."""
    if len(data) > MAX_FILE:
        raise ParseError(f"larger than {MAX_FILE} bytes", where)
    # one member (the SQLite file) may be as large as a role file; the rest is small
    with SafeZip(
        data,
        lambda message: ParseError(message, where),
        max_member=MAX_FILE,
        max_total=2 * MAX_FILE,
    ) as zf:
        dbs = [n for n in zf.names if PurePosixPath(n).name == "chroma.sqlite3"]
        if len(dbs) != 1:
            raise ParseError(
                f"a role zip holds one content/<role>/chroma.sqlite3; found {len(dbs)}", where
            )
        parts = PurePosixPath(dbs[0]).parts
        role = parts[-2] if len(parts) >= 2 else "role"
        db = zf.read(dbs[0])
        prompts = [n for n in zf.names if PurePosixPath(n).name == "system_prompt.txt"]
        persona = ""
        if prompts:
            persona = decode_text(zf.read(prompts[0]), where).strip()
    docs = read_chroma_documents(db, where)
    stories = [
        (f"story-{n:04d}", f"story-{n:04d}", d, f"{where} document {n}")
        for n, d in enumerate(docs, start=1)
    ]
    names = (role, PurePosixPath(str(where)).stem)
    hints = SpeakerHints(speaker=speaker, names=names, user_role=user_role)
    return character_from_stories(stories, persona, slug_id(cid or role), role, where, hints=hints)


def read_chroma_documents(db: bytes, where: str | Path = "<chroma.sqlite3>") -> list[str]:
    """The documents of a Chroma (0.4) SQLite file in insertion order, read-only."""
    if not db.startswith(b"SQLite format 3\x00"):
        raise ParseError("chroma.sqlite3 is not an SQLite database", where)
    with tempfile.NamedTemporaryFile(suffix=".sqlite3") as tmp:
        tmp.write(db)
        tmp.flush()
        try:
            con = sqlite3.connect(f"file:{tmp.name}?mode=ro&immutable=1", uri=True)
            try:
                rows = con.execute(
                    "SELECT m.string_value FROM embedding_metadata m "
                    "JOIN embeddings e ON e.id = m.id "
                    "WHERE m.key = 'chroma:document' ORDER BY e.id"
                ).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise ParseError(f"chroma.sqlite3 cannot be read: {exc}", where) from None
        except UnicodeDecodeError as exc:  # SQLite's message quotes a damaged schema's bytes
            detail = exc.object.decode("utf-8", "replace") if isinstance(exc.object, bytes) else exc
            raise ParseError(f"chroma.sqlite3 cannot be read: {detail}", where) from None
    docs = [r[0] for r in rows if isinstance(r[0], str) and r[0].strip()]
    if not docs:
        raise ParseError("chroma.sqlite3 holds no documents", where)
    return docs


# ---------------------------------------------------------------- detection and Hugging Face


def import_chatharuhi(
    path: str | Path,
    cid: str | None = None,
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> ImportResult:
    """A story folder, a role JSONL or a role zip, told apart by what the path holds."""
    p = Path(path)
    choice = {"speaker": speaker, "user_role": user_role}
    if p.is_dir():
        return import_story_folder(p, cid, **choice)
    if not p.is_file():
        raise ParseError("no such file or folder", p)
    if p.stat().st_size > MAX_FILE:
        raise ParseError(f"larger than {MAX_FILE} bytes", p)
    data = p.read_bytes()
    if data.startswith(b"PK\x03\x04"):
        return import_role_zip(data, cid, p, **choice)
    return import_role_jsonl(data, cid, p, **choice)


HF_PREFIX = "hf://"


def import_hf(
    spec: str,
    cid: str | None = None,
    download: Callable[[str, str], str] | None = None,
    *,
    speaker: str | None = None,
    user_role: str | None = None,
) -> ImportResult:
    """``hf://OWNER/DATASET/ROLE`` (``.jsonl`` added when missing) through huggingface_hub;
    the address goes in the description."""
    rest = spec.removeprefix(HF_PREFIX)
    parts = rest.split("/")
    if not spec.startswith(HF_PREFIX) or len(parts) < 3 or any(p in ("", ".", "..") for p in parts):
        raise ParseError("expected hf://OWNER/DATASET/ROLE", spec)
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    if not filename.endswith(".jsonl"):
        filename += ".jsonl"
    if download is None:
        download = _hf_download
    local = download(repo, filename)
    result = import_chatharuhi(
        local, cid or slug_id(PurePosixPath(filename).stem), speaker=speaker, user_role=user_role
    )
    c = result.character
    if c.description == imported_from(Path(local).name):
        c.description = imported_from(spec)
    return result


def _hf_download(repo: str, filename: str) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("hf:// imports", "huggingface_hub", "hf") from None
    return str(hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset"))
