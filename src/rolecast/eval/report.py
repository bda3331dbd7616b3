"""What every evaluation writes, and the cache that lets a rerun skip finished work.

    OUT/                   (default: ./eval-<eval>-<character id>)
      results.json         every figure, the setup and the per-item results
      report.md            the same for people, with the plots
      *.png                plots (matplotlib, drawn without pyplot: safe in threads)
      cache/<ab>/<sha256>.json
                           one finished item each (a generated reply, a paraphrase, ...)

Every file is written to a temporary sibling and renamed into place, so an interrupted
run never leaves a half-written report, and a cache entry is either whole or absent.
A cache key is the sha256 of the eval's scope (eval name, character digest, backend and
model, generation parameters, settings) and the item: change any of them and the item
is done again; leave them and it is read back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import InputError
from ..files import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..backends.base import LLM
    from ..character.model import Character
    from .metrics import Interval

log = logging.getLogger(__name__)

RESULTS, REPORT, CACHE = "results.json", "report.md", "cache"
# Models this small answer in character poorly whatever the prompt: their figures say how the
# pipeline behaves, not how well a capable model plays the character.
SMALL_MODELS = ("smollm2", "135m", "0.5b", "qwen2.5-coder-0.5b")


def default_out_dir(eval_name: str, character_id: str, cwd: Path | None = None) -> Path:
    """``./eval-<eval>-<character id>`` (``viz`` gives ``./viz-<character id>``)."""
    base = Path.cwd() if cwd is None else cwd
    prefix = eval_name if eval_name == "viz" else f"eval-{eval_name}"
    return base / f"{prefix}-{character_id}"


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    return write_atomic(path, data)


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Dataclasses (``Interval`` included), tuples and numpy scalars made plain JSON."""
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, indent=2) + "\n"


_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
)
_families: list[str] | None = None


def _font_families() -> list[str]:
    """The default sans-serif, then the CJK fonts installed here, tried glyph by glyph."""
    global _families
    if _families is None:
        from matplotlib import font_manager

        installed = {f.name for f in font_manager.fontManager.ttflist}
        _families = ["sans-serif", *(f for f in _CJK_FONTS if f in installed)]
    return _families


@contextmanager
def plot_context() -> Iterator[None]:
    """Draw (create and save) figures inside this: fonts that cover Chinese and Japanese
    names where the machine has them. Text takes its font when it is created."""
    try:
        import matplotlib
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("evaluation plots", "matplotlib", extra="eval") from None
    with matplotlib.rc_context({"font.family": _font_families()}):
        yield


def save_figure(figure: Figure, path: Path) -> Path:
    import io
    import warnings

    buf = io.BytesIO()
    with plot_context(), warnings.catch_warnings():
        # without a CJK font a name shows as boxes: say so once in the log, not per glyph
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        figure.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return write_bytes_atomic(path, buf.getvalue())


def write_report(
    out: Path,
    results: Mapping[str, Any],
    markdown: str,
    figures: Mapping[str, Figure] | None = None,
    extra: Mapping[str, str | bytes] | None = None,
) -> dict[str, Path]:
    """Write ``results.json``, ``report.md``, each figure as ``<name>.png`` and each extra
    file (name -> text or bytes) into ``out``, atomically; returns the paths by name.
    The figures are written first so the report never names a picture that is missing."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, figure in (figures or {}).items():
        written[f"{name}.png"] = save_figure(figure, out / f"{name}.png")
    for name, data in (extra or {}).items():
        data_bytes = data.encode("utf-8") if isinstance(data, str) else data
        written[name] = write_bytes_atomic(out / name, data_bytes)
    written[RESULTS] = write_text_atomic(out / RESULTS, dumps(results))
    written[REPORT] = write_text_atomic(out / REPORT, markdown.rstrip() + "\n")
    return written


def character_digest(character: Character) -> str:
    """A hash of everything about a character that a reply depends on: its canon, persona,
    names, lore. Cache keys include it, so editing the character invalidates the cache."""
    h = hashlib.sha256(character.canon_hash().encode())
    for part in (
        character.name,
        *character.aliases,
        character.persona,
        character.language,
        character.user_role,
        *character.narrators,
        json.dumps([e.to_dict() for e in character.lore], ensure_ascii=False, sort_keys=True),
    ):
        h.update(part.encode())
        h.update(b"\0")
    if character.personality:  # dials change the persona the model sees
        h.update(json.dumps(character.personality, sort_keys=True).encode())
    return h.hexdigest()


# the code that turns a model's text into the reply a user sees: the prompt it is given, the
# clean-up that cuts recitals, assistant talk and other speakers, the identity checks. A cached
# reply made by other code is not this code's reply.
REPLY_SOURCES = (
    "session.py",
    "assistant_talk.py",
    "identity.py",
    "overlap.py",
    "prompt/assemble.py",
    "prompt/lore.py",
    "prompt/templates",
)


def reply_code_digest(root: Path | None = None, sources: Sequence[str] = REPLY_SOURCES) -> str:
    """A hash of the reply-making code (``REPLY_SOURCES`` under the package): in every eval
    cache's scope, so a fix to the clean-up makes fresh replies without ``--fresh``."""
    base = root if root is not None else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for name in sources:
        path = base / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                h.update(f.relative_to(base).as_posix().encode())
                h.update(b"\0")
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def backend_info(llm: LLM | None) -> dict[str, Any]:
    """What identifies the backend's replies: its name, model and endpoint."""
    if llm is None:
        return {"backend": None, "model": None}
    inner = getattr(llm, "inner", llm)  # a LockedLLM speaks for the backend it wraps
    info: dict[str, Any] = {"backend": inner.name, "model": inner.model}
    base_url = getattr(inner, "base_url", None)
    if base_url:
        info["base_url"] = base_url
    return info


def is_small_model(model: str | None) -> bool:
    m = (model or "").lower()
    return any(tag in m for tag in SMALL_MODELS)


def model_note(info: Mapping[str, Any]) -> str:
    """The report's line about the backend, with the small-model caveat where it applies."""
    backend, model = info.get("backend"), info.get("model")
    if backend is None:
        return "No language model was used."
    line = f"Backend `{backend}`, model `{model}`"
    if info.get("base_url"):
        line += f" at `{info['base_url']}`"
    line += "."
    if backend in ("scripted", "echo"):
        line += " **A test backend: these figures check the pipeline, they measure no model.**"
    elif is_small_model(model):
        line += (
            " **These are small-model numbers**: a model of this size plays any character"
            " poorly, so they show how the evaluation behaves, not how well a capable model"
            " plays the character."
        )
    return line


def scope_info(scope: Mapping[str, Any]) -> dict[str, Any]:
    """What a report's header says of a cache scope: the backend, model and settings, not
    the eval's name, character digest, parameters or language (said elsewhere)."""
    return {k: v for k, v in scope.items() if k not in ("eval", "character", "params", "language")}


def judge_notes(head: Mapping[str, Any], what: str, noun: str) -> list[str]:
    """The report's lines on who replied (``head``'s backend, model and endpoint) and who
    judged (``head["judge"]``: ``None`` when the rules alone decide)."""
    notes = [f"{what}: {model_note(head)}"]
    dials = (head.get("character") or {}).get("dials")
    if dials:
        notes.append(
            "Big Five dials: " + " ".join(f"{f}={v}" for f, v in dials.items()) + " (`--trait`)."
        )
    judge = head.get("judge")
    if judge is None:
        notes.append("No judge: the rules alone decide.")
    elif all(head.get(k) == v for k, v in judge.items()):
        notes.append(f"The same backend judged the {noun}.")
    else:
        notes.append(f"Judge: {model_note(judge)}")
    return notes


def header(eval_name: str, character: Character, info: Mapping[str, Any]) -> dict[str, Any]:
    """The common head of every ``results.json``."""
    who: dict[str, Any] = {"id": character.id, "name": character.name}
    who["language"] = character.language
    if character.personality:
        who["dials"] = dict(character.personality)
    return {
        "eval": eval_name,
        "character": who,
        "character_digest": character_digest(character),
        **dict(info),
        "rolecast": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


class Cache:
    """Finished items of one evaluation, one JSON file each, under ``folder``.

    ``scope`` is everything the items' values depend on besides the item itself (see
    ``Cache.scope``); ``item`` is any JSON-able value naming one unit of work. Values are
    JSON-able and never ``None``. ``enabled=False`` reads nothing (a fresh run) but still
    writes, so the next run can reuse the work. Safe to use from several threads.
    """

    def __init__(self, folder: Path, scope: Mapping[str, Any], enabled: bool = True) -> None:
        self.folder = folder
        self.scope = to_jsonable(dict(scope))
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.parent: Cache | None = None  # a scoped() child counts its hits there too

    @staticmethod
    def scope_for(
        eval_name: str,
        character: Character | None = None,
        llm: LLM | None = None,
        params: Any = None,
        **settings: Any,
    ) -> dict[str, Any]:
        """The usual scope: eval name, character digest, backend and model, generation
        parameters (a dataclass or mapping) and any further settings."""
        scope: dict[str, Any] = {
            "eval": eval_name,
            **backend_info(llm),
            "code": reply_code_digest(),
        }
        if character is not None:
            scope["character"] = character_digest(character)
        if params is not None:
            scope["params"] = to_jsonable(params)
        scope.update(settings)
        return scope

    def scoped(self, **extra: Any) -> Cache:
        """The same folder under a narrower scope (``extra`` added), its hits and misses
        counted here as well."""
        child = Cache(self.folder, {**self.scope, **extra}, self.enabled)
        child.parent = self
        return child

    def _count(self, hit: bool) -> None:
        cache: Cache | None = self
        while cache is not None:
            if hit:
                cache.hits += 1
            else:
                cache.misses += 1
            cache = cache.parent

    def key(self, item: Any) -> str:
        blob = json.dumps(
            {"scope": self.scope, "item": to_jsonable(item)}, ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, item: Any) -> Path:
        key = self.key(item)
        return self.folder / key[:2] / f"{key}.json"

    def get(self, item: Any) -> Any | None:
        if not self.enabled:
            return None
        path = self.path(item)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            value = data["value"]
        except FileNotFoundError:
            self._count(hit=False)
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cache entry %s is unreadable (%s): doing the item again", path, exc)
            self._count(hit=False)
            return None
        self._count(hit=True)
        return value

    def put(self, item: Any, value: Any) -> None:
        if value is None:
            raise ValueError("a cache value must not be None")
        entry = {"scope": self.scope, "item": to_jsonable(item), "value": to_jsonable(value)}
        # not synced (a thousand entries a second at scale): an entry a power cut damages
        # reads as unreadable, and its item is done again
        text = json.dumps(entry, ensure_ascii=False)
        write_atomic(self.path(item), text.encode("utf-8"), sync=False)


def open_cache(out: Path, scope: Mapping[str, Any], fresh: bool = False) -> Cache:
    """The cache folder of an out dir (``OUT/cache``); ``fresh`` ignores what is there."""
    return Cache(out / CACHE, scope, enabled=not fresh)


# ---- Markdown and plots ------------------------------------------------------------------


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if v != v else f"{v:.3f}"
        return md_escape(str(v))

    lines = [
        "| " + " | ".join(md_escape(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    """A matplotlib figure without pyplot (no global state, no GUI backend); build it
    inside ``plot_context()``."""
    with plot_context():
        from matplotlib.figure import Figure

        return Figure(figsize=(width, height), layout="constrained")


def interval_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[Interval]],
    ylabel: str = "",
    zero_line: bool = False,
) -> Figure:
    """Grouped bars: one group per entry of ``groups``, one bar per series (each a list of
    intervals, one per group), error bars from the intervals' bounds."""
    with plot_context():
        return _interval_chart(title, groups, series, ylabel, zero_line)


def _interval_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[Interval]],
    ylabel: str,
    zero_line: bool,
) -> Figure:
    fig = new_figure()
    ax = fig.add_subplot()
    n_series = max(len(series), 1)
    width = 0.8 / n_series
    for s, (name, intervals) in enumerate(series.items()):
        if len(intervals) != len(groups):
            raise ValueError(f"series {name!r} has {len(intervals)} values for {len(groups)}")
        xs = [g + (s - (n_series - 1) / 2) * width for g in range(len(groups))]
        means = [0.0 if iv.n == 0 else iv.mean for iv in intervals]
        below = [0.0 if iv.n == 0 else iv.mean - iv.low for iv in intervals]
        above = [0.0 if iv.n == 0 else iv.high - iv.mean for iv in intervals]
        ax.bar(xs, means, width, yerr=[below, above], capsize=3, label=name)
    ax.set_xticks(range(len(groups)), list(groups))
    if zero_line:
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(title)
    if ylabel:
        ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return fig


def check_out_dir(out: Path) -> Path:
    """``out`` as a folder that can be written (created when missing)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}") from None
    return out
