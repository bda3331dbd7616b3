"""The local backend with real models: llama.cpp in process."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rolecast.backends import models
from rolecast.backends.base import GenerationParams
from rolecast.backends.local import LocalLLM
from rolecast.errors import BackendError, UnknownNameError
from rolecast.retrieval.index import load_index
from rolecast.session import Session

from conftest import make_english_character

pytestmark = pytest.mark.e2e  # the local backend with real GGUF models


@pytest.fixture(scope="module")
def smollm2() -> LocalLLM:
    return LocalLLM(model="smollm2", n_ctx=2048, seed=7)


def test_streams_a_real_reply(smollm2: LocalLLM) -> None:
    params = GenerationParams(max_tokens=24, temperature=0.0, seed=7)
    messages = [{"role": "user", "content": "Say hello."}]
    chunks = list(smollm2.stream(messages, params))
    assert len(chunks) > 1 and "".join(chunks).strip()
    stopped = "".join(smollm2.stream(messages, GenerationParams(max_tokens=24, stop=("o",))))
    assert "o" not in stopped  # stop sequences reach llama.cpp


def test_a_reply_may_be_kept_from_beginning_as_others_did(smollm2: LocalLLM) -> None:
    messages = [{"role": "user", "content": "Say hello to Bob."}]
    greedy = GenerationParams(max_tokens=8, temperature=0.0, seed=7)
    first = "".join(smollm2.stream(messages, greedy))
    second = "".join(smollm2.stream(messages, replace(greedy, avoid=(first,))))
    third = "".join(smollm2.stream(messages, replace(greedy, avoid=(first, second))))
    tok = smollm2._first_tokens
    assert tok([first]) != tok([second]) and tok([third]) not in (tok([first]), tok([second]))
    assert "".join(smollm2.stream(messages, greedy)) == first  # and nothing stays forbidden


def test_exact_token_counter(smollm2: LocalLLM) -> None:
    counter = smollm2.token_counter()
    assert counter.count("") == 0
    assert counter.count("hello world") == len(smollm2._llm.tokenize(b"hello world", add_bos=False))


def test_whole_pipeline_with_a_real_model(smollm2: LocalLLM, tmp_path: Path, embedder) -> None:
    c = make_english_character()  # SmolLM2 speaks English only
    s = Session(
        c,
        load_index(c, embedder),
        smollm2,
        params=GenerationParams(max_tokens=32, seed=3),
    )
    assert s.budget is not None and s.budget.total == 2048 - 32
    assert s.counter is not None and s.counter.name.startswith("gguf:")
    pieces = list(s.say("The cat is back and it took your fish!"))
    assert s.last is not None and s.last.reply.strip()
    assert "".join(pieces) == s.last.reply
    assert not s.last.reply.startswith(("Mia:", "「"))  # the name prefix and bracket are gone
    assert [t.speaker for t in s.history] == ["Guest", "Mia"]
    assert s.last.assembly.scene_ids[0] == "cat"
    assert s.last.assembly.parts["total"] <= s.budget.total


def test_unknown_model_lists_the_catalogue() -> None:
    with pytest.raises(UnknownNameError, match="'gpt-7'.*qwen2.5-coder-0.5b.*smollm2"):
        models.resolve_model("gpt-7")


def test_missing_gguf_path() -> None:
    with pytest.raises(BackendError, match="no GGUF model file at /nowhere/x.gguf"):
        models.resolve_model("/nowhere/x.gguf")


def test_default_model_is_assembled_verified_and_reused(rolecast_home: Path) -> None:
    seen: list[tuple[int, int]] = []
    path = models.resolve_model(None, progress=lambda d, n: seen.append((d, n)))
    assert path.parent == rolecast_home / "models"
    assert path.stat().st_size == models.MODELS["qwen2.5-coder-0.5b"].size
    assert seen[-1] == (path.stat().st_size,) * 2
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    seen.clear()
    assert models.resolve_model("qwen") == path and not seen  # verified once, then reused
    assert models.resolve_model("qwen2.5-0.5b") == path  # the name it had before


def test_a_damaged_part_is_refused_and_nothing_is_left(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "fake_model_part"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.bin").write_bytes(b"GGUF-not-really")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_model_part", None)
    spec = models.ModelSpec(
        "fake",
        "fake.gguf",
        (("fake_model_part", "data/a.bin"),) * 2,
        size=30,
        sha256="0" * 64,
        install="pip install fake",
        description="",
    )
    with pytest.raises(BackendError, match="does not match.*Reinstall: pip install fake"):
        models.assemble(spec, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []
    missing = models.ModelSpec(
        "gone", "gone.gguf", (("no_such_pkg_xyz", "a"),), 1, "0", "pip x", ""
    )
    with pytest.raises(BackendError, match="needs the package 'no_such_pkg_xyz'.*pip x"):
        models.assemble(missing, tmp_path / "models")


def _fake_model(tmp_path: Path, monkeypatch, name: str) -> models.ModelSpec:
    import hashlib

    pkg = tmp_path / name
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.bin").write_bytes(b"GGUF" + b"x" * 12)
    (pkg / "data" / "b.bin").write_bytes(b"y" * 16)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    whole = b"GGUF" + b"x" * 12 + b"y" * 16
    return models.ModelSpec(
        "fake",
        "fake.gguf",
        ((name, "data/a.bin"), (name, "data/b.bin")),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install="pip install fake",
        description="",
    )


def test_an_assembled_model_is_trusted_by_size_and_mtime_and_hashed_again_when_touched(
    tmp_path: Path, monkeypatch
) -> None:
    spec = _fake_model(tmp_path, monkeypatch, "fake_model_stamp")
    hashed: list[Path] = []
    real = models.file_sha256
    monkeypatch.setattr(models, "file_sha256", lambda p: hashed.append(p) or real(p))
    path = models.assemble(spec, tmp_path / "models")
    assert path.read_bytes()[:4] == b"GGUF"
    assert models.assemble(spec, tmp_path / "models") == path and not hashed  # no re-hash
    # the same bytes under a new mtime (a copy, a restore): hashed once, then trusted again
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert models.assemble(spec, tmp_path / "models") == path and hashed == [path]
    assert models.assemble(spec, tmp_path / "models") == path and hashed == [path]
    # changed in place, same size: found by the hash and assembled again from the parts
    path.write_bytes(b"GGUF" + b"z" * (spec.size - 4))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
    assert models.assemble(spec, tmp_path / "models") == path
    assert path.read_bytes() == b"GGUF" + b"x" * 12 + b"y" * 16


def test_default_model_answers_a_chinese_question_in_character(tmp_path: Path, embedder) -> None:
    from rolecast.character import store

    c = store.load(store.DEFAULT_CHARACTER)
    llm = LocalLLM(seed=11)  # the embedded default: Qwen2.5-0.5B
    try:
        s = Session(
            c,
            load_index(c, embedder),
            llm,
            params=GenerationParams(max_tokens=60, seed=11),
        )
        reply = s.reply("你好，你是谁？")
    finally:
        llm.close()
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in reply) >= 2, reply  # a Chinese reply
    assert not reply.startswith(("林小满:", "林小满：", "「", "旅人")), reply  # cleaned format
    assert s.last is not None and "s001" in s.last.assembly.scene_ids  # "你是谁" scene retrieved


def test_local_backend_defaults_to_the_split_order(monkeypatch) -> None:
    from rolecast.cli import common, main

    built = []
    monkeypatch.setattr(common, "load_character", lambda name: make_english_character())
    monkeypatch.setattr(
        "rolecast.session.Session.__init__", lambda self, *a, **kw: built.append(kw)
    )
    for argv, order in (
        (["prompt", "mia", "hi", "--backend", "local", "--model", "smollm2"], "split"),
        (
            [
                "prompt",
                "mia",
                "hi",
                "--backend",
                "local",
                "--model",
                "smollm2",
                "--order",
                "classic",
            ],
            "classic",
        ),
        (["prompt", "mia", "hi", "--backend", "echo"], "classic"),
    ):
        common.open_session(main.build_parser().parse_args(argv))
        assert built.pop()["order"] == order


def test_prompt_counts_with_the_models_tokenizer_and_loads_no_weights(
    smollm2: LocalLLM, tmp_path: Path, embedder, capsys, rolecast_home: Path, monkeypatch
) -> None:
    import json

    from rolecast.character.package import save_character
    from rolecast.cli.main import main

    c = make_english_character()
    save_character(c, rolecast_home / "characters" / "mia")
    line = "The cat is back and it took your fish!"
    loaded = Session(c, load_index(c, embedder), smollm2, order="split")
    expected = loaded.prepare(line).assembly.parts
    counter = LocalLLM(model="smollm2", n_ctx=2048, vocab_only=True)
    assert counter.token_counter().count(line) == smollm2.token_counter().count(line)
    with pytest.raises(BackendError, match="count tokens only"):
        next(counter.stream([{"role": "user", "content": "hi"}], GenerationParams()))
    assert counter.warm([{"role": "system", "content": "x"}]) == "none"
    import functools

    made: list[dict] = []
    real = LocalLLM.__init__

    @functools.wraps(real)  # the same signature: BackendSpec gives it what LocalLLM takes
    def spy(self, **k):  # type: ignore[no-untyped-def]
        made.append(k)
        real(self, **k)

    monkeypatch.setattr(LocalLLM, "__init__", spy)
    argv = ["prompt", "mia", line, "--json", "--model", "smollm2", "--embedder", "use"]
    assert main(argv) == 0
    assert [k.get("vocab_only") for k in made] == [True]
    shown = json.loads(capsys.readouterr().out)
    assert shown["parts"]["line"] == expected["line"]
    assert shown["parts"]["persona"] == expected["persona"]


def test_a_model_a_package_carries_whole_is_checked_once_and_when_it_changes(
    tmp_path: Path, monkeypatch, rolecast_home: Path
) -> None:
    spec = _fake_model(tmp_path, monkeypatch, "fake_model_whole")
    whole = tmp_path / "whole.gguf"
    whole.write_bytes(b"GGUF" + b"x" * 12 + b"y" * 16)
    hashed: list[Path] = []
    real = models.file_sha256
    monkeypatch.setattr(models, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert models.verified(spec, whole, tmp_path / "stamps") == whole and hashed == [whole]
    assert models.verified(spec, whole, tmp_path / "stamps") == whole and hashed == [whole]
    whole.write_bytes(b"GGUF" + b"z" * (spec.size - 4))  # damaged in place, same size
    os.utime(whole, ns=(whole.stat().st_atime_ns, whole.stat().st_mtime_ns + 10**9))
    with pytest.raises(BackendError, match="damaged \\(its sha256 differs\\).*pip install fake"):
        models.verified(spec, whole, tmp_path / "stamps")
    assert models.resolve_model("smollm2").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (rolecast_home / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf.sha256").is_file()
