"""Acceptance over the real ChatHaruhi corpus: set ROLECAST_CORPUS to its folder.

The corpus is CC BY-NC 4.0 and excerpts of copyrighted works: it is read from
where it lies, never copied into the repository.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from rolecast.backends.scripted import ScriptedLLM
from rolecast.character.package import load_character, save_character
from rolecast.formats.chatharuhi import import_story_folder
from rolecast.prompt.assemble import Budget
from rolecast.retrieval.index import load_index
from rolecast.session import Session

from conftest import corpus_root

ROOT = corpus_root()
pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        ROOT is None,
        reason="ROLECAST_CORPUS is not set: the real-corpus "
        "acceptance tests need the ChatHaruhi corpus folder",
    ),
]
CHARACTERS = {  # folder: (character name, language)
    "haruhi": ("春日", "zh"),
    "Sheldon": ("Sheldon", "en"),
    "Harry": ("Harry", "en"),
    "weixiaobao": ("韦小宝", "zh"),
    "zhongli": ("钟离", "zh"),
    "liyunlong": ("李云龙", "zh"),
}
QUERIES = {
    "zh": ["你好，你是谁？", "我们去吃饭吧", "你最怕什么？"],
    "en": ["Hello, who are you?", "Let's get something to eat.", "What scares you?"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, embedder):
    base = tmp_path_factory.mktemp("corpus")
    cache: dict[str, tuple] = {}

    def get(folder: str):
        if folder not in cache:
            assert ROOT is not None
            result = import_story_folder(ROOT / "characters" / folder)
            path = save_character(result.character, base / "chars" / folder)
            character = load_character(path)
            cache[folder] = (result, character, load_index(character, embedder, base / "index"))
        return cache[folder]

    return get


@pytest.mark.parametrize("folder", list(CHARACTERS))
def test_import_build_retrieve_assemble(built, folder: str, counter) -> None:
    result, character, index = built(folder)
    name, language = CHARACTERS[folder]
    assert character.name == name and character.language == language
    n_files = len(list((ROOT / "characters" / folder / "texts").glob("*.txt")))
    assert len(character.scenes) >= n_files - 2
    assert character.persona.strip()
    for p in result.problems:  # every skipped line is named with file and line
        assert p.path is not None and p.line is not None
    session = Session(character, index, ScriptedLLM(), budget=Budget(), counter=counter)
    for query in QUERIES[language]:
        report = session.prepare(query)
        assert report.hits and report.assembly.scene_ids
        assert report.assembly.parts["canon"] <= 1500


def _distinct_lines(character) -> dict[str, str]:
    owners: Counter[str] = Counter(ln.text for s in character.scenes for ln in s.lines)
    out = {}
    for scene in character.scenes:
        good = [
            ln.text
            for ln in scene.lines
            if owners[ln.text] == 1 and len(ln.text) >= 12 and not character.is_narrator(ln.speaker)
        ]
        if good:
            out[scene.id] = max(good, key=len)
    return out


@pytest.mark.parametrize("folder", list(CHARACTERS))
def test_quoting_a_line_retrieves_its_scene_first(built, folder: str) -> None:
    _, character, index = built(folder)
    lines = _distinct_lines(character)
    rng = random.Random(0)
    sample = rng.sample(sorted(lines), min(40, len(lines)))
    misses = [
        (sid, lines[sid]) for sid in sample if index.search(lines[sid], k=1)[0].scene.id != sid
    ]
    assert not misses, misses[:5]


def test_haruhi_speaks_to_kyon() -> None:
    assert ROOT is not None
    result = import_story_folder(ROOT / "characters" / "haruhi")
    assert result.character.user_role == "阿虚"
    assert (
        Path(ROOT / "characters" / "haruhi" / "system_prompt.txt")
        .read_text(encoding="utf-8")
        .strip()
        == result.character.persona
    )
