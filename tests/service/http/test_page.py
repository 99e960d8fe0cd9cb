"""The draw-a-digit page in a real browser (Chromium through Playwright): strokes drawn with the mouse,
an upload, an example, the network picture, the keyboard, the networks compared; no console errors, no failed
requests. The server serves both committed networks, as `digitnet serve` does by default."""

from __future__ import annotations

import base64
import math
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Request, Route, sync_playwright

from digitnet.service.contract.picture_style import HOLDS_DOWN, PUSHES_UP, STRONGEST

from ...conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL, RELU, REPO, SIGMOID
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

#: The networks the server serves, the default first (as the page lists them).
NETWORKS = (RELU, SIGMOID)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with running_server(http=True, model=[DEFAULT_MODEL, LOGISTIC_MODEL]) as running:
        yield running


@pytest.fixture()
def problems() -> list[str]:
    """What went wrong in the page (console errors, failed requests, error responses): a test that provokes
    one on purpose takes it out."""
    return []


@contextmanager
def _browser(url: str, problems: list[str]) -> Iterator[Page]:
    """Chromium showing the page at `url`, once it knows the networks (or says why not); what goes wrong in
    it is added to `problems`."""
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}") if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
        page.on("response", lambda response: problems.append(f"{response.status} {response.url}") if response.status >= 400 else None)
        page.goto(url)
        _loaded(page)
        yield page
        browser.close()


def _loaded(page: Page) -> None:
    page.wait_for_function("document.getElementById('about').textContent !== '' || document.getElementById('status').textContent !== ''")


@pytest.fixture()
def page(server: ServerThread, problems: list[str]) -> Iterator[Page]:
    with _browser(f"{server.http_url}/", problems) as page:
        yield page
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


def _channels(hex_colour: str) -> list[int]:
    return [int(hex_colour[at : at + 2], 16) for at in (1, 3, 5)]


def _rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*_channels(hex_colour))


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
    assert "28 x 28" in page.locator("#pattern-caption").inner_text()
    page.locator("circle.neuron[data-layer='1'][data-neuron='5']").focus()
    assert page.locator("#pattern").get_attribute("data-shown") == "1:5"
    assert "28 x 28" in page.locator("#pattern-caption").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-neuron.png"), full_page=True)  # the networks' rows, the picture and the neuron's panel


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


def _model_of(url: str) -> str:
    """The network a request to the page's server names (?model=)."""
    return parse_qs(urlsplit(url).query).get("model", [""])[0]


class _Explains:
    """The explain requests the page makes from now on: their URLs, each network's last answer (by the model
    that answered), and a wait until none is on its way."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.sent: list[str] = []
        self.answers: dict[str, dict[str, object]] = {}
        self._open: set[Request] = set()
        page.on("request", self._asked)
        page.on("requestfinished", self._answered)
        page.on("requestfailed", lambda request: self._open.discard(request))

    def _asked(self, request: Request) -> None:
        if "/v1/explain" in request.url:
            self.sent.append(request.url)
            self._open.add(request)

    def _answered(self, request: Request) -> None:
        response = request.response() if request in self._open else None
        if response is not None and response.ok:
            body = response.json()
            self.answers[body["model"]] = body
        self._open.discard(request)

    def settle(self) -> None:
        """Wait until every request has its answer, and long enough that the page sends nothing more (it waits
        150 ms after a stroke) and has shown the answers."""
        quiet = 0
        for _ in range(300):
            self.page.wait_for_timeout(50)
            quiet = 0 if self._open else quiet + 1
            if quiet == 8:
                return
        raise AssertionError(f"explain requests still open: {[r.url for r in self._open]}")


def _explain_requests(page: Page) -> list[str]:
    """Collect the URL of every explain request the page makes from now on."""
    return _Explains(page).sent


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
    page.route("**/v1/explain*", lambda route: held.append(route))  # the server is slow: the answers are held until after Clear
    _draw(page, "7")
    for _ in range(500):
        if len(held) == len(NETWORKS):
            break
        page.wait_for_timeout(20)
    assert sorted(_model_of(route.request.url) for route in held) == sorted(NETWORKS), "the page did not ask every network about the drawing"
    # W3C trace context: one trace for the drawing, a parent of its own for each network's request.
    parents = [re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", route.request.headers.get("traceparent", "")) for route in held]
    assert all(parents), [route.request.headers.get("traceparent") for route in held]
    assert len({p.group(1) for p in parents if p}) == 1 and len({p.group(2) for p in parents if p}) == len(held)
    if how == "Clear":
        page.locator("#clear").click()
    else:
        page.keyboard.press("Escape")
    for route in held:
        with page.expect_response(lambda response, url=route.request.url: response.url == url) as late:
            route.continue_()
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
    assert {_model_of(url) for url in sent if url.endswith("min_confidence=1")} == set(NETWORKS)  # every network, asked again
    assert page.locator("#answer").inner_text().startswith("No answer: confidence")


def test_the_same_file_can_be_uploaded_twice(page: Page) -> None:
    sent = _explain_requests(page)
    for _ in range(2):
        with page.expect_file_chooser() as chooser:
            page.locator("#file").click()
        chooser.value.set_files(str(GOLDEN / "2_scan.png"))
        _answered(page, "2")
        page.keyboard.press("Escape")
    assert len(sent) == 2 * len(NETWORKS)
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
    # The unreadable file's answer from each network, on purpose: its response, and the browser's console line about it.
    on_purpose = [p for p in problems if p.startswith("400 ") and "/v1/explain" in p or "status of 400 (Bad Request)" in p]
    assert len(on_purpose) == 2 * len(NETWORKS)
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
        # A threshold a hair above this image's confidence (by the network shown), the same to 3 decimals.
        url, model = route.request.url.split("?")[0], _model_of(route.request.url)
        confidence = route.fetch(url=f"{url}?model={model}&min_confidence=0").json()["confidence"] + 1e-5
        if model == RELU:
            asked.append(confidence)
        route.continue_(url=f"{url}?model={model}&min_confidence={confidence!r}")

    _draw(page, "4")
    _answered(page, "4")
    page.route("**/v1/explain*", just_above)
    page.locator("#confidence").fill("1")
    page.wait_for_function("document.getElementById('answer').dataset.status === 'unknown'", timeout=15_000)
    assert f"{asked[-1]:.3f}" == f"{asked[-1] - 1e-5:.3f}"
    said = re.fullmatch(r"No answer: confidence ([0-9.]+) is below min_confidence ([0-9.]+) \(best guess 4\)", page.locator("#answer").inner_text())
    assert said is not None and float(said[1]) < float(said[2]), said[0] if said else page.locator("#answer").inner_text()


# What a learner needs from the picture: the network at rest, a legend, the numbers behind each neuron,
# the chosen neuron marked, second-layer patterns in pixels, one numbering, a phone-sized picture, its name.

#: Neurons the picture draws: two hidden layers of 16 and ten outputs.
NEURONS = 16 + 16 + 10


def _squish(activation: str, z: float) -> float:
    return max(z, 0.0) if activation == "relu" else 1.0 / (1.0 + math.exp(-z))


def _served_network(page: Page, model: str = "") -> dict[str, object]:
    return page.evaluate("(model) => fetch(model ? `v1/network?model=${model}` : 'v1/network').then((r) => r.json())", model)


def test_the_network_is_drawn_at_rest_before_any_drawing_and_after_clear(page: Page) -> None:
    for _ in range(2):
        assert page.locator("circle.neuron").count() == NEURONS
        fills = page.eval_on_selector_all("circle.neuron", "nodes => nodes.map(n => n.getAttribute('fill'))")
        assert set(fills) == {"rgb(0,0,0)"}  # unlit
        assert page.locator("#net line").count() == 0 and page.locator("#net text.activation").count() == 0
        _draw(page, "7")
        _answered(page, "7")
        page.keyboard.press("Escape")


def test_a_legend_says_what_the_line_colours_mean(page: Page) -> None:
    legend = page.locator(".legend")
    assert "pushes the neuron up" in legend.inner_text() and "holds it down" in legend.inner_text()
    swatches = page.eval_on_selector_all(".legend .swatch", "nodes => nodes.map(n => getComputedStyle(n).backgroundColor)")
    assert swatches == [_rgb(PUSHES_UP), _rgb(HOLDS_DOWN)]


def test_a_chosen_neuron_shows_its_activation_bias_weighted_sum_and_squish(page: Page) -> None:
    served: list[dict[str, object]] = []

    def keep(route: Route) -> None:
        response = route.fetch()
        served.append(response.json())
        route.fulfill(response=response)

    page.route("**/v1/explain*", keep)
    activation = str(_served_network(page)["activation"])
    page.set_input_files("#file", str(GOLDEN / "2_scan.png"))  # one image, one answer each (a drawing asks while drawn)
    _answered(page, "2")
    [shown] = [answer for answer in served if answer["model"] == RELU]  # the network shown first: the default
    for layer, neuron in ((1, 5), (2, 3), (2, 11)):
        value = float(shown[f"hidden{layer}"][neuron])  # type: ignore[index]
        # Beside the neuron, small: its activation.
        beside = page.locator(f"#net text.activation[data-layer='{layer}'][data-neuron='{neuron}']")
        assert beside.text_content() == f"{value:.2f}"
        page.locator(f"circle.neuron[data-layer='{layer}'][data-neuron='{neuron}']").hover()
        maths = page.locator("#neuron-maths")
        assert maths.get_attribute("data-shown") == f"{layer}:{neuron}"
        weighted_sum = float(maths.get_attribute("data-sum") or "nan")
        assert abs(_squish(activation, weighted_sum) - value) < 1e-3, (layer, neuron, weighted_sum, value)
        text = maths.inner_text()
        squish_name = "ReLU" if activation == "relu" else "sigmoid"
        assert "bias" in text and "weighted sum" in text and f"{squish_name}(" in text and f"{weighted_sum:.3f}" in text
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-neuron-maths.png"))


def test_the_chosen_neuron_and_only_it_is_highlighted(page: Page) -> None:
    _draw(page, "1")
    _answered(page, "1")
    chosen = "nodes => nodes.map(n => n.dataset.layer + ':' + n.dataset.neuron)"
    page.locator("circle.neuron[data-layer='2'][data-neuron='3']").hover()
    assert page.eval_on_selector_all("#net .neuron.chosen", chosen) == ["2:3"]
    page.locator("circle.neuron[data-layer='1'][data-neuron='5']").focus()
    assert page.eval_on_selector_all("#net .neuron.chosen", chosen) == ["1:5"]
    outline = "n => getComputedStyle(n).stroke + ' ' + getComputedStyle(n).strokeWidth"
    other = page.locator("circle.neuron[data-layer='1'][data-neuron='6']")
    assert page.locator("circle.neuron.chosen").evaluate(outline) != other.evaluate(outline)  # it shows


def test_neurons_are_numbered_from_0_as_the_pictures_are(page: Page) -> None:
    _draw(page, "1")
    _answered(page, "1")
    for layer in (1, 2):
        neuron = page.locator(f"circle.neuron[data-layer='{layer}'][data-neuron='0']")
        assert f"hidden layer {layer}, neuron 0:" in (neuron.get_attribute("aria-label") or "")
        assert "neuron 0:" in (neuron.locator("title").text_content() or "")
        neuron.focus()
        assert "neuron 0:" in page.locator("#pattern-caption").inner_text()
    labels = page.eval_on_selector_all("circle.neuron[data-layer]", "nodes => nodes.map(n => n.getAttribute('aria-label'))")
    assert not any("neuron 16" in label for label in labels)


def test_a_second_layer_neuron_shows_the_pixel_pattern_it_responds_to(page: Page) -> None:
    page.locator("circle.neuron[data-layer='2'][data-neuron='3']").hover()  # at rest: the weights are all it needs
    page.wait_for_function("document.getElementById('pattern').dataset.shown === '2:3'")
    caption = page.locator("#pattern-caption").inner_text()
    assert "28 x 28" in caption and "4 x 4" not in caption
    # The picture is W1 x W2's column, as `digitnet weights` draws it: its brightest pixel is where the product is largest.
    network = _served_network(page)
    w1, w2 = network["weights"][0], network["weights"][1]  # type: ignore[index]
    product = [sum(w1[p][j] * w2[j][3] for j in range(16)) for p in range(784)]
    strongest = max(range(784), key=lambda p: abs(product[p]))
    pixel = page.evaluate(
        """(p) => {
            const c = document.getElementById('pattern');
            const at = c.getContext('2d').getImageData(((p % 28) + 0.5) * c.width / 28, (Math.floor(p / 28) + 0.5) * c.height / 28, 1, 1).data;
            return Array.from(at.slice(0, 3));
        }""",
        strongest,
    )
    assert pixel == _channels(PUSHES_UP if product[strongest] > 0 else HOLDS_DOWN)


def test_on_a_phone_the_network_is_big_enough_to_tap(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _draw(page, "7")
    _answered(page, "7")
    sizes = "nodes => nodes.map((n) => [n.getBoundingClientRect().width, n.getBoundingClientRect().height])"
    boxes = page.eval_on_selector_all("circle.neuron", sizes)
    assert len(boxes) == NEURONS
    small = [box for box in boxes if min(box) < 24]
    assert small == [], f"{len(small)} neurons are under 24 px to tap, e.g. {small[0]}"
    switches = page.eval_on_selector_all(".model-row", sizes)  # each row is its radio button's label: all of it taps
    assert len(switches) == len(NETWORKS) and min(min(box) for box in switches) >= 24, switches
    width = page.locator("#net").bounding_box()
    assert width is not None and width["width"] >= 390 - 2 * 16 - 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-phone-network.png"), full_page=True)


def test_the_page_says_which_network_it_shows(page: Page) -> None:
    network = _served_network(page)
    name = "ReLU network" if network["activation"] == "relu" else "sigmoid network"
    page.wait_for_function("document.getElementById('about').textContent !== ''")
    about = page.locator("#about").inner_text()
    assert name in about and str(network["sha256"])[:12] in about and str(network["sha256"])[:13] not in about


def test_a_logistic_network_is_called_a_sigmoid_network(page: Page) -> None:
    def logistic(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "activation": "logistic"})

    page.route("**/v1/network*", logistic)
    page.reload()
    page.wait_for_function("document.getElementById('about').textContent !== ''")
    assert "sigmoid network" in page.locator("#about").inner_text()


# The networks compared: every network reads each drawing; a switch chooses the one drawn, at once.


def _rows(page: Page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#model-rows .model-row",
        """rows => rows.map((r) => ({ model: r.dataset.model, status: r.dataset.status, label: r.dataset.label,
                                      says: r.querySelector('.model-says').textContent, kind: r.querySelector('.model-kind').textContent }))""",
    )


def _pattern_pixels(page: Page) -> list[list[int]]:
    """The 28 x 28 pixels of the chosen neuron's picture, each [r, g, b]."""
    return page.evaluate(
        """() => {
            const c = document.getElementById('pattern');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return Array.from({ length: 784 }, (_, p) => {
                const at = 4 * (Math.floor((Math.floor(p / 28) + 0.5) * c.height / 28) * c.width + Math.floor((p % 28 + 0.5) * c.width / 28));
                return Array.from(data.slice(at, at + 3));
            });
        }"""
    )


def _shows_weights(pixels: list[list[int]], weights: list[float]) -> bool:
    """Whether the picture is these weights, as the page draws them: black to full colour with each weight's size."""
    largest = max(abs(w) for w in weights)
    up, down = _channels(PUSHES_UP), _channels(HOLDS_DOWN)
    drawn = [[c * abs(w) / largest for c in (up if w > 0 else down)] for w in weights]
    return all(abs(got - want) <= 1 for pixel, colour in zip(pixels, drawn) for got, want in zip(pixel, colour))


def _first_layer_weights(network: dict[str, object], neuron: int) -> list[float]:
    return [row[neuron] for row in network["weights"][0]]  # type: ignore[index]


def test_a_drawn_digit_gets_an_answer_from_each_network(page: Page) -> None:
    explains = _Explains(page)
    _draw(page, "7")
    _answered(page, "7")
    explains.settle()
    rows = _rows(page)
    assert [row["model"] for row in rows] == list(NETWORKS)  # the default first
    assert [row["kind"] for row in rows] == ["ReLU", "sigmoid (logistic)"]
    for row in rows:
        assert row["status"] == "digit" and re.fullmatch(r"says \d \(\d+% sure\)", row["says"]), row
        answer = explains.answers[row["model"]]
        assert row["label"] == str(answer["label"]) and f"({100 * float(answer['confidence']):.0f}% sure)" in row["says"]  # type: ignore[arg-type]
    assert {_model_of(url) for url in explains.sent} == set(NETWORKS)
    assert page.locator("#answer").inner_text().startswith(f"The {RELU} network says 7")
    assert page.locator("#models").is_visible()


def test_the_switch_draws_the_other_network_from_its_last_answer(page: Page) -> None:
    relu, sigmoid = _served_network(page, RELU), _served_network(page, SIGMOID)
    explains = _Explains(page)
    _draw(page, "1")
    _answered(page, "1")
    explains.settle()
    answers, asked = explains.answers, len(explains.sent)
    page.locator("circle.neuron[data-layer='1'][data-neuron='5']").hover()
    assert _shows_weights(_pattern_pixels(page), _first_layer_weights(relu, 5))
    page.locator(f".model-row[data-model='{SIGMOID}'] input").check()
    # The header names the other network; the picture is its answer, at once and without asking again.
    about = page.locator("#about").inner_text()
    assert about.startswith(f"{SIGMOID}: sigmoid network") and str(sigmoid["sha256"])[:12] in about and str(relu["sha256"])[:12] not in about
    assert page.locator(".model-row.pictured").get_attribute("data-model") == SIGMOID
    beside = page.eval_on_selector_all("#net text.activation[data-layer='1']", "texts => texts.map((t) => t.textContent)")
    assert beside == [f"{value:.2f}" for value in answers[SIGMOID]["hidden1"]]  # type: ignore[attr-defined]
    assert beside != [f"{value:.2f}" for value in answers[RELU]["hidden1"]]  # type: ignore[attr-defined]
    assert page.locator("#answer").get_attribute("data-label") == str(answers[SIGMOID]["label"])
    # The chosen neuron stays chosen, with the other network's weights and arithmetic.
    assert page.locator("#pattern").get_attribute("data-shown") == "1:5"
    assert _shows_weights(_pattern_pixels(page), _first_layer_weights(sigmoid, 5))
    assert not _shows_weights(_pattern_pixels(page), _first_layer_weights(relu, 5))
    page.locator("circle.neuron[data-layer='1'][data-neuron='2']").hover()
    assert _shows_weights(_pattern_pixels(page), _first_layer_weights(sigmoid, 2))
    maths = page.locator("#neuron-maths").inner_text()
    assert f"bias b = {sigmoid['biases'][0][2]:.3f}" in maths and "sigmoid(z) = 1 / (1 + e^-z)" in maths  # type: ignore[index]
    assert len(explains.sent) == asked  # no new request
    assert page.evaluate("location.search") == f"?model={SIGMOID}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-switched.png"))
    # The switch from the keyboard: arrow keys move between the networks.
    page.locator(f".model-row[data-model='{SIGMOID}'] input").focus()
    page.keyboard.press("ArrowUp")
    assert page.locator("#about").inner_text().startswith(f"{RELU}: ReLU network")
    assert _shows_weights(_pattern_pixels(page), _first_layer_weights(relu, 2))
    assert len(explains.sent) == asked


def test_a_line_says_how_the_networks_differ(page: Page) -> None:
    line = page.locator("#differences").inner_text()
    for name, words, formula in ((RELU, "ReLU", "max(0, z)"), (SIGMOID, "sigmoid (logistic)", "1 / (1 + e^-z)")):
        accuracy = _served_network(page, name)["accuracy"]
        assert isinstance(accuracy, float)
        assert f"{name}: {words}, {formula}, {100 * accuracy:.1f}% cross-validated" in line, line
    assert "the squish" in line


def test_the_url_chooses_the_network_drawn_first(page: Page, server: ServerThread) -> None:
    page.goto(f"{server.http_url}/?model={SIGMOID}")
    _loaded(page)
    assert page.locator("#about").inner_text().startswith(f"{SIGMOID}: sigmoid network")
    assert page.locator(f".model-row[data-model='{SIGMOID}'] input").is_checked()
    _draw(page, "7")
    _answered(page, "7")
    assert page.locator("#answer").inner_text().startswith(f"The {SIGMOID} network says")


def test_a_network_unloaded_meanwhile_says_so_in_its_row_and_the_others_answer(problems: list[str]) -> None:
    with running_server(http=True, model=[DEFAULT_MODEL, LOGISTIC_MODEL]) as server, _browser(f"{server.http_url}/", problems) as page:
        unloaded = page.evaluate(f"fetch('v2/repository/models/{SIGMOID}/unload', {{ method: 'POST' }}).then((r) => r.status)")
        assert unloaded == 200
        explains = _Explains(page)
        _draw(page, "7")
        _answered(page, "7")
        explains.settle()
        relu, sigmoid = _rows(page)
        assert relu["status"] == "digit" and relu["label"] == "7"
        assert sigmoid["status"] == "unavailable" and sigmoid["says"].startswith(f"no answer: model '{SIGMOID}' is not loaded"), sigmoid
        assert page.locator("#status").inner_text() == ""  # the network shown answered
        page.locator(f".model-row[data-model='{SIGMOID}'] input").check()  # its weights came before it was unloaded
        assert "is not loaded" in page.locator("#status").inner_text()
        assert page.locator("#net text.activation").count() == 0  # nothing to show: at rest
        # The unloaded network's answers, on purpose: each response, and the browser's console line about it.
        on_purpose = [p for p in problems if p.startswith("404 ") and f"model={SIGMOID}" in p or "status of 404 (Not Found)" in p]
        assert on_purpose and len(on_purpose) % 2 == 0
        problems[:] = [p for p in problems if p not in on_purpose]
    assert problems == []


def test_with_one_network_the_page_has_no_switch(problems: list[str]) -> None:
    with running_server(http=True) as server, _browser(f"{server.http_url}/", problems) as page:
        sent = _explain_requests(page)
        assert page.locator("#models").is_hidden()
        assert page.locator("#about").inner_text().startswith(f"{RELU}: ReLU network")
        page.set_input_files("#file", str(GOLDEN / "2_scan.png"))
        _answered(page, "2")
        assert page.locator("#answer").inner_text().startswith("The network says 2")
        assert [_model_of(url) for url in sent] == [RELU]
    assert problems == []
