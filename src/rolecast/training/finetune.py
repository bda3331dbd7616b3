"""LoRA fine-tuning of a local model on a dataset folder, on the CPU or a CUDA device.

    finetune(dataset_dir, out_dir, Settings(base="smollm2-135m"))

The base weights are what rolecast already has: a catalogue GGUF (transformers dequantises
it) or a local Hugging Face folder. Each sample's prompt goes through the base model's own
chat template, so the model learns on exactly what it will be sent, and the loss counts only
the character's reply (and the end-of-turn token after it). The run checkpoints into
``out_dir/checkpoint`` every ``save_every`` steps (swapped in whole), and a run of the same
dataset and settings goes on from there; a finished adapter folder is left as it is.

The adapter folder (:mod:`.adapter`) gets the peft files, a GGUF LoRA adapter for llama.cpp
and ``adapter.json`` (written last: its presence means the folder is whole). torch,
transformers and peft are imported here only when a run starts (the ``finetune`` extra).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependencyError
from ..files import replace_dir, staging_dir
from . import adapter as ad
from .dataset import Manifest, Sample, read_dataset

IGNORE = -100  # the label of a token the loss does not count
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Settings:
    """How a LoRA is trained. ``max_steps`` (0: no limit) stops early, for a quick try."""

    base: str = "qwen2.5-coder-0.5b"
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_length: int = 2048
    batch_size: int = 4
    accumulate: int = 1  # batches per optimiser step
    max_steps: int = 0
    save_every: int = 50  # steps between checkpoints
    seed: int = 0
    targets: tuple[str, ...] = TARGETS
    # keep only each layer's input for the backward pass (recomputing the rest): a batch of
    # four 2,000-token samples needs ~24 GB for SmolLM2 without it, a few GB with it
    checkpointing: bool = True

    def check(self) -> None:
        problems = []
        if self.rank < 1:
            problems.append(f"--rank must be at least 1, not {self.rank}")
        if self.alpha <= 0:
            problems.append(f"--alpha must be positive, not {self.alpha}")
        if not 0 <= self.dropout < 1:
            problems.append(f"--dropout must be in [0, 1), not {self.dropout}")
        if not 0 < self.learning_rate < 1:
            problems.append(f"--learning-rate must be in (0, 1), not {self.learning_rate}")
        if self.epochs <= 0:
            problems.append(f"--epochs must be positive, not {self.epochs}")
        if self.max_length < 16:
            problems.append(f"--max-length must be at least 16 tokens, not {self.max_length}")
        if self.batch_size < 1 or self.accumulate < 1:
            problems.append("--batch-size and --accumulate must be at least 1")
        if self.max_steps < 0 or self.save_every < 1:
            problems.append("--max-steps must not be negative and --save-every must be positive")
        if not self.targets:
            problems.append("at least one target module is needed")
        if problems:
            raise InputError("; ".join(problems))

    def training_dict(self) -> dict[str, Any]:
        """What the trained weights depend on (a checkpoint resumes only under the same)."""
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data


# ---- the data, as token ids ----------------------------------------------------------------


@dataclass
class Encoded:
    """The samples as token ids with labels (the prompt masked), and those left out."""

    rows: list[tuple[list[int], list[int]]] = field(default_factory=list)
    too_long: int = 0
    empty: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids, _ in self.rows)

    @property
    def trained_tokens(self) -> int:
        return sum(sum(1 for t in labels if t != IGNORE) for _, labels in self.rows)


def masked(prompt_ids: Sequence[int], reply_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """Input ids and labels: the prompt's labels are ignored, the reply's are its ids."""
    return [*prompt_ids, *reply_ids], [IGNORE] * len(prompt_ids) + list(reply_ids)


def encode_samples(samples: Sequence[Sample], tokenizer: Any, max_length: int) -> Encoded:
    """Each sample through the tokenizer's chat template: the prompt text as it would be
    sent (with the generation prompt), then the rest of the rendered conversation (the
    reply and the template's end of turn). Samples longer than ``max_length`` tokens are
    left out, counted, never cut: a cut prompt would teach replies to prompts never sent."""
    out = Encoded()
    for sample in samples:
        messages = [dict(m) for m in sample.messages]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": sample.reply}], tokenize=False
        )
        if not whole.startswith(prompt):  # a template that renders the history differently
            raise InputError(
                f"the base model's chat template does not extend the prompt with the reply "
                f"(sample {sample.id}): it cannot be trained on the reply alone"
            )
        rest = whole[len(prompt) :].rstrip("\n")
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
        if not reply_ids:
            out.empty += 1
        elif len(prompt_ids) + len(reply_ids) > max_length:
            out.too_long += 1
        else:
            out.rows.append(masked(prompt_ids, reply_ids))
    return out


def batch_order(n_rows: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The rows of one epoch in batches: shuffled by (seed, epoch), so a resumed run sees the
    batches the interrupted one would have."""
    order = list(range(n_rows))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_rows, batch_size)]


def planned_steps(n_rows: int, settings: Settings) -> int:
    """Optimiser steps of the whole run (fractional epochs count their batches)."""
    batches = math.ceil(n_rows / settings.batch_size)
    steps = math.ceil(batches * settings.epochs / settings.accumulate)
    return min(steps, settings.max_steps) if settings.max_steps else steps


def step_batches(n_rows: int, settings: Settings, step: int) -> list[list[int]]:
    """The batches that optimiser step ``step`` (from 0) trains on."""
    per_epoch = math.ceil(n_rows / settings.batch_size)
    out = []
    for b in range(step * settings.accumulate, (step + 1) * settings.accumulate):
        epoch, at = divmod(b, per_epoch)
        out.append(batch_order(n_rows, settings.batch_size, settings.seed, epoch)[at])
    return out


def pad_batch(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Right-padded input ids, attention mask and labels (padding ignored by the loss)."""
    width = max(len(ids) for ids, _ in rows)
    ids, mask, labels = [], [], []
    for i, lab in rows:
        gap = width - len(i)
        ids.append([*i, *[pad_id] * gap])
        mask.append([1] * len(i) + [0] * gap)
        labels.append([*lab, *[IGNORE] * gap])
    return ids, mask, labels


# ---- the base model -----------------------------------------------------------------------


def dataset_digest(manifest: Manifest) -> str:
    """Which dataset a run trains on: its samples file is named by its content's hash."""
    return hashlib.sha256(f"{manifest.character['id']}\0{manifest.samples}".encode()).hexdigest()


def load_base(base: ad.Base, device: str) -> tuple[Any, Any]:
    """The tokenizer and the model (float32 on the CPU; bfloat16 on CUDA where supported)."""
    torch, transformers, _ = _libraries()
    if base.kind == "gguf":
        folder, extra = str(base.path.parent), {"gguf_file": base.path.name}
    else:
        folder, extra = str(base.path), {}
    transformers.utils.logging.disable_progress_bar()  # the command shows its own progress
    dtype = torch.float32
    if device == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **extra)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation="sdpa", **extra
    )
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"the base model {base.name} has no chat template: it is not a chat model")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model.to(device)


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError("rolecast finetune", exc.name or "torch", "finetune") from None
    return torch, transformers, peft


def pick_device(device: str | None = None) -> str:
    torch, _, _ = _libraries()
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available to torch here")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device is cpu, cuda or auto, not {device!r}")
    return device


# ---- the run -------------------------------------------------------------------------------

StepReport = Callable[[int, int, float, float], None]  # (step, steps, loss, tokens per second)


@dataclass
class Result:
    folder: Path
    steps: int
    trained_steps: int  # steps this call ran (0: the adapter was already there)
    tokens_per_second: float
    loss: float
    resumed_from: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def finetune(
    dataset_dir: Path,
    out_dir: Path,
    settings: Settings,
    *,
    device: str | None = None,
    progress: StepReport | None = None,
    convert: bool = True,
) -> Result:
    """Train a LoRA on the dataset and write the adapter folder (see the module docstring)."""
    settings.check()
    out_dir = Path(out_dir)
    manifest, samples = read_dataset(Path(dataset_dir))
    base = ad.resolve_base(settings.base)
    digest = dataset_digest(manifest)
    if (finished := _finished(out_dir, digest, settings)) is not None:
        return finished
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file: give a folder for the adapter")
    state = {"digest": digest, "settings": settings.training_dict(), "base": base.sha256}
    start = _checkpoint_step(out_dir, state)  # another run's checkpoint: refused before loading
    device = pick_device(device)
    tokenizer, model = load_base(base, device)
    encoded = encode_samples(samples, tokenizer, settings.max_length)
    if not encoded.rows:
        raise InputError(
            f"no sample of {dataset_dir} fits in --max-length {settings.max_length} tokens "
            f"({encoded.too_long} longer): raise --max-length"
        )
    model = _with_lora(model, settings, base.name)
    run = _train(
        model,
        encoded,
        int(tokenizer.pad_token_id),
        settings,
        device,
        out_dir,
        state,
        start,
        progress,
    )
    figures = {
        "steps": run.steps,
        "loss": run.loss,
        "tokens_per_second": round(run.tokens_per_second, 2),
        "device": device,
        "samples": len(encoded.rows),
        "tokens": encoded.tokens,
        "trained_tokens": encoded.trained_tokens,
        "too_long": encoded.too_long,
    }
    ad.write_adapter(
        out_dir,
        model,
        tokenizer,
        base,
        ad.AdapterManifest(
            base=base.to_dict(),
            character=dict(manifest.character),
            dataset={
                "folder": str(Path(dataset_dir).resolve()),
                "digest": digest,
                "samples": manifest.samples,
                "held_out": list(manifest.held_out),
            },
            settings=settings.training_dict(),
            figures=figures,
        ),
        convert=convert,
    )
    shutil.rmtree(out_dir / CHECKPOINT, ignore_errors=True)
    run.skipped = {"too_long": encoded.too_long, "empty": encoded.empty}
    return run


def _finished(out_dir: Path, digest: str, settings: Settings) -> Result | None:
    """The adapter already in ``out_dir`` when it is this run's (a rerun trains nothing);
    None when there is none; another run's is refused."""
    if not (out_dir / ad.MANIFEST).is_file():
        return None
    done = ad.read_adapter(out_dir)
    if done.dataset.get("digest") != digest or done.settings != settings.training_dict():
        raise InputError(
            f"{out_dir} already holds an adapter trained on other data or settings: "
            f"give another folder, or remove it to train again"
        )
    figures = done.figures
    return Result(out_dir, int(figures.get("steps", 0)), 0, 0.0, figures.get("loss", 0.0))


def _with_lora(model: Any, settings: Settings, base_name: str) -> Any:
    """``model`` wrapped by peft with LoRA on the target modules, activation checkpointing on
    when the settings ask for it."""
    torch, _, peft = _libraries()
    torch.manual_seed(settings.seed)  # the LoRA's initial weights
    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.targets),
        task_type="CAUSAL_LM",
    )
    if settings.checkpointing:  # activations of long Chinese prompts: gigabytes a layer
        options = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        model.enable_input_require_grads()
        model.config.use_cache = False  # no KV cache while training
    try:
        with warnings.catch_warnings():  # peft asks transformers a question v5 deprecated
            warnings.simplefilter("ignore", FutureWarning)
            return peft.get_peft_model(model, config)
    except ValueError as exc:  # a target module the architecture does not have
        raise InputError(f"LoRA on {base_name}: {exc}") from None


def _train(
    model: Any,
    encoded: Encoded,
    pad: int,
    settings: Settings,
    device: str,
    out_dir: Path,
    state: dict[str, Any],
    start: int,
    progress: StepReport | None,
) -> Result:
    """The optimisation steps from ``start`` (a checkpoint's, or 0) to the end, with a
    checkpoint every ``save_every`` steps; the model is left in eval mode."""
    torch, _, peft = _libraries()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate
    )
    steps = planned_steps(len(encoded.rows), settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: max(0.0, 1.0 - s / max(1, steps))
    )
    if start:
        _resume(out_dir, model, optimizer, scheduler, peft, torch)
    model.train()
    loss_value, tokens, seconds = math.nan, 0, 0.0
    for step in range(start, steps):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        losses = []
        for batch in step_batches(len(encoded.rows), settings, step):
            rows = [encoded.rows[i] for i in batch]
            ids, mask, labels = pad_batch(rows, pad)
            loss = reply_loss(
                model,
                torch.tensor(ids, device=device),
                torch.tensor(mask, device=device),
                torch.tensor(labels, device=device),
            )
            (loss / settings.accumulate).backward()
            losses.append(float(loss.detach()))
            tokens += sum(len(i) for i, _ in rows)
        optimizer.step()
        scheduler.step()
        seconds += time.perf_counter() - t0
        loss_value = sum(losses) / len(losses)
        if progress is not None:
            progress(step + 1, steps, loss_value, tokens / seconds)
        if (step + 1) % settings.save_every == 0 and step + 1 < steps:
            _save_checkpoint(out_dir, model, optimizer, scheduler, {**state, "step": step + 1})
    model.eval()
    rate = tokens / seconds if seconds else 0.0
    return Result(out_dir, steps, steps - start, rate, loss_value, resumed_from=start)


def reply_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """The mean next-token loss over the labelled (reply) tokens, with logits computed only
    at the positions that predict one: the vocabulary-wide logits of every prompt token
    would take gigabytes for nothing (replies are a tenth of the tokens or less)."""
    import torch

    targets = labels[:, 1:]  # position p predicts token p + 1
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    wanted = targets[:, keep]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), wanted.reshape(-1), ignore_index=IGNORE
    )


def _save_checkpoint(
    out_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> None:
    """The adapter weights, optimiser and schedule at a step, swapped in as one folder."""
    import torch
    from peft import get_peft_model_state_dict

    dest = out_dir / CHECKPOINT
    with staging_dir(dest) as tmp:
        torch.save(
            {
                "adapter": get_peft_model_state_dict(model, save_embedding_layers=False),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
            },
            tmp / "state.pt",
        )
        (tmp / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        replace_dir(tmp, dest)


def _checkpoint_step(out_dir: Path, state: dict[str, Any]) -> int:
    """The step of this run's checkpoint in ``out_dir`` (0: none); another run's is refused."""
    folder = out_dir / CHECKPOINT
    try:
        saved = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        step = int(saved["step"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"the checkpoint in {folder} is unreadable ({exc}): remove it") from None
    if {k: saved.get(k) for k in state} != state:
        raise InputError(
            f"{folder} is a checkpoint of another dataset, base model or settings: "
            f"give another folder, or remove the checkpoint to start over"
        )
    return step


def _resume(
    out_dir: Path, model: Any, optimizer: Any, scheduler: Any, peft: Any, torch: Any
) -> None:
    """Load the checkpoint's adapter weights, optimiser, schedule and random state."""
    blob = torch.load(out_dir / CHECKPOINT / "state.pt", weights_only=False)
    peft.set_peft_model_state_dict(model, blob["adapter"])
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"])
