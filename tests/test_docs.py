"""The documentation tells the truth about the code: generated parts current, every module and model file on
the architecture page, every link resolving, and the sample folder read as labelled."""

from __future__ import annotations

import re

from digitnet.service.contract.model import Model
from digitnet.service.inference.classifier import Classifier

from .conftest import DEFAULT_MODEL, REPO, load_tool

docs = load_tool("docs")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_generated_parts_are_current() -> None:
    stale = [str(page.relative_to(REPO)) for page, text in docs.generate().items() if page.read_text() != text]
    assert stale == [], "the settings or the modules changed: run ./dev docs and commit docs/"


def test_every_generated_region_has_content() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    assert "| `--max-batch-size` | `DIGITNET_MAX_BATCH_SIZE` | 64 |" in text
    assert "| `DIGITNET_RETRY_SECONDS` | 15 |" in text


def test_the_architecture_page_lists_every_module_and_model_file() -> None:
    page = (REPO / "docs" / "architecture.md").read_text()
    for package, root in docs.PACKAGES.items():
        for module in root.rglob("*.py"):
            if "_generated" in module.parts:
                continue
            dotted = ".".join([package, *module.parent.relative_to(root).parts])
            section = page.split(f"**`{dotted}`**", 1)
            assert len(section) == 2, f"no section for {dotted}"
            assert f"- `{module.name}`:" in section[1].split("**`", 1)[0], f"{module.relative_to(REPO)} is not on the architecture page"
    for artifact in (REPO / "models").iterdir():
        assert f"`models/{artifact.name}`" in page, f"models/{artifact.name} is not on the architecture page"


def test_every_relative_link_and_picture_resolves() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)|src=\"([^\"]+)\"", page.read_text()):
            path = next(part for part in target if part)
            if not path.startswith(("http://", "https://")):
                assert (page.parent / path).exists(), f"{page.relative_to(REPO)} links to {path}, which does not exist"


def test_the_readme_stays_short() -> None:
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 200, f"the README has {lines} lines: move reference material to docs/"


def test_every_sample_is_read_as_the_digit_its_folder_names() -> None:
    classifier = Classifier(Model.load(DEFAULT_MODEL, threads=1))
    samples = sorted((REPO / "samples").rglob("*.*"))
    assert len(samples) == 20
    predictions = classifier.classify([path.read_bytes() for path in samples])
    assert [p.label for p in predictions] == [int(path.parent.name) for path in samples]
