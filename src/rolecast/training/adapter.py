"""A LoRA adapter folder, as ``rolecast finetune`` writes it and the local backend loads it:

    adapter.json        what it is: base model (name, file, sha256), character, dataset
                        (with its held-out scenes), settings, figures; written last
    peft/               adapter_config.json + adapter_model.safetensors (peft, transformers)
    adapter.gguf        the same LoRA for llama.cpp (``--lora`` of llama.cpp's own tools too)

The GGUF adapter is made by llama.cpp's ``convert_lora_to_gguf.py``, which ships in
llama-cpp-python's source distribution on PyPI (``scripts/setup finetune`` puts it in the
venv); nothing is fetched at run time. An adapter made for another base model is refused
before llama.cpp sees it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends import models
from ..errors import BackendError, InputError, ParseError
from ..files import file_sha256, replace_dir, staging_dir, write_atomic

MANIFEST = "adapter.json"
GGUF = "adapter.gguf"
PEFT = "peft"
FORMAT = 1
CONVERTER = "convert_lora_to_gguf.py"
SOURCE_ENV = "ROLECAST_LLAMA_CPP_SOURCE"  # llama.cpp's converters: a folder or the sdist


@dataclass(frozen=True)
class Base:
    """The model a LoRA is trained on: a GGUF file (catalogue or path) or an HF folder."""

    name: str
    kind: str  # "gguf" or "hf"
    path: Path
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "file": self.path.name, "sha256": self.sha256}


def resolve_base(name: str) -> Base:
    """A catalogue model name, a GGUF file, or a folder with a Hugging Face model."""
    key = models.ALIASES.get(name, name)
    if key in models.MODELS:
        spec = models.MODELS[key]
        return Base(spec.name, "gguf", models.resolve_model(key), spec.sha256)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"--base {name}: the folder has no config.json (not an HF model)")
        return Base(path.name, "hf", path, file_sha256(path / "config.json"))
    if path.is_file() and path.suffix == ".gguf":
        return Base(path.stem, "gguf", path, file_sha256(path))
    raise InputError(
        f"--base {name!r} is not a catalogue model ({', '.join(models.MODELS)}), "
        f"a .gguf file or a Hugging Face model folder"
    )


@dataclass
class AdapterManifest:
    base: dict[str, str]
    character: dict[str, str]
    dataset: dict[str, Any]  # folder, digest, samples, held_out
    settings: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    rolecast: str = __version__
    format: int = FORMAT
    gguf: bool = False  # whether adapter.gguf was written

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "base": self.base,
            "character": self.character,
            "dataset": self.dataset,
            "settings": self.settings,
            "figures": self.figures,
            "created": self.created,
            "rolecast": self.rolecast,
            "gguf": self.gguf,
        }

    @classmethod
    def from_dict(cls, data: Any) -> AdapterManifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a format-{FORMAT} adapter manifest")
        for key in ("base", "character", "dataset", "settings"):
            if not isinstance(data.get(key), dict):
                raise ValueError(f"'{key}' is missing or not an object")
        if not isinstance(data["base"].get("sha256"), str):
            raise ValueError("the base model's sha256 is missing")
        held = data["dataset"].get("held_out")
        if not isinstance(held, list) or not all(isinstance(s, str) for s in held):
            raise ValueError("'dataset.held_out' is not a list of scene ids")
        return cls(
            base=dict(data["base"]),
            character=dict(data["character"]),
            dataset=dict(data["dataset"]),
            settings=dict(data["settings"]),
            figures=dict(data.get("figures") or {}),
            created=str(data.get("created", "")),
            rolecast=str(data.get("rolecast", "")),
            gguf=bool(data.get("gguf")),
        )


@dataclass(frozen=True)
class Adapter:
    """An adapter folder, read: its manifest and the GGUF file llama.cpp loads."""

    folder: Path
    manifest: AdapterManifest

    @property
    def gguf(self) -> Path:
        return self.folder / GGUF

    @property
    def held_out(self) -> list[str]:
        return list(self.manifest.dataset.get("held_out", []))


def read_adapter(folder: Path) -> AdapterManifest:
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise InputError(f"no adapter folder at {folder}")
    try:
        return AdapterManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError(
            f"{folder} is not a finished adapter: no {MANIFEST} (an interrupted finetune "
            f"writes none; run it again to go on from its checkpoint)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"not a rolecast adapter manifest: {exc}", path) from None


def open_adapter(ref: str | os.PathLike[str]) -> Adapter:
    """An adapter folder by path (its GGUF must be there: llama.cpp loads that)."""
    folder = Path(ref).expanduser()
    if folder.is_file() and folder.name == GGUF:
        folder = folder.parent
    manifest = read_adapter(folder)
    out = Adapter(folder, manifest)
    if not out.gguf.is_file():
        raise InputError(
            f"{folder} has no {GGUF} (finetune ran with --no-gguf?): llama.cpp needs it; "
            f"make it with `rolecast finetune --convert-only {folder}`"
        )
    return out


def check_base(adapter: Adapter, model_path: Path, model_sha256: str | None = None) -> None:
    """Refuse an adapter trained on another base model than the GGUF at ``model_path``."""
    base = adapter.manifest.base
    if base.get("kind") != "gguf":
        return  # an HF base: llama.cpp checks the tensor shapes when it loads the adapter
    digest = model_sha256 or _known_sha256(model_path) or file_sha256(model_path)
    if digest != base["sha256"]:
        raise InputError(
            f"the adapter in {adapter.folder} was trained on {base.get('name')} "
            f"({base.get('file')}), not on {model_path.name}: use --model {base.get('name')}"
        )


def _known_sha256(path: Path) -> str | None:
    for spec in models.MODELS.values():
        if path.name == spec.filename and path.stat().st_size == spec.size:
            return spec.sha256  # resolve_model verified it against its stamp
    return None


# ---- writing ---------------------------------------------------------------------------------


def write_adapter(
    folder: Path,
    model: Any,
    tokenizer: Any,
    base: Base,
    manifest: AdapterManifest,
    convert: bool = True,
) -> Path:
    """The peft files, the GGUF adapter (``convert``) and the manifest, last; the folder's
    checkpoint, if any, is left for the caller to remove."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / PEFT
    with staging_dir(dest) as tmp:
        model.save_pretrained(tmp, save_embedding_layers=False)  # LoRA on attention only
        for path in (tmp, *tmp.iterdir()):  # readable like any model file, not only by us
            path.chmod(0o755 if path.is_dir() else 0o644)
        replace_dir(tmp, dest)
    if convert:
        with staging_dir(folder / ".base-config") as config_dir:
            config = model.base_model.model.config
            if not getattr(config, "architectures", None):  # a config read from a GGUF
                config.architectures = [type(model.base_model.model).__name__]
            config.save_pretrained(config_dir)
            tokenizer.save_pretrained(config_dir)
            _drop_quantization(config_dir / "config.json")
            convert_to_gguf(dest, config_dir, folder / GGUF)
    manifest.gguf = convert
    manifest.created = manifest.created or _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"
    )
    write_atomic(folder / MANIFEST, json.dumps(manifest.to_dict(), ensure_ascii=False, indent=2))
    return folder


def _drop_quantization(path: Path) -> None:
    """The converter reads only the shapes of the base: a GGUF base's config says it was
    quantised ("gguf"), which the converter would try to undo on weights it never reads."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("quantization_config", None)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def convert_to_gguf(peft_dir: Path, base_config: Path, out: Path) -> Path:
    """llama.cpp's converter on the peft adapter, into ``out`` (atomically)."""
    source = converter_dir()
    # the converter runs in its own folder: every path it is given must be absolute
    peft_dir, base_config, out = peft_dir.resolve(), base_config.resolve(), out.resolve()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    command = [
        sys.executable,
        str(source / CONVERTER),
        "--base",
        str(base_config),
        "--outfile",
        str(tmp),
        "--outtype",
        "f32",
        str(peft_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        done = subprocess.run(
            command, cwd=source, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not tmp.is_file():
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise BackendError(f"llama.cpp's {CONVERTER} failed (exit {done.returncode}):\n{tail}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def converter_dir(environ: Mapping[str, str] | None = None) -> Path:
    """llama.cpp's converter scripts (with their ``conversion`` and ``gguf-py`` packages):
    ``ROLECAST_LLAMA_CPP_SOURCE`` (a folder or the sdist), else the sdist that
    ``scripts/setup finetune`` put in the venv, unpacked once beside the models."""
    env = os.environ if environ is None else environ
    given = env.get(SOURCE_ENV)
    candidates = [Path(given)] if given else sorted(sdist_dir().glob("llama_cpp_python-*.tar.gz"))
    for source in reversed(candidates):
        if source.is_dir():
            if (source / CONVERTER).is_file():
                return source
            raise InputError(f"{SOURCE_ENV}={source}: no {CONVERTER} in that folder")
        if source.is_file():
            return _unpacked(source, models.models_dir(environ))
        raise InputError(f"{SOURCE_ENV}={source}: no such file or folder")
    raise InputError(
        f"the GGUF adapter needs llama.cpp's {CONVERTER}, from llama-cpp-python's source "
        f"distribution: run `scripts/setup finetune`, or `pip download --no-binary :all: "
        f"--no-deps llama-cpp-python==<version> -d {sdist_dir()}`"
    )


def sdist_dir() -> Path:
    return Path(sys.prefix) / "share" / "rolecast"


_KEEP = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _unpacked(sdist: Path, cache: Path) -> Path:
    """The converter files of ``sdist``, unpacked once into ``cache``."""
    dest = cache / sdist.name.removesuffix(".tar.gz")
    if (dest / CONVERTER).is_file():
        return dest
    with staging_dir(dest) as tmp, tarfile.open(sdist) as tar:
        found = 0
        for member in tar.getmembers():
            _, sep, inner = member.name.partition("/vendor/llama.cpp/")
            if not sep or not inner.startswith(_KEEP) or not member.isfile():
                continue
            target = tmp / inner
            if ".." in Path(inner).parts:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = tar.extractfile(member)
            if handle is not None:
                target.write_bytes(handle.read())
                found += 1
        if not (tmp / CONVERTER).is_file():
            raise InputError(f"{sdist} holds no vendor/llama.cpp/{CONVERTER}")
        replace_dir(tmp, dest)
    return dest
