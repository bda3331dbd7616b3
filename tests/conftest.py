from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from servers import free_port

from rolecast.character.model import Character, Line, Scene

# Fixtures that start a real model, server, browser, database or speech engine: a test that
# uses one is end-to-end (``pytest -m "not e2e"`` leaves it out). Tests that make such a thing
# themselves carry ``@pytest.mark.e2e`` (or their module's ``pytestmark``).
E2E_FIXTURES = frozenset(
    {
        "smollm2",  # SmolLM2-135M in llama.cpp
        "qwen",  # the default local model
        "server",  # llama.cpp's OpenAI server (test_openai), the page in Chromium
        "proxy",
        "live_server",  # `rolecast serve` in a subprocess
        "speech_server",
        "postgres_url",  # a PostgreSQL started for the session
        "kokoro",  # TTS engines
        "espeak",
        "voices",  # speaker embeddings (resemblyzer, torch)
    }
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs("module", extra="x")``: skipped, saying which extra to install,
    where the module is not installed (rolecast runs without its extras)."""
    for mark in item.iter_markers("needs"):
        missing = [m for m in mark.args if not _importable(m)]
        if missing:
            extra = mark.kwargs.get("extra", "")
            hint = f": pip install 'rolecast[{extra}]'" if extra else ""
            if os.environ.get("CI"):  # CI installs every extra: a missing one is a failure
                pytest.fail(f"CI must install {', '.join(missing)}{hint}")
            pytest.skip(f"needs {', '.join(missing)}{hint}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())) or item.get_closest_marker(
            "corpus"
        ):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def shared_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One index folder for the whole run: an index is named by its canon's hash, so a
    character's index is built once and read by every later test."""
    return tmp_path_factory.mktemp("index")


@pytest.fixture(autouse=True)
def rolecast_home(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    shared_index_dir: Path,
) -> Path:
    """Every test gets its own ROLECAST_HOME: nothing touches the user's data. Indexes are
    the exception, kept in one folder for the run (ROLECAST_INDEX_DIR)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ROLECAST_HOME", str(home))
    monkeypatch.setenv("ROLECAST_INDEX_DIR", str(shared_index_dir))
    return home


@pytest.fixture(scope="session")
def embedder():
    from rolecast.retrieval.embedders import get_embedder

    return get_embedder("use")


@pytest.fixture(scope="session")
def counter():
    from rolecast.prompt.tokens import quicktok_counter

    return quicktok_counter("qwen3")


def filler(n: int, size: int = 30) -> list[str]:
    """``n`` chunks of ``size`` CJK characters that never repeat (a reply of one character
    over and over is a loop, which the session cuts)."""
    return ["".join(chr(0x4E00 + 7 * (k * size + i)) for i in range(size)) for k in range(n)]


def make_character(n_scenes: int = 6) -> Character:
    topics = [
        ("雨天", "下雨了，伞又破了一个洞。", "拿来我补，两文钱，补完比新的还结实。"),
        ("算账", "今天赚了多少？", "八碗面，三个蛋，扣掉柴火钱，刚好够买明天的葱。"),
        ("猫", "那只黑猫又来偷鱼了！", "煤球！给我把鱼放下，不然今晚没你的汤。"),
        ("灯", "你为什么每晚都在桥头点灯？", "给晚归的船照个亮，万一有人迷路呢。"),
        ("旧钟", "这座钟不走了，还能修吗？", "发条松了，拧紧就好，修不好不收钱。"),
        ("远方", "你想不想离开这个小镇？", "想过，可是面摊离不开我，我也离不开这条河。"),
        ("馄饨", "对面的馄饨比你的面便宜。", "便宜没好货，他的汤是白水加盐。"),
        ("生日", "今天是你的生日吗？", "谁说的？豆子那个大嘴巴！"),
    ]
    scenes = []
    for i in range(n_scenes):
        title, ask, answer = topics[i % len(topics)]
        scenes.append(
            Scene(
                f"s{i:03d}",
                title,
                (
                    Line("旁白", f"第{i}个夜晚，桥头起了雾。"),
                    Line("旅人", ask),
                    Line("小满", answer),
                ),
            )
        )
    return Character(
        id="testchar",
        name="小满",
        persona="你是小满，在桥头开面摊的姑娘。说话爽快。",
        scenes=scenes,
        aliases=["满老板"],
        user_role="旅人",
        narrators=["旁白"],
        greetings=["来碗面？"],
    )


@pytest.fixture
def character() -> Character:
    return make_character()


def corpus_root() -> Path | None:
    root = os.environ.get("ROLECAST_CORPUS")
    return Path(root) if root else None


def make_english_character() -> Character:
    scenes = [
        Scene(
            "cat",
            "the cat",
            (
                Line("Guest", "The black cat stole a fish again!"),
                Line("Mia", "Coal! Drop that fish or no soup for you tonight."),
            ),
        ),
        Scene(
            "rain",
            "rain",
            (
                Line("Guest", "It is raining and my umbrella has a hole."),
                Line("Mia", "Give it here, two coins and it will be better than new."),
            ),
        ),
        Scene(
            "lamp",
            "the lamp",
            (
                Line("Guest", "Why do you light a lamp on the bridge every night?"),
                Line("Mia", "So the late boats find their way home. Somebody has to."),
            ),
        ),
    ]
    return Character(
        id="mia",
        name="Mia",
        persona="You are Mia, who runs a noodle stall by the bridge. You talk fast and bargain.",
        scenes=scenes,
        language="en",
        user_role="Guest",
        narrators=["Narrator"],
    )


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url():  # type: ignore[no-untyped-def]
    """A real PostgreSQL server on 127.0.0.1 for the session (Debian's postgresql package)."""
    import shutil
    import subprocess

    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's postgresql package")
        pytest.skip("needs PostgreSQL (Debian package postgresql)")
    import tempfile

    # not under pytest's temp folder: the postgres user must be able to reach it
    base = Path(tempfile.mkdtemp(prefix="rolecast-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_postgres, *cmd], capture_output=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {done.stderr.decode(errors='replace')}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "log"),
        "-w",
        "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=on",
        "start",
    )
    try:
        run(
            str(bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "rolecast",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/rolecast"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
