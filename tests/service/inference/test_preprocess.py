"""Preprocessing into MNIST form: golden images in four forms, blank input, and every kind of bad input."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from digitnet.service.contract.errors import InvalidInput, LimitExceeded
from digitnet.service.contract.limits import Limits
from digitnet.service.contract.model import Model
from digitnet.service.inference import preprocess
from digitnet.service.inference.classifier import Classifier
from digitnet.service.inference.preprocess import from_float, from_uint8, to_mnist
from digitnet.training.data import Dataset

from ...conftest import CORPUS, DEFAULT_MODEL, GOLDEN
from ..helpers import png_header_only

FORMS = ("mnist.png", "scan.png", "scan.jpg", "rgba.png")


def _encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(Model.load(DEFAULT_MODEL, threads=1))


@pytest.mark.parametrize("label", range(10))
def test_golden_digit_gets_its_label_in_every_form(classifier: Classifier, label: int) -> None:
    images = [(GOLDEN / f"{label}_{form}").read_bytes() for form in FORMS]
    assert [p.label for p in classifier.classify(images)] == [label] * len(FORMS)


def test_mnist_form_survives_preprocessing(mnist5k_pngs: list[tuple[bytes, int]], classifier: Classifier) -> None:
    # Real MNIST digits sent as PNG files get exactly the answers their raw pixels get.
    predictions = classifier.classify([png for png, _ in mnist5k_pngs])
    raw = np.stack([np.asarray(Image.open(io.BytesIO(png))).reshape(-1) for png, _ in mnist5k_pngs])
    _, packed = classifier.classify_pixels(raw.astype(np.float32) / 255)
    assert [p.label for p in predictions] == packed.labels.tolist()
    assert np.mean([p.label == label for p, (_, label) in zip(predictions, mnist5k_pngs)]) > 0.9


def test_already_mnist_form_passes_through_unchanged() -> None:
    digit = np.asarray(Image.open(GOLDEN / "6_mnist.png"))
    np.testing.assert_array_equal(to_mnist(_encode(digit)), digit.reshape(-1) / np.float32(255))


def test_off_centre_28x28_is_recentred() -> None:
    digit = np.asarray(Image.open(GOLDEN / "6_mnist.png"))
    corner = np.zeros_like(digit)
    corner[:20, :20] = digit[4:24, 4:24]  # pushed into the top-left corner
    pixels = to_mnist(_encode(corner))
    assert pixels is not None
    image = pixels.reshape(28, 28)
    assert abs(np.average(np.arange(28), weights=image.sum(axis=1)) - 13.5) <= 1.0
    assert abs(np.average(np.arange(28), weights=image.sum(axis=0)) - 13.5) <= 1.0


def test_output_is_mnist_form() -> None:
    pixels = to_mnist((GOLDEN / "3_scan.jpg").read_bytes())
    assert pixels is not None and pixels.shape == (784,) and pixels.dtype == np.float32
    assert pixels.min() == 0.0 and pixels.max() == pytest.approx(1.0, abs=0.02)
    image = pixels.reshape(28, 28)
    rows, cols = np.nonzero(image)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 22  # fits the 20x20 box (+ edge)
    assert abs(np.average(np.arange(28), weights=image.sum(axis=1)) - 13.5) <= 1.0
    assert abs(np.average(np.arange(28), weights=image.sum(axis=0)) - 13.5) <= 1.0


@pytest.mark.parametrize("colour", [0, 255, 128])
def test_uniform_image_is_blank(colour: int) -> None:
    assert to_mnist(_encode(np.full((40, 30), colour, dtype=np.uint8))) is None


def test_a_speck_is_blank_not_a_digit_to_guess() -> None:
    paper = np.full((120, 160), 235, dtype=np.uint8)
    paper[60:63, 80:83] = 20  # a 3x3 speck of dust or a pen touching the paper: blown up, it would look like a 0
    assert to_mnist(_encode(paper)) is None
    one_pixel = np.zeros((28, 28), dtype=np.uint8)
    one_pixel[14, 14] = 255
    assert to_mnist(_encode(one_pixel)) is None
    assert from_uint8(one_pixel.tobytes()) is None and from_float(one_pixel.reshape(-1) / np.float32(255)) is None


def test_a_dab_of_a_thick_pen_is_a_speck_whatever_the_image_size() -> None:
    # The page's pen, 20 pixels wide on a 280-pixel canvas: one touch is 6 pixels across at the working size.
    canvas = np.zeros((280, 280), dtype=np.uint8)
    for length in (0, 2, 8):
        cv2.line(canvas, (140, 140), (140 + length, 140), 255, 20, cv2.LINE_AA)
        assert to_mnist(_encode(canvas)) is None, f"a stroke {length} pixels long"
    cv2.line(canvas, (140, 40), (140, 240), 255, 20, cv2.LINE_AA)
    assert to_mnist(_encode(canvas)) is not None, "a 1 drawn with the same pen"
    filled = np.zeros((40, 40), dtype=np.uint8)
    cv2.circle(filled, (20, 20), 15, 255, -1, cv2.LINE_AA)
    assert to_mnist(_encode(filled)) is not None, "as blobby as a dab, but filling its image: a digit with a very thick pen, perhaps"


def test_no_real_digit_is_a_speck_however_thick_its_strokes(mnist5k: Dataset) -> None:
    # Small in a frame 5 times its size (under SPECK_SHARE), so that only its strokes tell it from a dab: the
    # blobbiest, a 6 with its loop filled in, is still a digit.
    framed = np.pad(mnist5k.images.reshape(-1, 28, 28), ((0, 0), (56, 56), (56, 56)))
    assert [i for i, digit in enumerate(framed) if preprocess.normalise(digit) is None] == []


def test_the_faintest_real_digit_is_still_a_digit(mnist5k: Dataset) -> None:
    faintest = mnist5k.images[np.argmin(mnist5k.images.sum(axis=1, dtype=np.int64))]
    assert from_uint8(faintest.tobytes()) is not None
    assert to_mnist(_encode(faintest.reshape(28, 28))) is not None
    small = np.asarray(Image.fromarray(255 - faintest.reshape(28, 28)).resize((12, 12), Image.Resampling.LANCZOS))
    assert to_mnist(_encode(small)) is not None, "a digit written 12 pixels tall is small, not a speck"


def test_white_ink_on_transparent_is_not_lost() -> None:
    digit = np.asarray(Image.open(GOLDEN / "7_mnist.png"))
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = digit
    pixels = to_mnist(_encode(rgba, mode="RGBA"))
    assert pixels is not None and pixels.sum() > 20


def test_gif_and_other_formats_decode() -> None:
    digit = np.asarray(Image.open(GOLDEN / "4_mnist.png"))
    for fmt in ("GIF", "BMP", "TIFF", "WEBP"):
        assert to_mnist(_encode(digit, fmt)) is not None, fmt


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image: 0 bytes"),
        (b"definitely not an image", "not a readable image: expected one of PNG, JPEG"),
        ((GOLDEN / "5_scan.png").read_bytes()[:300], "cannot decode"),
    ],
    ids=["empty", "garbage", "truncated"],
)
def test_bad_bytes_are_invalid_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        to_mnist(data)


def test_decompression_bomb_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="6000x6000 = 36000000 pixels, over the limit of 25000000"):
        to_mnist(png_header_only(6000, 6000))
    with pytest.raises(LimitExceeded, match="100000x100000 = 10000000000 pixels, over the limit"):  # the fast path's header
        to_mnist(png_header_only(100_000, 100_000))
    with pytest.raises(LimitExceeded, match="100000x100000 = 10000000000 pixels"):  # 16-bit: not plain, its size still read
        to_mnist(png_header_only(100_000, 100_000, depth=16))
    with pytest.raises(LimitExceeded, match="over the limit of 25000000 pixels"):  # a BMP: Pillow's own guard first
        to_mnist((CORPUS / "bmp_header_100000x100000.bmp").read_bytes())


def test_encoded_size_limit() -> None:
    with pytest.raises(LimitExceeded, match="over the limit of 100"):
        to_mnist((GOLDEN / "1_scan.png").read_bytes(), Limits(max_encoded_bytes=100))


def test_raw_uint8() -> None:
    pixels = from_uint8(np.asarray(Image.open(GOLDEN / "2_mnist.png")).tobytes())
    assert pixels is not None and pixels.max() == 1.0
    assert from_uint8(bytes(784)) is None
    with pytest.raises(InvalidInput, match="exactly 784 bytes .* got 783"):
        from_uint8(bytes(783))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.full(700, 0.5), "exactly 784 values .* got 700"),
        (np.full(784, np.nan), "NaN or infinite"),
        (np.full(784, np.inf), "NaN or infinite"),
        (np.full(784, 255.0), r"must be in \[0, 1\], got \[255, 255\]"),
    ],
    ids=["short", "nan", "inf", "0-255 scale"],
)
def test_raw_float_errors(values: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        from_float(values)


MODES = sorted((GOLDEN / "modes").iterdir())


@pytest.mark.parametrize("path", MODES, ids=[p.name for p in MODES])
def test_one_digit_in_every_mode_reads_the_same(classifier: Classifier, path: Path) -> None:
    # The same scanned 7 (tests/golden/make_modes.py): 16-bit, 32-bit and float files are mapped by their value
    # range, not clipped at 255; LAB by its lightness; EXIF orientation honoured; the first frame read.
    reference = to_mnist((GOLDEN / "7_scan.png").read_bytes())
    pixels = to_mnist(path.read_bytes())
    assert pixels is not None and reference is not None
    assert np.abs(pixels - reference).mean() < 0.02
    [prediction] = classifier.classify([path.read_bytes()])
    assert prediction.label == 7


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (1, 2_000_000, "1x2000000: its longest side is over the limit of 16384 pixels"),
        (1, 16_000, "1x16000: its aspect ratio is over the limit of 20:1"),
        (2_000, 99, "2000x99: its aspect ratio is over the limit of 20:1"),
    ],
)
def test_costly_sizes_are_refused_before_decoding(width: int, height: int, message: str) -> None:
    # A 4.9 KB 1x2,000,000 PNG used to cost 29 s of CPU: every step is now linear in the area, and strips
    # too thin to shrink before the work are refused from the header.
    with pytest.raises(LimitExceeded, match=message):
        to_mnist(png_header_only(width, height))


def test_thin_images_cost_linear_time_in_their_area() -> None:
    # Within the limits, a strip is read (the stroke dilation used to cost area x width).
    strip = np.zeros((100, 2000), dtype=np.uint8)
    strip[40:60, 100:1900] = 255
    pixels = to_mnist(_encode(strip), Limits(max_aspect=20))
    assert pixels is not None and pixels.reshape(28, 28).sum(axis=0).nonzero()[0].size >= 18  # a wide bar


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tiff_tiles_2G.tif", "OverflowError"),
        ("tiff_F_out_of_range_nan_inf.tif", "NaN or infinite"),
        ("png_ztxt_8MiB.png", "cannot decode the image"),
        ("bmp_rle8_4999x4999_eob.bmp", "cannot decode the image"),
    ],
)
def test_files_pillow_chokes_on_are_invalid_input(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        to_mnist((CORPUS / name).read_bytes())


def test_every_seed_of_the_corpus_is_answered_or_refused_clearly() -> None:
    corpus = sorted((CORPUS).glob("*.*"))
    assert len(corpus) >= 100
    for path in corpus:
        if path.suffix == ".py":
            continue
        try:
            to_mnist(path.read_bytes())
        except (InvalidInput, LimitExceeded):
            pass  # anything else fails the test with the file's name in the traceback


# The OpenCV fast path: the same pixels as Pillow's path, and the same answers as before it existed.


def _palette_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).quantize(200).save(buffer, "PNG")  # over 16 colours: stored 8 bits deep
    return buffer.getvalue()


def _variants() -> list[tuple[str, bytes]]:
    digit = np.asarray(Image.open(GOLDEN / "4_mnist.png"))
    big = np.asarray(Image.fromarray(255 - digit).resize((333, 250), Image.Resampling.BILINEAR))
    rgb = np.stack([big, np.roll(big, 3, axis=1), big // 2 + 100], axis=-1)
    return [
        ("grey png", _encode(digit)),
        ("large grey png (shrunk)", _encode(big)),
        ("rgb png", _encode(rgb)),
        ("palette png", _palette_png(rgb)),
        ("grey jpeg", _encode(big, "JPEG")),
        ("large jpeg (decoded at 1/4)", _encode(np.asarray(Image.fromarray(big).resize((1000, 800))), "JPEG")),
    ]


@pytest.mark.parametrize(("name", "data"), _variants(), ids=[name for name, _ in _variants()])
def test_fast_decoder_gives_pillows_pixels(name: str, data: bytes) -> None:
    fast = preprocess.decode(data)
    pillow = preprocess._decode_pillow(data, Limits())
    assert preprocess.sniff(data) is not None, "the fast path should take this file"
    np.testing.assert_array_equal(fast, pillow)


def test_colour_jpeg_differs_from_pillow_by_at_most_one_grey_level() -> None:
    # libjpeg builds differ in their colour conversion's rounding (the decoders' own greyscale differs more:
    # cvtColor is used for that reason); one grey level does not move a prediction (test below).
    digit = np.asarray(Image.open(GOLDEN / "8_mnist.png"))
    colour = np.stack([255 - digit, 250 - digit // 2, 240 - digit // 3], axis=-1)
    data = _encode(colour, "JPEG")
    difference = preprocess.decode(data).astype(int) - preprocess._decode_pillow(data, Limits()).astype(int)
    assert np.abs(difference).max() <= 1


def _pillow_only(data: bytes) -> np.ndarray:
    grey = preprocess._decode_pillow(data, Limits())
    form = preprocess.mnist_form_many([grey])[0]
    pixels = form if form is not None else preprocess.normalise(grey)
    assert pixels is not None
    return pixels


def test_golden_answers_are_those_of_the_pillow_only_path(classifier: Classifier) -> None:
    # The fast decoders against Pillow, the path every file took before them (ed27156): the same labels, and
    # probabilities within 1e-4, for every golden image in every form.
    names = sorted(p.name for p in GOLDEN.iterdir() if p.suffix in (".png", ".jpg"))
    predictions = classifier.classify([(GOLDEN / name).read_bytes() for name in names])
    reference = classifier.classify([_pillow_only((GOLDEN / name).read_bytes()) for name in names])
    for name, prediction, expected in zip(names, predictions, reference):
        assert prediction.label == expected.label, name
        np.testing.assert_allclose(prediction.probabilities, expected.probabilities, atol=1e-4, err_msg=name)


def test_many_images_in_mnist_form_are_recognised_at_once_as_one_by_one() -> None:
    digit = np.asarray(Image.open(GOLDEN / "6_mnist.png"))
    corner = np.zeros_like(digit)
    corner[:20, :20] = digit[4:24, 4:24]
    greys = [digit, 255 - digit, corner, np.zeros_like(digit), digit[:27], np.full_like(digit, 7), digit]
    forms = preprocess.mnist_form_many(greys)
    assert [form is not None for form in forms] == [True, True, False, False, False, False, True]
    for grey, form in zip(greys, forms):
        if form is not None:
            np.testing.assert_array_equal(form, preprocess.normalise(grey))


def test_damaged_files_get_pillows_answer_and_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    # Native decoders tolerate damage Pillow refuses, and print about it on stderr: a damaged file must get
    # the answer it got before the fast path (Pillow's), and the server's stderr must stay its own.
    digit = np.asarray(Image.open(GOLDEN / "5_mnist.png"))
    big = np.asarray(Image.fromarray(255 - digit).resize((140, 140)))
    damaged = []
    for data in (_encode(big, "JPEG"), _encode(big)):
        for offset in (0.3, 0.5, 0.7):
            flipped = bytearray(data)
            at = int(len(data) * offset)
            flipped[at : at + 4] = bytes(b ^ 0x5A for b in flipped[at : at + 4])
            damaged.append(bytes(flipped))
    for data in damaged:
        try:
            pillow: object = preprocess._decode_pillow(data, Limits())
        except Exception as err:  # noqa: BLE001 - the kind of refusal is what is compared
            pillow = type(err)
        try:
            ours: object = preprocess.decode(data)
        except Exception as err:  # noqa: BLE001
            ours = type(err)
        if isinstance(pillow, np.ndarray):
            np.testing.assert_array_equal(ours, pillow)
        else:
            assert ours == pillow
    assert capfd.readouterr().err == ""
