"""Redraw the documentation's pictures (docs/images/) with the installed model: `digitnet explain` and
`digitnet weights` as the docs show them, and the page as the browser tests last saw it (test-artifacts/).

Each is shrunk for the docs: the pictures to 900 pixels wide in 256 colours, the page's screenshots to
640 and 240 pixels wide. Run the page's browser tests first for fresh screenshots.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]  # tools/make_pictures.py
IMAGES = REPO / "docs" / "images"
SCREENSHOTS = REPO / "test-artifacts"
#: Each page screenshot the docs show, and its width there.
PAGE_WIDTHS = {"page-neuron.png": 640, "page-phone.png": 240}


def _shrunk(source: Path, width: int) -> Image.Image:
    image = Image.open(source).convert("RGB")
    return image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)


def main() -> int:
    """Redraw every picture; say which screenshots are missing."""
    digitnet = Path(sys.executable).parent / "digitnet"
    with tempfile.TemporaryDirectory() as scratch:
        for name, command in {
            "explain-4.png": ["explain", str(REPO / "tests" / "golden" / "4_scan.jpg")],
            "weights.png": ["weights"],
        }.items():
            drawn = Path(scratch) / name
            subprocess.run([str(digitnet), *command, "-o", str(drawn)], check=True)
            _shrunk(drawn, 900).quantize(256).save(IMAGES / name, optimize=True)
            print(f"drew docs/images/{name}")
    for name, width in PAGE_WIDTHS.items():
        if (SCREENSHOTS / name).exists():
            _shrunk(SCREENSHOTS / name, width).save(IMAGES / name, optimize=True)
            print(f"shrank test-artifacts/{name} into docs/images/{name}")
        else:
            print(f"no test-artifacts/{name}: run tests/service/http/test_page.py first", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
