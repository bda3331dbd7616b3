"""ChatHaruhi story folders: ``texts/*.txt`` (one scene per file) + ``system_prompt.txt``."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..character.dialogue import read_dialogue_file
from ..character.model import DEFAULT_NARRATORS, Character, Scene
from ..character.package import valid_id
from ..errors import ParseError, RolecastError

_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@dataclass
class ImportResult:
    character: Character
    problems: list[ParseError] = field(default_factory=list)  # lines left out
    repaired: list[ParseError] = field(default_factory=list)  # lines kept after a repair


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def _is_narrator(speaker: str) -> bool:
    s = speaker.strip().lower()
    return s == "" or s in {n.lower() for n in DEFAULT_NARRATORS}


def import_story_folder(path: str | Path, cid: str | None = None) -> ImportResult:
    """Read a ChatHaruhi story folder into a Character (not yet saved)."""
    root = Path(path)
    texts = root / "texts"
    if not texts.is_dir():
        raise RolecastError(f"{root} is not a ChatHaruhi story folder: it has no texts/ folder")
    files = sorted(
        (f for f in texts.iterdir() if f.suffix == ".txt" and f.is_file()), key=_natural_key
    )
    if not files:
        raise RolecastError(f"{texts} holds no .txt story files")
    prompt_file = root / "system_prompt.txt"
    persona = (
        prompt_file.read_bytes().decode("utf-8-sig", "replace").strip()
        if prompt_file.is_file()
        else ""
    )

    result = ImportResult(Character(id=valid_id(cid or root.name), name="", persona=persona))
    speakers: Counter[str] = Counter()
    scenes: list[Scene] = []
    for f in files:
        parsed = read_dialogue_file(f)
        result.problems.extend(parsed.problems)
        result.repaired.extend(parsed.repaired)
        if not parsed.lines:
            continue
        scenes.append(Scene(f.stem, f.stem, tuple(parsed.lines)))
        speakers.update(ln.speaker.strip() for ln in parsed.lines if not _is_narrator(ln.speaker))
    if not speakers:
        raise RolecastError(f"{texts}: no spoken line found in {len(files)} files")

    name = speakers.most_common(1)[0][0]
    cues: Counter[str] = Counter()  # who speaks right before the character: the usual partner
    for scene in scenes:
        for prev, cur in zip(scene.lines, scene.lines[1:], strict=False):
            if cur.speaker.strip() == name and prev.speaker.strip() not in ("", name):
                if not _is_narrator(prev.speaker):
                    cues[prev.speaker.strip()] += 1
    sample = "".join(ln.text for s in scenes[:50] for ln in s.lines)
    cjk = len(_CJK.findall(sample)) / max(len(sample), 1)
    narrators = sorted(
        {
            ln.speaker.strip()
            for s in scenes
            for ln in s.lines
            if ln.speaker.strip() and _is_narrator(ln.speaker)
        }
    ) or ["旁白"]

    c = result.character
    c.name = name
    c.scenes = scenes
    c.language = "zh" if cjk > 0.2 else "en"
    c.source = root.name
    c.user_role = cues.most_common(1)[0][0] if cues else "user"
    c.narrators = narrators
    c.description = f"imported from the ChatHaruhi story folder {root.name}"
    return result
