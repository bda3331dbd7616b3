"""The page layout: Gradio components wired to :class:`~rolecast.web.app.WebApp` handlers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import registry
from ..character.personality import FACTORS, NAMES_EN
from ..errors import MissingDependencyError, RolecastError
from .access import Credentials, check_exposure
from .app import PARTS_COLUMNS, SKIP, WebApp
from .stage import CSS as STAGE_CSS
from .stage import head_html, static_dir

if TYPE_CHECKING:
    from gradio import Blocks
    from gradio.routes import App


# the gallery's cards: a click sends the card's id with the HTML component's click event
PICK_CARD = """element.addEventListener("click", (e) => {
  const card = e.target.closest && e.target.closest(".rc-card[data-id]");
  if (card) trigger("click", { id: card.dataset.id });
});"""


def page_css() -> str:
    return (static_dir() / "page.css").read_text(encoding="utf-8") + STAGE_CSS


def _gradio() -> ModuleType:
    try:
        import gradio as gr
    except ImportError:
        raise MissingDependencyError("rolecast web", "gradio", "web") from None
    return gr


def _shown(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into a Gradio notice instead of a broken page."""
    gr = _gradio()

    def unskip(out: Any) -> Any:
        if isinstance(out, tuple):
            return tuple(gr.skip() if o is SKIP else o for o in out)
        return out

    if _is_generator(fn):

        @functools.wraps(fn)
        def gen(*args: Any) -> Iterator[Any]:
            try:
                for out in fn(*args):
                    yield unskip(out)
            except RolecastError as exc:
                raise gr.Error(str(exc)) from None

        return gen

    @functools.wraps(fn)
    def plain(*args: Any) -> Any:
        try:
            return fn(*args)
        except RolecastError as exc:
            raise gr.Error(str(exc)) from None

    return plain


def _with_request(fn: Callable[..., Any], request_type: type) -> Any:
    """``fn``'s positional inputs (without its ``user`` keyword) and a trailing ``request``
    that Gradio fills with the page's request."""
    import inspect

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    names = [n for n in inspect.signature(fn).parameters if n != "user"]
    params = [inspect.Parameter(n, kind) for n in names]
    params.append(inspect.Parameter("request", kind, annotation=request_type))
    return inspect.Signature(params)


def _is_generator(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(inspect.unwrap(fn))


def build_page(app: WebApp) -> Blocks:
    """Chat on the left; on the right, tabs: the scene (the character, its avatar or frame,
    and the canon behind the last reply as lines), the characters (a gallery to pick from,
    import and export) and the settings. On a phone the right side comes under the chat."""
    gr = _gradio()
    page: Blocks
    with gr.Blocks(title="rolecast") as page:
        state = gr.State({})  # one dict per browser tab (Gradio copies it per session)
        # what the browser keeps: each character's chat id, so a reload goes on with it
        # (Gradio's own sealing key reaches every browser: what protects the ids is the
        # server's HMAC over user, character and chat, checked on every resume)
        browser = gr.BrowserState(
            {"chats": {}}, storage_key="rolecast-chats", secret="rolecast-browser-state"
        )
        with gr.Row(elem_id="rc-bar"):
            status = gr.Markdown("loading…", elem_id="rc-status")
            # the dark theme's switch (ui.js; remembered in the browser)
            gr.Button("◐", elem_id="rc-theme", scale=0, min_width=40, size="sm")
        with gr.Row(elem_id="rc-main", equal_height=False):
            with gr.Column(scale=3, min_width=300, elem_id="rc-left"):
                chat = gr.Chatbot(
                    elem_id="rc-chat",
                    height=480,
                    label="chat",
                    show_label=False,
                    group_consecutive_messages=False,
                    buttons=["copy"],
                )
                text = gr.Textbox(
                    placeholder="say something (Enter sends, Shift+Enter a new line, Esc stops)",
                    label="your line",
                    show_label=False,
                    lines=1,
                    max_lines=6,
                    elem_id="rc-text",
                )
                with gr.Row(elem_id="rc-buttons"):
                    send = gr.Button("Send", variant="primary", elem_id="rc-send", min_width=60)
                    stop = gr.Button("Stop", variant="stop", elem_id="rc-stop", min_width=60)
                    regen = gr.Button("↻", elem_id="rc-regen", min_width=40)
                    prev = gr.Button("◀", elem_id="rc-prev", min_width=40)
                    nxt = gr.Button("▶", elem_id="rc-next", min_width=40)
                with gr.Row():
                    role = gr.Textbox(label="you speak as", scale=2, elem_id="rc-role")
                    narrator = gr.Checkbox(label="narrate (旁白)", scale=1, elem_id="rc-narrator")
                    voice = gr.Checkbox(label="speak replies", scale=1, elem_id="rc-voice")
                voice_status = gr.Markdown(elem_id="rc-voice-status")
                with gr.Accordion("more", open=False, elem_id="rc-more"):
                    with gr.Row():
                        edit = gr.Button("Edit last (send the box instead)", elem_id="rc-edit")
                        new = gr.Button("New chat", elem_id="rc-new")
                        export_json = gr.Button("Export JSON", elem_id="rc-export-json")
                        export_md = gr.Button("Export Markdown", elem_id="rc-export-md")
                exported = gr.File(label="exported", visible=False, elem_id="rc-file")
            with gr.Column(scale=2, min_width=300, elem_id="rc-side"):
                with gr.Tabs(elem_id="rc-tabs"):
                    with gr.Tab("Scene", elem_id="rc-tab-scene"):
                        header = gr.Markdown(elem_id="rc-header")
                        stage = gr.HTML(elem_id="rc-avatar")  # the avatar, talking
                        image = gr.Image(
                            label="scene",
                            show_label=False,
                            type="filepath",
                            interactive=False,
                            height=300,
                            elem_id="rc-image",
                        )
                        caption = gr.Markdown(elem_id="rc-caption")
                        canon = gr.HTML(elem_id="rc-canon")
                        with gr.Accordion("prompt tokens, last turn", open=False):
                            parts = gr.Dataframe(
                                headers=PARTS_COLUMNS, interactive=False, elem_id="rc-parts"
                            )
                    with gr.Tab("Characters", elem_id="rc-tab-characters"):
                        gr.Textbox(  # filtered in the page (ui.js): no round trip
                            placeholder="search by name, source or greeting",
                            show_label=False,
                            elem_id="rc-search",
                        )
                        gallery = gr.HTML(elem_id="rc-gallery", js_on_load=PICK_CARD)
                        picker = gr.Dropdown(
                            choices=app.characters(),
                            label="character",
                            elem_id="rc-picker",
                            allow_custom_value=True,  # on_pick checks the id is installed
                        )
                        others = gr.Dropdown(
                            choices=app.characters(),
                            multiselect=True,
                            label="scene with (a group chat: pick others to join)",
                            elem_id="rc-others",
                        )
                        import_status = gr.Markdown(elem_id="rc-import-status")
                        export_card = gr.Button("Export as a card (PNG)", elem_id="rc-export-card")
                        card_file = gr.File(visible=False, elem_id="rc-card-file")
                    with gr.Tab("Settings", elem_id="rc-tab-settings"):
                        backend = gr.Dropdown(
                            [b for b in registry.names("llm") if b != "scripted"],
                            value=app.backend,
                            label="backend",
                            allow_custom_value=True,
                            elem_id="rc-backend",
                        )
                        model = gr.Dropdown(
                            [""] + list(app.models.names()),
                            value=app.model or "",
                            label="model (empty: the backend's default)",
                            allow_custom_value=True,
                            elem_id="rc-model",
                        )
                        canon_budget = gr.Number(label="canon budget (tokens)", value=1500)
                        history_budget = gr.Number(label="history budget (tokens)", value=1200)
                        sliders = [
                            gr.Slider(
                                0,
                                5,
                                value=0,
                                step=1,
                                label=f"{NAMES_EN[f]} ({f})",
                                info="0: the character's own; 1 low to 5 high",
                                elem_id=f"rc-trait-{f}",
                            )
                            for f in FACTORS
                        ]
                        apply = gr.Button("Apply", elem_id="rc-apply")
                        applied = gr.Markdown()
                # the import's file input, outside the tabs so it is always on the page: a file
                # dropped anywhere, or the gallery's import card, hands it a file (ui.js)
                imported = gr.File(
                    label="import a character",
                    file_types=[".png", ".json", ".charx", ".zip", ".jsonl"],
                    elem_id="rc-import",
                    elem_classes=["rc-hidden"],
                )
        timer = gr.Timer(0.5)

        def show_status(st: dict[str, Any]) -> tuple[str, Any]:
            text, done = app.status(st)
            return text, gr.Timer(active=not done)

        def shown_file(fn: Callable[..., str]) -> Callable[..., Any]:
            return lambda *args: gr.File(value=fn(*args), visible=True)

        def on_import(path: str | None, st: dict[str, Any]) -> tuple[Any, ...]:
            note, cards, choices, cid = app.on_import(path, st)
            return (
                note,
                cards,
                gr.Dropdown(choices=choices, value=cid),
                gr.Dropdown(choices=choices),
                None,
            )

        def as_user(fn: Callable[..., Any]) -> Callable[..., Any]:
            """``fn`` given the logged-in user's name ("" without logins) as ``user``."""

            def call(*args: Any) -> Any:
                *inputs, request = args
                return fn(*inputs, user=getattr(request, "username", None) or "")

            call.__name__ = call.__qualname__ = fn.__name__
            call.__signature__ = _with_request(fn, gr.Request)  # type: ignore[attr-defined]
            call.__annotations__ = {"request": gr.Request}  # how Gradio finds the request
            return call

        def choices() -> tuple[Any, Any]:  # characters installed since the page was built
            found = app.characters()
            return gr.Dropdown(choices=found), gr.Dropdown(choices=found)

        view = [chat, image, caption, canon, parts, stage]
        page.load(
            _shown(as_user(app.on_load)),
            [state, browser],
            [state, picker, image, header, role, *view],
        ).then(app.gallery_view, [state], gallery).then(choices, None, [picker, others])
        timer.tick(show_status, [state], [status, timer], queue=False, show_progress="hidden")
        picker.change(
            _shown(as_user(app.on_pick)),
            [picker, state, browser],
            [state, image, header, role, *view],
        ).then(app.gallery_view, [state], gallery).then(lambda: gr.Timer(active=True), None, timer)

        def pick_card(evt: Any) -> str:  # a card clicked: its id to the picker
            return app.on_gallery_pick(str(getattr(evt, "id", "") or ""))

        pick_card.__annotations__ = {"evt": gr.EventData}  # how Gradio finds the event data
        gallery.click(pick_card, None, [picker], queue=False)
        others.change(_shown(app.on_scene), [others, state], [state, image, header, role, *view])
        keep = (as_user(app.remembered), [state, browser], [browser])  # after a turn
        for trigger in (send.click, text.submit):
            trigger(_shown(app.on_send), [text, role, narrator, state], [text, *view]).then(*keep)
        stop.click(_shown(app.on_stop), [state], None, queue=False)
        regen.click(_shown(app.on_regenerate), [state], [text, *view]).then(*keep)
        edit.click(_shown(app.on_edit), [text, state], [text, *view]).then(*keep)
        prev.click(_shown(functools.partial(app.on_swipe, -1)), [state], view)
        nxt.click(_shown(functools.partial(app.on_swipe, 1)), [state], view)
        new.click(_shown(app.on_new), [state], view, queue=False).then(*keep)
        voice.change(_shown(app.on_voice), [voice, state], voice_status)
        export_json.click(
            _shown(shown_file(functools.partial(app.on_export, "json"))), [state], exported
        )
        export_md.click(
            _shown(shown_file(functools.partial(app.on_export, "md"))), [state], exported
        )
        imported.upload(
            _shown(on_import), [imported, state], [import_status, gallery, picker, others, imported]
        )
        export_card.click(_shown(shown_file(app.on_export_card)), [state], card_file)
        apply.click(
            _shown(app.on_settings),
            [backend, model, canon_budget, history_budget, *sliders, state],
            applied,
        )
    return page


def launch_options(
    app: WebApp, host: str, port: int, share: bool, credentials: Credentials
) -> dict[str, Any]:
    """Gradio's ``launch`` arguments: refused without credentials anywhere but on loopback;
    the file route serves the packages' images and the spoken replies, nothing else of theirs."""
    check_exposure(host, share, credentials)
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "css": page_css(),
        "head": head_html(),
        "allowed_paths": app.allowed_paths(),  # the app's own list: imports add to it
        "auth": credentials.check if credentials else None,
        "auth_message": "rolecast: log in with the user and password the operator gave",
    }


def launch(
    app: WebApp,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    credentials: Credentials | None = None,
    **kwargs: Any,
) -> tuple[App, str, str]:
    import threading

    options = launch_options(app, host, port, share, credentials or Credentials())
    # the default character's index loads while Gradio is imported and the page is built, so
    # the first page shows a loaded character without waiting
    loading = threading.Thread(target=app.index, args=(app.default,), daemon=True)
    loading.start()
    page = build_page(app)
    loading.join()
    page.queue(default_concurrency_limit=None)
    return page.launch(**options, **kwargs)
