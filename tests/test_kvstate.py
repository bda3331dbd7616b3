"""Saved prefix states: keyed, checked, rebuilt when damaged, and the same replies after."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecast.backends import kvstate
from rolecast.backends.base import GenerationParams, LockedLLM
from rolecast.backends.local import LocalLLM

pytestmark = pytest.mark.e2e  # saved KV states of a real model

KEY = {"model": "m.gguf", "prefix": "abc"}


def test_a_state_round_trips_for_its_own_key_only() -> None:
    blob = kvstate.encode(KEY, [1, 2, 3], b"\x00state\xff")
    saved = kvstate.decode(blob, KEY)
    assert saved.tokens == [1, 2, 3] and saved.payload == b"\x00state\xff"
    with pytest.raises(kvstate.StateError, match="another model"):
        kvstate.decode(blob, {**KEY, "prefix": "other persona"})
    with pytest.raises(kvstate.StateError, match="damaged"):
        kvstate.decode(blob[:-1], KEY)  # cut short
    with pytest.raises(kvstate.StateError, match="damaged"):
        kvstate.decode(blob[:-1] + b"\x00", KEY)  # one byte changed
    with pytest.raises(kvstate.StateError, match="not a rolecast state"):
        kvstate.decode(b"GGUF....", KEY)
    with pytest.raises(kvstate.StateError):
        kvstate.decode(kvstate.MAGIC + b"{not json", KEY)


def test_read_removes_what_it_cannot_use(tmp_path: Path) -> None:
    path = tmp_path / "x.kv"
    assert kvstate.read(path, KEY) is None  # none saved
    path.write_bytes(b"garbage")
    assert kvstate.read(path, KEY) is None and not path.exists()
    kvstate.write(path, KEY, [5], b"p")
    assert kvstate.read(path, {**KEY, "model": "another.gguf"}) is None and not path.exists()


def test_the_key_names_the_file_and_the_prefix_digest_the_messages() -> None:
    a = [{"role": "system", "content": "You are Mia."}]
    b = [{"role": "system", "content": "You are Coal."}]
    assert kvstate.prefix_digest(a) != kvstate.prefix_digest(b)
    folder = Path("/x")
    assert kvstate.path_for(KEY, folder) == kvstate.path_for(dict(reversed(KEY.items())), folder)
    assert kvstate.path_for(KEY, folder) != kvstate.path_for({**KEY, "n_ctx": 1}, folder)
    assert kvstate.common_prefix([1, 2, 3], [1, 2, 4]) == 2


# ------------------------------------------------------------------ with a real model

PERSONA = [
    {
        "role": "system",
        "content": "You are Mia, who runs a noodle stall by the bridge. "
        "You talk fast, bargain hard and love your cat Coal. " * 4,
    }
]
TURN = [*PERSONA, {"role": "user", "content": "What do you sell?"}]
GREEDY = GenerationParams(max_tokens=16, temperature=0.0, seed=3)


@pytest.fixture(scope="module")
def smollm2() -> LocalLLM:
    return LocalLLM(model="smollm2", n_ctx=2048, seed=7)


def test_a_saved_prefix_is_loaded_and_replies_stay_the_same(
    smollm2: LocalLLM, tmp_path: Path
) -> None:
    cold = "".join(smollm2.stream(TURN, GREEDY))  # no saved state anywhere
    smollm2.states = tmp_path
    assert smollm2.warm(PERSONA) == "built"
    files = list(tmp_path.glob("*.kv"))
    assert len(files) == 1
    prefix_tokens = smollm2._llm.n_tokens  # the persona as the template renders it, no more
    persona = len(smollm2._llm.tokenize(PERSONA[0]["content"].encode(), add_bos=False))
    assert persona < prefix_tokens < persona + 16
    assert "".join(smollm2.stream(TURN, GREEDY)) == cold  # from the state it evaluated

    smollm2._llm.reset()  # a new chat: the KV cache holds nothing
    assert smollm2.warm(PERSONA) == "loaded"
    assert smollm2._llm.n_tokens == prefix_tokens
    assert "".join(smollm2.stream(TURN, GREEDY)) == cold  # from the state it loaded

    # the KV cache already begins with it (the next turn of the same chat): nothing to do
    assert smollm2.warm(PERSONA) == "kept" and smollm2._llm.n_tokens > prefix_tokens

    # another persona is never given this state: it gets its own
    other = [{"role": "system", "content": "You are Coal, a cat. You answer in meows."}]
    assert smollm2.warm(other) == "built" and len(list(tmp_path.glob("*.kv"))) == 2
    # back to the first (a server or page that serves both): loaded, not evaluated again
    assert smollm2.warm(PERSONA) == "loaded" and smollm2._llm.n_tokens == prefix_tokens
    assert "".join(smollm2.stream(TURN, GREEDY)) == cold


def test_a_damaged_state_is_rebuilt_not_crashed_on(smollm2: LocalLLM, tmp_path: Path) -> None:
    smollm2.states = tmp_path
    assert smollm2.warm(PERSONA) == "built"
    (path,) = tmp_path.glob("*.kv")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # a crash while copying, a full disk...
    smollm2._llm.reset()
    assert smollm2.warm(PERSONA) == "built"
    assert kvstate.read(path, _key_of(blob)) is not None  # whole again
    # a state for another context size (or model, or build) is not loaded either
    bigger = LocalLLM(model="smollm2", n_ctx=1024, seed=7)
    bigger.states = tmp_path
    try:
        assert bigger.warm(PERSONA) == "built"
    finally:
        bigger.close()


def test_a_shared_backend_warms_under_its_lock(smollm2: LocalLLM, tmp_path: Path) -> None:
    smollm2.states = tmp_path
    locked = LockedLLM(smollm2)
    assert locked.warm(PERSONA) == "built" and not locked.lock.locked()
    assert locked.warm([]) == "none"


def _key_of(blob: bytes) -> dict:
    import json

    end = blob.index(b"\n", len(kvstate.MAGIC))
    return json.loads(blob[len(kvstate.MAGIC) : end])["key"]


def test_prefill_leaves_the_next_prompts_start_in_the_cache(smollm2: LocalLLM) -> None:
    history = [
        *PERSONA,
        {"role": "user", "content": "What do you sell?"},
        {"role": "assistant", "content": "Noodles, eight coins a bowl."},
    ]
    turn = [*history, {"role": "user", "content": "Any cheaper?"}]
    smollm2._llm.reset()
    cold = "".join(smollm2.stream(turn, GREEDY))
    smollm2._llm.reset()
    assert smollm2.prefill(history) == "evaluated"
    held = smollm2._llm.n_tokens
    said = len(smollm2._llm.tokenize(history[-1]["content"].encode(), add_bos=False))
    assert held > said + len(smollm2._llm.tokenize(PERSONA[0]["content"].encode()))
    assert "".join(smollm2.stream(turn, GREEDY)) == cold  # the same reply, sooner
    assert LockedLLM(smollm2).prefill([]) == "none"
