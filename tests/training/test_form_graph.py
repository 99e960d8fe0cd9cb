"""The input form as ONNX operators: it matches OpenCV's deskew and blur, stands slanted strokes upright,
keeps blank images blank, never mixes images, and survives any float a bare runtime may be fed."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

from digitnet.service.contract.input_form import InputForm
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training import form_graph
from digitnet.training.augment import distort
from digitnet.training.data import Dataset
from digitnet.training.form_graph import apply_form, attach_form, form_model
from digitnet.training.form_ops import MAX_SKEW
from digitnet.training.train import recipe

from . import reference_form
from .reference_form import skews

DESKEW = InputForm(deskew=True)


def _slanted_bar(slant: float, offset: float = 0.0) -> np.ndarray:
    """A 2-pixel-wide stroke from top to bottom leaning `slant` columns per row, as a [1, 784] image."""
    image = np.zeros((28, 28), np.float32)
    for row in range(4, 24):
        col = 13.5 + offset + slant * (13.5 - row)  # leaning right as it goes up
        image[row, int(round(col)) : int(round(col)) + 2] = 1.0
    return image.reshape(1, 784)


@pytest.mark.parametrize("form", [DESKEW, InputForm(deskew=True, blur=1.0), InputForm(blur=0.8)], ids=str)
def test_the_graph_matches_opencv_on_every_training_digit(form: InputForm, mnist5k: Dataset) -> None:
    # The digits and a distorted copy of each, as training forms them (the recipe's distortions).
    pixels = scale_uint8(mnist5k.images)
    digits = np.concatenate([pixels, distort(pixels, np.random.default_rng(0), recipe("relu").augment)])
    expected = reference_form.deskew(digits) if form.deskew else digits
    expected = reference_form.gaussian_blur(expected, form.blur) if form.blur else expected
    assert np.max(np.abs(apply_form(form, digits) - expected)) <= 1e-4


def test_a_slanted_stroke_becomes_upright_and_centred() -> None:
    bar = _slanted_bar(0.4, offset=3.0)
    before, _, col_before = skews(bar)
    upright = apply_form(DESKEW, bar)
    after, row, col = skews(upright)
    assert before[0] < -0.3 and abs(after[0]) < 0.05
    assert abs(row[0] - 13.5) < 0.6 and abs(col[0] - 13.5) < 0.6 and abs(col_before[0] - 13.5) > 2
    columns = [np.average(np.arange(28), weights=r) for r in upright.reshape(28, 28)[6:22] if r.sum() > 0]
    assert np.ptp(columns) < 1.5, "every row's ink sits in the same columns"


def test_an_upright_centred_digit_is_only_moved_to_the_centre() -> None:
    bar = _slanted_bar(0.0, offset=-1.0)  # upright at columns 12-13, centre of mass 12.5: one column left of centre
    shifted = apply_form(DESKEW, bar)
    assert abs(skews(shifted)[2][0] - 13.5) < 0.1
    np.testing.assert_allclose(np.roll(shifted.reshape(28, 28), -1, axis=1)[:, :27], bar.reshape(28, 28)[:, :27], atol=1e-5)


def test_blank_images_stay_blank_and_ink_is_kept(mnist5k: Dataset) -> None:
    pixels = np.concatenate([np.zeros((2, 784), np.float32), scale_uint8(mnist5k.images[:300])])
    out = apply_form(DESKEW, pixels)
    assert out.shape == pixels.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not out[:2].any()
    assert 0.0 <= out.min() and out.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(out[2:].sum(axis=1), pixels[2:].sum(axis=1), rtol=0.05)


def test_the_shear_is_bounded_for_shapes_that_are_not_slant() -> None:
    flat = np.zeros((28, 28), np.float32)
    flat[13, 4:24] = 1.0
    flat[14, 3:23] = 1.0  # a horizontal bar one row tall shifted by one: its "slant" is enormous
    assert abs(skews(flat.reshape(1, 784))[0][0]) <= MAX_SKEW
    np.testing.assert_allclose(apply_form(DESKEW, flat.reshape(1, 784)), reference_form.deskew(flat), atol=1e-5)


def test_blurring_a_batch_never_mixes_neighbouring_images() -> None:
    images = np.zeros((3, 28, 28), np.float32)
    images[0, -1, :] = 1.0  # ink on the bottom row of one image and the top row of the next
    images[1, 0, :] = 1.0
    blurred = apply_form(InputForm(blur=1.5), images.reshape(3, 784))
    for index in range(3):
        np.testing.assert_allclose(blurred[index], apply_form(InputForm(blur=1.5), images[index].reshape(1, 784))[0], atol=1e-7)
    assert not blurred[2].any()


def test_blur_keeps_a_centred_digits_ink_and_spreads_it(mnist5k: Dataset) -> None:
    pixels = scale_uint8(mnist5k.images[:20])
    blurred = apply_form(InputForm(blur=1.0), pixels)
    np.testing.assert_allclose(blurred.sum(axis=1), pixels.sum(axis=1), rtol=1e-3)  # the 4-pixel margin holds it
    assert (blurred > 0).sum() > (pixels > 0).sum() and blurred.max() < pixels.max()


def test_no_steps_is_the_identity_and_an_empty_batch_is_empty(mnist5k: Dataset) -> None:
    pixels = scale_uint8(mnist5k.images[:10])
    np.testing.assert_array_equal(apply_form(InputForm(), pixels), pixels)
    assert apply_form(InputForm(deskew=True, blur=1.0), np.empty((0, 784), np.float32)).shape == (0, 784)


def test_long_runs_are_formed_in_chunks_with_the_same_answers(mnist5k: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = scale_uint8(mnist5k.images[:50])
    whole = apply_form(DESKEW, pixels)
    monkeypatch.setattr(form_graph, "_CHUNK", 7)
    np.testing.assert_array_equal(apply_form(DESKEW, pixels), whole)


def test_any_float_a_bare_runtime_is_fed_is_answered_not_crashed() -> None:
    # Outside the contract (digitnet refuses these before the model), but Triton or KServe pass them on:
    # the per-row reads are clipped, so no index ever leaves the image, whatever the moments come out as.
    hostile = np.stack([np.full(784, np.nan), np.full(784, np.inf), np.full(784, -1.0), np.full(784, 1e30), np.linspace(-5, 5, 784)])
    out = apply_form(InputForm(deskew=True, blur=1.0), hostile.astype(np.float32))
    assert out.shape == (5, 784)
    one = np.zeros((1, 784), np.float32)
    one[0, 0] = np.float32(np.finfo(np.float32).smallest_subnormal)  # a mass far below float32's normal range
    assert np.isfinite(apply_form(DESKEW, one)).all()


def test_the_form_is_one_flat_graph_of_standard_operators() -> None:
    model = form_model(InputForm(deskew=True, blur=1.0))
    onnx.checker.check_model(model, full_check=True)
    assert not model.functions and {n.domain for n in model.graph.node} == {""}
    assert [(o.domain, o.version) for o in model.opset_import] == [("", form_graph.OPSET)]
    assert [i.name for i in model.graph.input] == ["pixels"] and [o.name for o in model.graph.output] == ["network_input"]
    assert len(model.graph.node) <= 50, "each node costs a single-image call about a microsecond"


def test_a_network_must_take_the_forms_output() -> None:
    network = form_model(InputForm())  # its input is `pixels`, not `network_input`
    with pytest.raises(ValueError, match="network's input must be 'network_input'"):
        attach_form(network, DESKEW)


def test_the_recipes_forms_are_what_the_cards_record() -> None:
    assert recipe("relu").form == DESKEW
    assert recipe("logistic").form == dataclasses.replace(DESKEW, blur=1.0)
