"""The README's code blocks, run as written against a real server, so that they cannot drift from the code.

Every ```sh and ```python block runs, unless an HTML comment right above it says why it is not run here
(the block then names where it is tested). `localhost:50051` and `localhost:8080` become the test server's
gRPC and HTTP addresses, and
`./dev run X` the environment's X; shell lines run in a scratch folder that sees the checkout's tests/ and
holds the scans/ and labelled/ folders the examples score. A `print(...)  # text` line in a Python block
must print that text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import GOLDEN
from .service.conftest import ServerThread, running_server

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_BLOCK = re.compile(r"(<!--[^\n]*-->\n)?```(sh|python)\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    language: str
    code: str
    line: int
    skipped_because: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def readme_blocks() -> list[Block]:
    """Every sh and python block, in order."""
    text = (REPO / "README.md").read_text()
    return [Block(m.group(2), m.group(3), text.count("\n", 0, m.start(2)) + 1, (m.group(1) or "").strip()) for m in _BLOCK.finditer(text)]


RUN = [block for block in readme_blocks() if not block.skipped_because]


def test_blocks_not_run_here_say_where_they_are_tested() -> None:
    skipped = [block for block in readme_blocks() if block.skipped_because]
    assert len(RUN) >= 5, "the README has lost its runnable examples"
    for block in skipped:
        assert block.skipped_because.startswith("<!-- not run by tests/test_readme.py: "), block


@pytest.fixture(scope="module")
def readme_server() -> ServerThread:
    with running_server(http=True) as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "tests").symlink_to(REPO / "tests")
    (folder / "models").symlink_to(REPO / "models")
    golden = GOLDEN
    (folder / "scans").mkdir()
    for label in range(10):
        shutil.copy(golden / f"{label}_scan.jpg", folder / "scans" / f"{label}.jpg")
        (folder / "labelled" / str(label)).mkdir(parents=True)
        shutil.copy(golden / f"{label}_scan.png", folder / "labelled" / str(label) / "x.png")
    return folder


def _adapt(code: str, server: ServerThread) -> str:
    http = server.http_url.removeprefix("http://")
    return code.replace("localhost:50051", server.address).replace("localhost:8080", http).replace("./dev run ", f"{BIN}/")


@pytest.mark.parametrize("block", RUN, ids=str)
def test_readme_block_runs_as_written(block: Block, readme_server: ServerThread, scratch: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if block.language == "sh":
        for line in _adapt(block.code, readme_server).splitlines():
            command = line.split("  #")[0].strip()
            if command:
                result = subprocess.run(["bash", "-c", command], cwd=scratch, env=env, capture_output=True, text=True, timeout=120)
                assert result.returncode == 0, f"{block}: {line}\n{result.stderr[-2000:]}"
        return
    result = subprocess.run([sys.executable, "-c", _adapt(block.code, readme_server)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{block}\n{result.stderr[-2000:]}"
    expected = [line.split("# ", 1)[1].strip() for line in block.code.splitlines() if line.lstrip().startswith("print(") and "# " in line]
    assert result.stdout.splitlines() == expected, f"{block}: what the comments say is not what it prints"
