"""The code blocks of the README and of every page in docs/, run as written against a real server, so that
they cannot drift from the code.

Every ```sh and ```python block runs, unless an HTML comment right above it says why it is not run here
(the block then names where it is tested). `localhost:50051` and `localhost:8080` become the addresses of the test
server (gRPC and HTTP; it serves both committed models, as `./dev serve` does), and `./dev run X` the environment's X;
shell lines run in a scratch folder that sees the checkout's tests/, models/ and samples/. A `print(...)  # text`
line in a Python block must print that text.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .service.conftest import ServerThread, running_server

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_BLOCK = re.compile(r"(<!--[^\n]*-->\n)?```(sh|python)\n(.*?)```", re.DOTALL)


#: The pages whose examples run: the README and every page of docs/.
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    language: str
    code: str
    line: int
    skipped_because: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line} ({self.language})"


def page_blocks(page: Path) -> list[Block]:
    """Every sh and python block of a page, in order."""
    text = page.read_text()
    return [Block(page, m.group(2), m.group(3), text.count("\n", 0, m.start(2)) + 1, (m.group(1) or "").strip()) for m in _BLOCK.finditer(text)]


BLOCKS = [block for page in PAGES for block in page_blocks(page)]
RUN = [block for block in BLOCKS if not block.skipped_because]


def test_blocks_not_run_here_say_where_they_are_tested() -> None:
    assert len([block for block in RUN if block.page.name == "README.md"]) >= 4, "the README has lost its runnable examples"
    assert len(RUN) >= 12, "the docs have lost their runnable examples"
    for block in BLOCKS:
        if block.skipped_because:
            assert block.skipped_because.startswith("<!-- not run by tests/test_readme.py: "), block


@pytest.fixture(scope="module")
def readme_server() -> ServerThread:
    with running_server(http=True, model=[]) as server:  # every model of the installed folder, as `./dev serve`
        yield server  # type: ignore[misc]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def _workdir(scratch: Path, page: Path) -> Path:
    """A page's own scratch folder (pages may write the same output names), seeing the checkout's data."""
    folder = scratch / page.stem
    if not folder.exists():
        folder.mkdir()
        for shared in ("tests", "models", "samples"):
            (folder / shared).symlink_to(REPO / shared)
    return folder


def _adapt(code: str, server: ServerThread) -> str:
    http = server.http_url.removeprefix("http://")
    return code.replace("localhost:50051", server.address).replace("localhost:8080", http).replace("./dev run ", f"{BIN}/")


@pytest.mark.parametrize("block", RUN, ids=str)
def test_block_runs_as_written(block: Block, readme_server: ServerThread, scratch: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if block.language == "sh":
        for line in _adapt(block.code, readme_server).splitlines():
            command, _, comment = line.partition("  #")
            if command.strip():
                result = subprocess.run(
                    ["bash", "-c", command], cwd=_workdir(scratch, block.page), env=env, capture_output=True, text=True, timeout=120
                )
                assert result.returncode == 0, f"{block}: {line}\n{result.stderr[-2000:]}"
                # A comment that shows output ("→ TEXT") must be true of what the line printed.
                if "→ " in comment:
                    shown = comment.split("→ ", 1)[1].strip()
                    assert shown in result.stdout + result.stderr, f"{block}: {line}\nprinted:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        return
    result = subprocess.run([sys.executable, "-c", _adapt(block.code, readme_server)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{block}\n{result.stderr[-2000:]}"
    expected = [line.split("# ", 1)[1].strip() for line in block.code.splitlines() if line.lstrip().startswith("print(") and "# " in line]
    assert result.stdout.splitlines() == expected, f"{block}: what the comments say is not what it prints"
