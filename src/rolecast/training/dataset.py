"""A dataset folder: ``manifest.json`` (the character, the held-out scenes, the settings and
counts) and the samples file it names (``samples-<hash>.jsonl``, one sample a line). The
samples are written first under a name of their own, then the manifest (atomically) points
at them, then the old samples file goes: a write that fails at any step leaves the dataset
that was there, whole. Reading names the file and line of anything wrong. ``export_rows``
turns samples into the JSONL that trainers take."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, ParseError
from ..files import write_atomic

FORMAT = 1
MANIFEST = "manifest.json"
KINDS = ("canon", "generated")
EXPORT_FORMATS = ("chatml", "sharegpt", "chatharuhi")
ROLES = ("system", "user", "assistant")
_SAMPLES_FILE = re.compile(r"samples-[0-9a-f]{12}\.jsonl")  # no path: never outside the folder


@dataclass(frozen=True)
class Sample:
    """One training example: the prompt as a real turn assembles it (``messages``), the
    character's ``reply`` to learn, and where it came from (``source``: scenes, line,
    backend, model, seed, filter verdicts)."""

    id: str
    kind: str  # "canon" or "generated"
    messages: tuple[Mapping[str, str], ...]
    reply: str
    source: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "messages": [dict(m) for m in self.messages],
            "reply": self.reply,
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Sample:
        """A sample from ``to_dict()``; a ValueError says which field is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a sample is a JSON object")
        for name, kind in (("id", str), ("kind", str), ("reply", str), ("messages", list)):
            if not isinstance(data.get(name), kind):
                raise ValueError(f"'{name}' is missing or not a {kind.__name__}")
        if data["kind"] not in KINDS:
            raise ValueError(f"kind {data['kind']!r} is not one of {', '.join(KINDS)}")
        if not data["reply"].strip():
            raise ValueError("the reply is empty")
        messages = []
        for m in data["messages"]:
            if (
                not isinstance(m, dict)
                or m.get("role") not in ROLES
                or not isinstance(m.get("content"), str)
            ):
                raise ValueError("each message needs a role (system, user, assistant) and content")
            messages.append({"role": m["role"], "content": m["content"]})
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("the prompt must end with the user's line")
        source = data.get("source", {})
        if not isinstance(source, dict):
            raise ValueError("'source' is not an object")
        return cls(data["id"], data["kind"], tuple(messages), data["reply"], source)


@dataclass
class Manifest:
    """What a dataset is: whose, which scenes it must not touch, how it was made."""

    character: dict[str, str]  # id, name, language, digest (eval.report.character_digest)
    held_out: list[str]  # scene ids no sample comes from
    split: dict[str, Any]  # share, seed
    settings: dict[str, Any] = field(default_factory=dict)  # how the samples were made
    counts: dict[str, int] = field(default_factory=dict)  # samples per kind
    dropped: dict[str, int] = field(default_factory=dict)  # samples left out, per filter
    created: str = ""
    rolecast: str = __version__
    format: int = FORMAT
    samples: str = ""  # the samples file in the folder

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "character": self.character,
            "held_out": self.held_out,
            "split": self.split,
            "settings": self.settings,
            "counts": self.counts,
            "dropped": self.dropped,
            "created": self.created,
            "rolecast": self.rolecast,
            "samples": self.samples,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ValueError("the manifest is not a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this rolecast reads {FORMAT}")
        character = data.get("character")
        if not isinstance(character, dict) or not isinstance(character.get("id"), str):
            raise ValueError("'character' needs an id")
        samples = data.get("samples")
        if not isinstance(samples, str) or not _SAMPLES_FILE.fullmatch(samples):
            raise ValueError("'samples' does not name a samples file")
        held_out = data.get("held_out")
        if not isinstance(held_out, list) or not all(isinstance(s, str) for s in held_out):
            raise ValueError("'held_out' is not a list of scene ids")
        return cls(
            character=dict(character),
            held_out=list(held_out),
            split=dict(data.get("split") or {}),
            settings=dict(data.get("settings") or {}),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            dropped={str(k): int(v) for k, v in (data.get("dropped") or {}).items()},
            created=str(data.get("created", "")),
            rolecast=str(data.get("rolecast", "")),
            samples=samples,
        )


def write_dataset(folder: Path, manifest: Manifest, samples: Sequence[Sample]) -> Path:
    """Write the samples, then the manifest (counts filled in from the samples): a failed
    write leaves the folder as it was, and a folder with a manifest holds every sample."""
    ids = Counter(s.id for s in samples)
    twice = [i for i, n in ids.items() if n > 1]
    if twice:
        raise InputError(f"sample ids must be unique: {', '.join(sorted(twice)[:5])} repeat")
    held = set(manifest.held_out)
    leaked = [
        s.id
        for s in samples
        if held & {*s.source.get("scenes", ()), *s.source.get("retrieved", ())}
    ]
    if leaked:
        raise InputError(
            f"{len(leaked)} sample(s) come from or retrieve held-out scenes (first: "
            f"{leaked[0]}): a held-out scene must stay out of training"
        )
    folder = Path(folder)
    name = _write_samples(folder, samples)
    manifest.samples = name
    manifest.counts = {k: sum(s.kind == k for s in samples) for k in KINDS}
    manifest.created = manifest.created or _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"
    )
    write_atomic(folder / MANIFEST, json.dumps(manifest.to_dict(), ensure_ascii=False, indent=2))
    for old in folder.glob("samples-*.jsonl"):  # the manifest points at the new file now
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder


def _write_samples(folder: Path, samples: Sequence[Sample]) -> str:
    """The samples file, written a line at a time (a dataset of 50,000 rows is hundreds of
    megabytes: never held as one string), synced, and named by its content's hash."""
    digest = hashlib.sha256()

    def lines() -> Iterator[bytes]:
        for s in samples:
            line = (json.dumps(s.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
            digest.update(line)
            yield line

    pending = write_atomic(folder / ".samples.pending", lines())
    name = f"samples-{digest.hexdigest()[:12]}.jsonl"
    try:
        os.replace(pending, folder / name)  # a rename in one folder: whole or not at all
    except OSError as exc:
        raise InputError(f"cannot write the samples in {folder}: {exc.strerror or exc}") from None
    return name


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise InputError(f"{folder} is not a dataset folder (no such folder)")
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError(
            f"{folder} is not a dataset: no {MANIFEST} (an unfinished run writes none)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"not a rolecast dataset manifest: {exc}", path) from None


def read_samples(folder: Path, manifest: Manifest | None = None) -> Iterator[Sample]:
    """The samples one by one (a large dataset is never held whole)."""
    name = (manifest or read_manifest(folder)).samples
    path = Path(folder) / name
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{folder}: its manifest names {name}, which is missing") from None
    with handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                yield Sample.from_dict(json.loads(text))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ParseError(f"not a sample: {exc}", path, number) from None


def read_dataset(folder: Path) -> tuple[Manifest, list[Sample]]:
    """The manifest and every sample; an empty dataset is an error."""
    manifest = read_manifest(folder)
    samples = list(read_samples(folder, manifest))
    if not samples:
        raise InputError(f"the dataset in {folder} has no samples")
    return manifest, samples


# ---- export ---------------------------------------------------------------------------------

_SPOKEN = re.compile(r"^[^\s:：「」]{1,40}[:：]「")  # already in the form 名字:「台词」


def _said(speaker: str, text: str) -> str:
    text = text.strip()
    return text if _SPOKEN.match(text) else f"{speaker}:「{text}」"


def _chatml(sample: Sample) -> dict[str, Any]:
    return {
        "messages": [
            *(dict(m) for m in sample.messages),
            {"role": "assistant", "content": sample.reply},
        ]
    }


def _sharegpt(sample: Sample) -> dict[str, Any]:
    """ShareGPT as LLaMA-Factory reads it: the leading system messages as ``system``, then
    human and gpt turns alternating, ending with the reply. A system message later in the
    prompt (the canon block of the split order) goes into the human turn it precedes;
    turns of one side in a row are joined; a gpt turn before any human one becomes
    context in ``system``."""
    messages = list(sample.messages)
    system: list[str] = []
    while messages and messages[0]["role"] == "system":
        system.append(messages.pop(0)["content"])
    turns: list[dict[str, str]] = []
    pending: list[str] = []  # later system text, for the next human turn
    for m in [*messages, {"role": "assistant", "content": sample.reply}]:
        if m["role"] == "system":
            pending.append(m["content"])
            continue
        side = "human" if m["role"] == "user" else "gpt"
        text = m["content"]
        if side == "human" and pending:
            text, pending = "\n\n".join([*pending, text]), []
        if side == "gpt" and not turns:
            system.append(text)
            continue
        if turns and turns[-1]["from"] == side:
            turns[-1]["value"] += "\n" + text
        else:
            turns.append({"from": side, "value": text})
    return {"system": "\n\n".join(system), "conversations": turns}


def _chatharuhi(sample: Sample, name: str, user_role: str) -> dict[str, Any]:
    """ChatHaruhi's {context, target}: the prompt as one text, lines as 名字:「台词」, and the
    reply in the same form."""
    parts = []
    for m in sample.messages:
        if m["role"] == "system":
            parts.append(m["content"].strip())
        else:
            parts.append(_said(name if m["role"] == "assistant" else user_role, m["content"]))
    return {"context": "\n".join(parts), "target": _said(name, sample.reply)}


def export_rows(
    samples: Iterable[Sample], fmt: str, name: str = "", user_role: str = ""
) -> Iterator[dict[str, Any]]:
    """One JSON object per sample in ``fmt`` (chatml, sharegpt, chatharuhi); the chatharuhi
    form needs the character's ``name`` and ``user_role``."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    for sample in samples:
        if fmt == "chatml":
            yield _chatml(sample)
        elif fmt == "sharegpt":
            yield _sharegpt(sample)
        else:
            yield _chatharuhi(sample, name, user_role)


def write_export(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """The rows as JSONL at ``path``, atomically; how many were written."""
    lines = [json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows]
    write_atomic(path, "".join(lines))
    return len(lines)
