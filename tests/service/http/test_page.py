"""The draw-a-digit page in a real browser (Chromium through Playwright): strokes drawn with the mouse,
an upload, an example, the network picture, the keyboard; no console errors, no failed requests."""

from __future__ import annotations

import base64
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, sync_playwright

from digitnet.service.contract.picture_style import HOLDS_DOWN, PUSHES_UP, STRONGEST

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
def problems() -> list[str]:
    """What went wrong in the page (console errors, failed requests, error responses): a test that provokes
    one on purpose takes it out."""
    return []


@pytest.fixture()
def page(server: ServerThread, problems: list[str]) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it)"
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


def _rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(hex_colour[at : at + 2], 16) for at in (1, 3, 5)))


def test_the_page_draws_connections_as_the_pictures_do(page: Page) -> None:
    # One colour meaning and one number of connections (contract/picture_style.py), served to the page.
    _draw(page, "7")
    _answered(page, "7")
    strokes = page.eval_on_selector_all("#net line", "lines => lines.map(l => getComputedStyle(l).stroke)")
    assert set(strokes) == {_rgb(PUSHES_UP), _rgb(HOLDS_DOWN)}
    ends = page.eval_on_selector_all("#net line", "lines => lines.map(l => l.getAttribute('x2'))")
    output_column = max(ends, key=float)
    assert ends.count(output_column) == 10 * STRONGEST[3]  # the strongest few into each of the 10 outputs


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


def _explain_requests(page: Page) -> list[str]:
    """Collect the URL of every explain request the page makes from now on."""
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if "/v1/explain" in request.url else None)
    return sent


def _at_rest(page: Page) -> dict[str, object]:
    """What Clear must bring back: the page as it was first shown."""
    return page.evaluate(
        """() => ({
            answer: document.getElementById('answer').textContent,
            label: document.getElementById('answer').dataset.label || '',
            status: document.getElementById('answer').dataset.status || '',
            message: document.getElementById('status').textContent,
            caption: document.getElementById('pattern-caption').textContent,
            shown: document.getElementById('pattern').dataset.shown || '',
            network: document.getElementById('net').childElementCount,
            ink: Array.from(document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data).some((v, i) => i % 4 < 3 && v > 0),
        })"""
    )


@pytest.mark.parametrize("how", ["Clear", "Escape"])
def test_an_answer_that_arrives_after_clear_is_dropped(page: Page, how: str) -> None:
    resting = _at_rest(page)
    held: list[Route] = []
    page.route("**/v1/explain*", lambda route: held.append(route))  # the server is slow: the answer is held until after Clear
    _draw(page, "7")
    for _ in range(500):
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the page asked nothing about the drawing"
    if how == "Clear":
        page.locator("#clear").click()
    else:
        page.keyboard.press("Escape")
    with page.expect_response("**/v1/explain*") as late:
        held.pop(0).continue_()
    late.value.finished()
    page.wait_for_timeout(300)  # time for the page to show the answer, if it were to
    assert _at_rest(page) == resting


@pytest.mark.parametrize("source", ["drawing", "example", "upload"])
def test_moving_the_threshold_asks_again_about_the_image_shown(page: Page, source: str) -> None:
    if source == "drawing":
        _draw(page, "7")
        _answered(page, "7")
    elif source == "example":
        page.locator(".example[data-src$='7.png']").click()
        _answered(page, "7")
    else:
        page.set_input_files("#file", str(GOLDEN / "7_scan.png"))
        _answered(page, "7")
    sent = _explain_requests(page)
    page.locator("#confidence").fill("1")  # answer only when certain
    page.wait_for_function("document.getElementById('answer').dataset.status === 'unknown'", timeout=15_000)
    assert sent and sent[-1].endswith("?min_confidence=1")
    assert page.locator("#answer").inner_text().startswith("No answer: confidence")


def test_the_same_file_can_be_uploaded_twice(page: Page) -> None:
    sent = _explain_requests(page)
    for _ in range(2):
        with page.expect_file_chooser() as chooser:
            page.locator("#file").click()
        chooser.value.set_files(str(GOLDEN / "2_scan.png"))
        _answered(page, "2")
        page.keyboard.press("Escape")
    assert len(sent) == 2
    assert page.locator("#file").evaluate("input => input.value") == ""  # else choosing the same file again is no change


def test_escape_clears_what_clear_clears(page: Page, problems: list[str], tmp_path: Path) -> None:
    resting = _at_rest(page)
    _draw(page, "1")
    _answered(page, "1")
    page.locator("circle.neuron[data-layer='1'][data-neuron='5']").hover()
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    page.set_input_files("#file", str(not_an_image))
    page.wait_for_function("document.getElementById('status').textContent !== ''", timeout=15_000)
    for how in ("Escape", "Clear"):
        assert _at_rest(page) != resting
        if how == "Clear":
            page.locator("#clear").click()
        else:
            page.keyboard.press("Escape")
        assert _at_rest(page) == resting
        _draw(page, "1")
        _answered(page, "1")
        page.locator("circle.neuron[data-layer='2'][data-neuron='3']").hover()
    # The unreadable file's answer, on purpose: its response, and the browser's console line about it.
    on_purpose = [p for p in problems if p.startswith("400 ") and "/v1/explain" in p or "status of 400 (Bad Request)" in p]
    assert len(on_purpose) == 2
    problems[:] = [p for p in problems if p not in on_purpose]


def test_a_tiny_scribble_is_no_digit_and_the_answer_says_why(page: Page) -> None:
    box = page.locator("#pad").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 140, box["y"] + 140)
    page.mouse.down()
    page.mouse.move(box["x"] + 142, box["y"] + 140)
    page.mouse.up()
    page.wait_for_function("document.getElementById('answer').dataset.status", timeout=15_000)
    assert page.locator("#answer").get_attribute("data-status") == "unknown"
    assert page.locator("#answer").inner_text() == "No answer: blank image: too little ink to be a digit"


def test_a_confidence_just_under_the_threshold_reads_as_under_it(page: Page) -> None:
    asked: list[float] = []

    def just_above(route: Route) -> None:
        # A threshold a hair above this image's confidence, the same to 3 decimals.
        url = route.request.url.split("?")[0]
        asked.append(route.fetch(url=f"{url}?min_confidence=0").json()["confidence"] + 1e-5)
        route.continue_(url=f"{url}?min_confidence={asked[-1]!r}")

    _draw(page, "4")
    _answered(page, "4")
    page.route("**/v1/explain*", just_above)
    page.locator("#confidence").fill("1")
    page.wait_for_function("document.getElementById('answer').dataset.status === 'unknown'", timeout=15_000)
    assert f"{asked[-1]:.3f}" == f"{asked[-1] - 1e-5:.3f}"
    said = re.fullmatch(r"No answer: confidence ([0-9.]+) is below min_confidence ([0-9.]+) \(best guess 4\)", page.locator("#answer").inner_text())
    assert said is not None and float(said[1]) < float(said[2]), said[0] if said else page.locator("#answer").inner_text()
