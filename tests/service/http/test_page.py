"""The draw-a-digit page in a real browser (Chromium through Playwright): strokes drawn with the mouse,
an upload, an example, the network picture, the keyboard; no console errors, no failed requests."""

from __future__ import annotations

import base64
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from ...conftest import GOLDEN, REPO
from ..conftest import ServerThread, running_server

#: Screenshots the tests leave for people to look at (not committed).
ARTIFACTS = REPO / "test-artifacts"
#: Strokes in the 28x28 frame of an MNIST digit, as a person draws them.
STROKES = {
    "7": [[(7, 6), (21, 6), (12, 23)]],
    "1": [[(14, 4), (14, 24)]],
    "0": [[(14 + 6 * math.sin(2 * math.pi * t / 24), 14 - 9 * math.cos(2 * math.pi * t / 24)) for t in range(25)]],
    "4": [[(17, 4), (8, 17), (22, 17)], [(17, 8), (17, 24)]],
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with running_server(http=True) as running:
        yield running


@pytest.fixture()
def page(server: ServerThread) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it)"
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}") if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
        page.on("response", lambda response: problems.append(f"{response.status} {response.url}") if response.status >= 400 else None)
        page.goto(f"{server.http_url}/")
        page.wait_for_function("document.querySelector('#pad') !== null")
        yield page
        browser.close()
    assert problems == []


def _draw(page: Page, digit: str) -> None:
    box = page.locator("#pad").bounding_box()
    assert box is not None
    for stroke in STROKES[digit]:
        (x, y), *rest = stroke
        page.mouse.move(box["x"] + x * box["width"] / 28, box["y"] + y * box["height"] / 28)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"] / 28, box["y"] + y * box["height"] / 28, steps=5)
        page.mouse.up()


def _answered(page: Page, label: str) -> None:
    page.wait_for_function(f"document.getElementById('answer').dataset.label === {label!r}", timeout=15_000)


def _hidden_shades(page: Page) -> list[str]:
    return page.eval_on_selector_all("circle.neuron[data-layer='1']", "nodes => nodes.map(n => n.getAttribute('fill'))")


@pytest.mark.parametrize("digit", list(STROKES))
def test_a_digit_drawn_with_the_mouse_is_read(page: Page, digit: str) -> None:
    _draw(page, digit)
    _answered(page, digit)
    assert page.locator("circle.neuron.winner").count() == 1


def test_the_network_lights_up_differently_for_two_digits(page: Page) -> None:
    _draw(page, "7")
    _answered(page, "7")
    seven = _hidden_shades(page)
    page.keyboard.press("Escape")  # clears
    assert page.locator("#answer").get_attribute("data-label") == ""
    _draw(page, "0")
    _answered(page, "0")
    zero = _hidden_shades(page)
    assert len(seven) == len(zero) == 16 and seven != zero
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-drawn-0.png"))


def test_an_uploaded_image_and_an_example_are_read(page: Page) -> None:
    page.set_input_files("#file", str(GOLDEN / "2_scan.png"))
    _answered(page, "2")
    page.locator(".example[data-src$='4.png']").click()
    _answered(page, "4")


def test_an_image_dropped_on_the_pad_is_read(page: Page) -> None:
    encoded = base64.b64encode((GOLDEN / "9_scan.png").read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(encoded) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "9.png", { type: "image/png" }));
            return transfer;
        }""",
        encoded,
    )
    page.dispatch_event("#pad", "drop", {"dataTransfer": transfer})
    _answered(page, "9")


def test_a_hidden_neuron_shows_its_weights_on_hover_and_on_focus(page: Page) -> None:
    _draw(page, "1")
    _answered(page, "1")
    page.locator("circle.neuron[data-layer='2'][data-neuron='3']").hover()
    assert page.locator("#pattern").get_attribute("data-shown") == "2:3"
    assert "4 x 4" in page.locator("#pattern-caption").inner_text()
    page.locator("circle.neuron[data-layer='1'][data-neuron='5']").focus()
    assert page.locator("#pattern").get_attribute("data-shown") == "1:5"
    assert "28 x 28" in page.locator("#pattern-caption").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-neuron.png"))


def test_the_unknown_answer_is_shown_honestly(page: Page) -> None:
    page.locator("#confidence").fill("1")  # answer only when certain: a scribble is not
    _draw(page, "4")
    page.wait_for_function("document.getElementById('answer').dataset.status === 'unknown'", timeout=15_000)
    assert page.locator("#answer").inner_text().startswith("No answer: confidence")


def test_the_page_fits_a_phone_screen(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _draw(page, "7")
    _answered(page, "7")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)


def test_every_asset_comes_from_the_server(page: Page, server: ServerThread) -> None:
    sources = page.eval_on_selector_all("[src], [href]", "nodes => nodes.map(n => n.getAttribute('src') || n.getAttribute('href'))")
    outside = [s for s in sources if s.startswith(("http:", "https:", "//")) and not s.startswith(server.http_url)]
    assert outside == []
    assert Path(REPO / "service" / "digitnet" / "service" / "http" / "page" / "app.js").stat().st_size < 50_000
