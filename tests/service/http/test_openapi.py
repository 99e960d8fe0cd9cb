"""Every HTTP route against /openapi.json with schemathesis, the standard tool, run as its users run it (its
command line, bounded): requests generated from the document, valid and not, and each answer checked for a
server error, or a status, content type or body the document does not list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..conftest import running_server

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_every_answer_is_one_the_document_lists(tmp_path: Path) -> None:
    with running_server(http=True) as server:
        done = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{server.http_url}/openapi.json",
                "--checks",
                "all",
                # Not "a request the document allows is accepted": the document cannot say which bytes are a
                # readable image or a well-formed tensor, and refusing the others with 400 is right.
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--generation-deterministic",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
