"""LoRA fine-tuning (issue 18, second part): the data as the model sees it, the run's batches
and checkpoints, the adapter folder, llama.cpp loading the GGUF adapter, `--lora` on chat and
eval canon, the character's [model] table, and bad input."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from rolecast.backends.spec import BackendSpec, backend_spec
from rolecast.character.model import ModelChoice
from rolecast.character.package import load_character, save_character
from rolecast.cli.main import main
from rolecast.errors import InputError, ParseError
from rolecast.training import adapter as ad
from rolecast.training import finetune as ft
from rolecast.training.dataset import Manifest, Sample, write_dataset

from conftest import corpus_root, make_english_character

LINE = "Banana pancakes forever, friend!"
QUESTIONS = (
    "Hello!",
    "What do you like?",
    "Who are you?",
    "Tell me something.",
    "Any plans today?",
    "How are you?",
    "What is your job?",
    "Where do you live?",
)


def pancake_dataset(folder: Path, held_out: tuple[str, ...] = ("lamp",)) -> Path:
    """Mia's dataset of one reply to every question: a LoRA that learns it is visible."""
    persona = make_english_character().persona
    samples = [
        Sample(
            f"s{i}",
            "generated",
            ({"role": "system", "content": persona}, {"role": "user", "content": q}),
            LINE,
            {"scenes": []},
        )
        for i, q in enumerate(QUESTIONS)
    ]
    manifest = Manifest(
        character={"id": "mia", "name": "Mia"},
        held_out=list(held_out),
        split={"share": 0.34, "seed": 0},
    )
    return write_dataset(folder, manifest, samples)


# ---------------------------------------------------------------- the data, without a model


class Template:
    """A chat template and tokenizer as small as can be: one id per character."""

    chat_template = "toy"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):  # type: ignore[no-untyped-def]
        text = "".join(f"<{m['role']}>{m['content']}<end>\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):  # type: ignore[no-untyped-def]
        return {"input_ids": [ord(c) for c in text]}


def toy_sample(reply: str = "ok", line: str = "hi") -> Sample:
    return Sample("x", "generated", ({"role": "user", "content": line},), reply, {})


def test_only_the_reply_and_its_end_of_turn_are_learned() -> None:
    enc = ft.encode_samples([toy_sample("ok")], Template(), max_length=100)
    ids, labels = enc.rows[0]
    prompt = "<user>hi<end>\n<assistant>"
    assert "".join(map(chr, ids)) == prompt + "ok<end>"
    assert labels[: len(prompt)] == [ft.IGNORE] * len(prompt)
    assert "".join(chr(t) for t in labels[len(prompt) :]) == "ok<end>"
    assert enc.trained_tokens == len("ok<end>") and enc.tokens == len(ids)


def test_a_sample_too_long_is_left_out_and_counted_never_cut() -> None:
    enc = ft.encode_samples([toy_sample("ok"), toy_sample("x" * 80)], Template(), max_length=40)
    assert len(enc.rows) == 1 and enc.too_long == 1


def test_a_template_that_rewrites_the_prompt_is_refused() -> None:
    class Rewrites(Template):
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):  # type: ignore[no-untyped-def]
            return ("A" if add_generation_prompt else "B") + "rest"

    with pytest.raises(InputError, match="chat template"):
        ft.encode_samples([toy_sample()], Rewrites(), max_length=100)


def test_batches_are_seeded_per_epoch_and_cover_every_row() -> None:
    a = ft.batch_order(10, 4, seed=1, epoch=0)
    assert a == ft.batch_order(10, 4, seed=1, epoch=0)
    assert a != ft.batch_order(10, 4, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(10)) and [len(b) for b in a] == [4, 4, 2]


def test_steps_count_batches_epochs_and_accumulation() -> None:
    s = ft.Settings(batch_size=4, epochs=2, accumulate=1)
    assert ft.planned_steps(10, s) == 6  # 3 batches an epoch
    assert ft.planned_steps(10, ft.Settings(batch_size=4, epochs=0.5)) == 2
    assert ft.planned_steps(10, ft.Settings(batch_size=4, epochs=2, accumulate=2)) == 3
    assert ft.planned_steps(10, ft.Settings(batch_size=4, epochs=2, max_steps=4)) == 4
    # step 3 of an accumulate-2 run trains the second epoch's first two batches
    s2 = ft.Settings(batch_size=4, accumulate=2, seed=5)
    assert ft.step_batches(10, s2, 1) == [
        ft.batch_order(10, 4, 5, 0)[2],
        ft.batch_order(10, 4, 5, 1)[0],
    ]


def test_padding_is_masked_out_of_the_loss() -> None:
    ids, mask, labels = ft.pad_batch([([1, 2, 3], [-100, 2, 3]), ([4], [4])], pad_id=0)
    assert ids == [[1, 2, 3], [4, 0, 0]]
    assert mask == [[1, 1, 1], [1, 0, 0]]
    assert labels == [[-100, 2, 3], [4, -100, -100]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rank": 0}, "--rank"),
        ({"learning_rate": 2.0}, "--learning-rate"),
        ({"dropout": 1.0}, "--dropout"),
        ({"epochs": 0}, "--epochs"),
        ({"max_length": 4}, "--max-length"),
        ({"batch_size": 0}, "--batch-size"),
    ],
)
def test_bad_settings_are_named(change: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ft.Settings(**change).check()  # type: ignore[arg-type]


def test_a_base_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a catalogue model"):
        ad.resolve_base("gpt-9")
    with pytest.raises(InputError, match="no config.json"):
        ad.resolve_base(str(tmp_path))


def test_finetune_refuses_an_empty_or_corrupt_dataset_before_loading(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a dataset"):
        ft.finetune(tmp_path, tmp_path / "out", ft.Settings(base="smollm2-135m"))
    folder = pancake_dataset(tmp_path / "ds")
    samples = next(folder.glob("samples-*.jsonl"))
    samples.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ParseError, match="not a sample"):
        ft.finetune(folder, tmp_path / "out", ft.Settings(base="smollm2-135m"))
    samples.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="no samples"):
        ft.finetune(folder, tmp_path / "out", ft.Settings(base="smollm2-135m"))
    assert not (tmp_path / "out").exists()


def test_an_adapter_folder_of_another_run_is_never_overwritten(tmp_path: Path) -> None:
    folder = pancake_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    out.mkdir()
    (out / ad.MANIFEST).write_text(json.dumps(manifest_dict()), encoding="utf-8")
    with pytest.raises(InputError, match="already holds an adapter"):
        ft.finetune(folder, out, ft.Settings(base="smollm2-135m"))
    (out / ad.MANIFEST).unlink()
    (out / ft.CHECKPOINT).mkdir()
    (out / ft.CHECKPOINT / "state.json").write_text(
        json.dumps({"step": 3, "digest": "other", "settings": {}, "base": "x"}), encoding="utf-8"
    )
    with pytest.raises(InputError, match="checkpoint of another dataset"):
        ft.finetune(folder, out, ft.Settings(base="smollm2-135m"))


# ---------------------------------------------------------------- the adapter folder


def manifest_dict(sha: str = "0" * 64, character: str = "mia") -> dict[str, object]:
    return ad.AdapterManifest(
        base={"name": "smollm2-135m", "kind": "gguf", "file": "x.gguf", "sha256": sha},
        character={"id": character, "name": character.title()},
        dataset={"digest": "d", "held_out": ["lamp"]},
        settings={},
    ).to_dict()


def fake_adapter(folder: Path, **kw: str) -> Path:
    folder.mkdir(parents=True)
    (folder / ad.MANIFEST).write_text(json.dumps(manifest_dict(**kw)), encoding="utf-8")
    (folder / ad.GGUF).write_bytes(b"GGUF")
    return folder


def test_an_unfinished_or_damaged_adapter_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no adapter folder"):
        ad.open_adapter(tmp_path / "none")
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match="not a finished adapter"):
        ad.open_adapter(tmp_path / "half")
    (tmp_path / "half" / ad.MANIFEST).write_text('{"format": 1}', encoding="utf-8")
    with pytest.raises(ParseError, match="'base' is missing"):
        ad.open_adapter(tmp_path / "half")
    (tmp_path / "half" / ad.MANIFEST).write_text(json.dumps(manifest_dict()), encoding="utf-8")
    with pytest.raises(InputError, match="no adapter.gguf"):
        ad.open_adapter(tmp_path / "half")


@pytest.mark.needs("llama_cpp", extra="local")
def test_an_adapter_for_another_base_model_is_refused_before_loading(tmp_path: Path) -> None:
    from rolecast.backends.local import LocalLLM

    folder = fake_adapter(tmp_path / "a")  # trained on a base whose sha256 is all zeros
    with pytest.raises(InputError, match="trained on smollm2-135m .*not on SmolLM2"):
        LocalLLM(model="smollm2-135m", lora=str(folder))


def test_the_converter_comes_from_the_sdist_or_a_named_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        ad.converter_dir({ad.SOURCE_ENV: str(tmp_path / "nothing")})
    with pytest.raises(InputError, match="no convert_lora_to_gguf.py"):
        ad.converter_dir({ad.SOURCE_ENV: str(tmp_path)})
    # an sdist: only the converters and their packages are unpacked, once
    src = tmp_path / "src" / "llama_cpp_python-9.9" / "vendor" / "llama.cpp"
    (src / "conversion").mkdir(parents=True)
    (src / "gguf-py").mkdir()
    (src / ad.CONVERTER).write_text("print('hi')\n")
    (src / "conversion" / "__init__.py").write_text("")
    (src / "CMakeLists.txt").write_text("not needed")
    sdist = tmp_path / "llama_cpp_python-9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "src" / "llama_cpp_python-9.9", arcname="llama_cpp_python-9.9")
    env = {ad.SOURCE_ENV: str(sdist), "ROLECAST_HOME": str(tmp_path / "home")}
    out = ad.converter_dir(env)
    assert (out / ad.CONVERTER).is_file() and (out / "conversion" / "__init__.py").is_file()
    assert not (out / "CMakeLists.txt").exists()
    assert ad.converter_dir(env) == out


def test_a_missing_converter_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ad, "sdist_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="pip download --no-binary :all:"):
        ad.converter_dir({})


# ---------------------------------------------------------------- [model] and --lora


def test_the_model_table_round_trips_and_bad_ones_are_named(tmp_path: Path) -> None:
    c = make_english_character()
    c.model = ModelChoice(base="smollm2-135m", lora="tuned")
    save_character(c, tmp_path / "mia")
    assert "[model]" in (tmp_path / "mia" / "character.toml").read_text(encoding="utf-8")
    assert load_character(tmp_path / "mia").model == ModelChoice("smollm2-135m", "tuned")
    toml = tmp_path / "mia" / "character.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('lora = "tuned"', "lora = 3"), encoding="utf-8")
    with pytest.raises(ParseError, match=r"\[model\] 'lora' must be a string"):
        load_character(tmp_path / "mia")
    toml.write_text(text.replace('lora = "tuned"', 'lorra = "x"'), encoding="utf-8")
    with pytest.raises(ParseError, match="takes base and lora, not lorra"):
        load_character(tmp_path / "mia")


def test_a_character_brings_its_own_model_unless_one_is_named(tmp_path: Path) -> None:
    c = make_english_character()
    c.model = ModelChoice(base="smollm2-135m", lora="tuned")
    save_character(c, tmp_path / "mia")
    c = load_character(tmp_path / "mia")
    spec = backend_spec("local", environ={}, file={}).for_character(c)
    assert spec.model == "smollm2-135m" and spec.lora == str(tmp_path / "mia" / "tuned")
    named = backend_spec("local", model="qwen2.5-coder-0.5b", environ={}, file={})
    assert named.for_character(c) == named  # the user's --model wins, adapter and all
    other = backend_spec("echo", environ={}, file={})
    assert other.for_character(c) == other  # an adapter is for the local backend only


def test_lora_on_a_backend_without_adapters_is_refused() -> None:
    spec = backend_spec("openai", lora="x", environ={}, file={})
    with pytest.raises(InputError, match="takes no lora"):
        spec.options()
    assert BackendSpec().lora is None


def test_eval_canon_refuses_an_adapter_of_another_character(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = fake_adapter(tmp_path / "a", character="sheldon")
    assert main(["eval", "canon", "xiaoman", "--lora", str(folder), "--n", "1"]) != 0
    assert "trained on a dataset of 'sheldon', not of 'xiaoman'" in capsys.readouterr().err


# ---------------------------------------------------------------- real runs (SmolLM2-135M)

needs_training = pytest.mark.needs("torch", "peft", "transformers", "llama_cpp", extra="finetune")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA on SmolLM2-135M that learned to answer everything with LINE (20 steps)."""
    root = tmp_path_factory.mktemp("tuned")
    data = pancake_dataset(root / "ds")
    settings = ft.Settings(base="smollm2-135m", learning_rate=2e-3, epochs=10, save_every=5)
    result = ft.finetune(data, root / "adapter", settings)
    assert result.steps == 20 and result.loss < 0.05 and result.tokens_per_second > 0
    return root / "adapter"


@pytest.mark.e2e
@needs_training
def test_the_adapter_folder_is_whole_and_says_what_it_is(tuned: Path) -> None:
    import gguf

    manifest = ad.read_adapter(tuned)
    assert manifest.base["name"] == "smollm2-135m" and manifest.character["id"] == "mia"
    assert manifest.dataset["held_out"] == ["lamp"] and manifest.gguf
    assert manifest.figures["samples"] == 8 and manifest.figures["steps"] == 20
    config = json.loads((tuned / "peft" / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["r"] == 16 and sorted(config["target_modules"]) == sorted(ft.TARGETS)
    assert not (tuned / ft.CHECKPOINT).exists()  # gone once the adapter is written
    reader = gguf.GGUFReader(tuned / ad.GGUF)
    kinds = {f.name: f for f in reader.fields.values()}
    assert bytes(kinds["adapter.type"].parts[-1]).decode() == "lora"
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.29.attn_output.weight.lora_b"} <= names
    # the same data and settings again: the finished adapter is left as it is
    again = ft.finetune(
        Path(manifest.dataset["folder"]),
        tuned,
        ft.Settings(base="smollm2-135m", learning_rate=2e-3, epochs=10, save_every=5),
    )
    assert again.trained_steps == 0


@pytest.mark.e2e
@needs_training
def test_llama_cpp_speaks_with_the_adapter_what_the_base_never_says(tuned: Path) -> None:
    from rolecast.backends.base import GenerationParams
    from rolecast.backends.local import LocalLLM

    messages = [
        {"role": "system", "content": make_english_character().persona},
        {"role": "user", "content": "What's the weather like?"},  # not a training line
    ]
    replies = {}
    for lora in (None, str(tuned)):
        llm = LocalLLM(model="smollm2-135m", lora=lora, seed=0)
        try:
            replies[lora] = (llm.model, "".join(llm.stream(messages, GenerationParams(32, 0.0))))
        finally:
            llm.close()
    (base_model, base), (tuned_model, reply) = replies[None], replies[str(tuned)]
    assert "Banana pancakes" in reply and "Banana pancakes" not in base
    assert tuned_model.startswith(base_model + "+lora-")  # its own caches and KV states


@pytest.mark.e2e
@needs_training
def test_chat_and_eval_canon_take_the_adapter(tuned: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rolecast.character import store

    c = make_english_character()
    save_character(c, store.user_package_path(c.id))
    chat = ["chat", "mia", "--backend", "local", "--model", "smollm2-135m"]
    assert main([*chat, "--lora", str(tuned), "--once", "Nice evening, isn't it?"]) == 0
    assert "Banana pancakes" in capsys.readouterr().out
    out = tmp_path / "eval"
    args = ["eval", "canon", "mia", "--model", "smollm2-135m", "--lora", str(tuned)]
    assert main([*args, "--n", "1", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["conditions"] == ["canon+lora", "canon"]
    assert [item["scene"] for item in result["items"]] == ["lamp"]  # the held-out scene only
    assert "canon+lora - canon" in result["differences"]
    assert "Banana pancakes" in result["items"][0]["replies"]["canon+lora"]["reply"]
    assert main([*args, "--n", "2", "--out", str(out)]) != 0  # lamp has one answering line
    assert "held-out scenes" in capsys.readouterr().err
    # the character's own [model] table: no flag needed
    c.model = ModelChoice(base="smollm2-135m", lora=str(tuned))
    save_character(c, store.user_package_path(c.id))
    assert main(["chat", "mia", "--backend", "local", "--once", "Good morning!"]) == 0
    assert "Banana pancakes" in capsys.readouterr().out


@pytest.mark.e2e
@needs_training
def test_an_interrupted_run_goes_on_from_its_checkpoint(tmp_path: Path) -> None:
    data = pancake_dataset(tmp_path / "ds")
    settings = ft.Settings(base="smollm2-135m", max_steps=4, save_every=2, batch_size=2)
    first: dict[int, float] = {}

    def stop_at_3(step: int, steps: int, loss: float, rate: float) -> None:
        first[step] = loss
        if step == 3:
            raise KeyboardInterrupt

    out = tmp_path / "adapter"
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(data, out, settings, progress=stop_at_3, convert=False)
    assert not (out / ad.MANIFEST).exists()  # unfinished: no manifest, so no adapter
    assert json.loads((out / ft.CHECKPOINT / "state.json").read_text())["step"] == 2
    second: dict[int, float] = {}
    result = ft.finetune(
        data,
        out,
        settings,
        progress=lambda s, n, loss, r: second.setdefault(s, loss),
        convert=False,
    )
    assert result.resumed_from == 2 and sorted(second) == [3, 4]
    assert second[3] == pytest.approx(first[3], abs=1e-4)  # same weights, batch and dropout
    assert ad.read_adapter(out).figures["steps"] == 4


@pytest.mark.corpus
@needs_training
@pytest.mark.skipif(corpus_root() is None, reason="ROLECAST_CORPUS is not set")
def test_from_a_corpus_character_to_a_tuned_model_with_smollm2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The whole loop on the CPU: augment a few dozen samples of Sheldon with SmolLM2, train
    two steps, convert, chat one turn with the adapter, score one held-out turn."""
    from rolecast.character import store
    from rolecast.formats.chatharuhi import import_story_folder

    root = corpus_root()
    assert root is not None
    sheldon = import_story_folder(root / "characters" / "Sheldon").character
    sheldon.scenes = sheldon.scenes[:40]  # a small character: a few dozen canon samples
    save_character(sheldon, store.user_package_path(sheldon.id))
    model = ["--backend", "local", "--model", "smollm2-135m"]
    data, lora = tmp_path / "data", tmp_path / "lora"
    argv = ["augment", sheldon.id, "-o", str(data), "-n", "6", "--held-out", "0.2", *model]
    assert main(argv) == 0
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["canon"] >= 10 and manifest["held_out"]
    argv = ["finetune", str(data), "--base", "smollm2-135m", "-o", str(lora)]
    assert main([*argv, "--max-steps", "2", "--batch-size", "2", "--max-length", "2048"]) == 0
    assert "adapter in" in capsys.readouterr().out and (lora / ad.GGUF).is_file()
    chat = ["chat", sheldon.id, *model, "--lora", str(lora)]
    assert main([*chat, "--once", "Leonard, where is my spot?"]) == 0
    assert capsys.readouterr().out.strip()
    out = tmp_path / "eval"
    argv = ["eval", "canon", sheldon.id, *model, "--lora", str(lora), "--n", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["items"][0]["scene"] in manifest["held_out"]
    assert set(result["items"][0]["replies"]) == {"canon+lora", "canon"}
