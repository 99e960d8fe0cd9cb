"""The Open Inference Protocol without a transport: the checks and answers gRPC and REST share."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from digitnet.service.contract.errors import InvalidInput, LimitExceeded
from digitnet.service.contract.model import Model
from digitnet.service.inference.classifier import Classifier
from digitnet.service.protocol.tensors import (
    check_input,
    check_outputs,
    from_raw,
    from_values,
    min_confidence_of,
    output_tensors,
    raw_bytes,
    shape_of,
)

from ...conftest import DEFAULT_MODEL


def _no_limit(count: int) -> None:
    del count


def _at_most_two(count: int) -> None:
    if count > 2:
        raise LimitExceeded(f"{count} images")


@pytest.mark.parametrize(
    ("names", "datatype", "shape", "message"),
    [
        ([], "FP32", [1, 784], "expected one input tensor named 'pixels', got 0"),
        (["image"], "FP32", [1, 784], "expected one input tensor named 'pixels', got 1: ['image']"),
        (["pixels"], "FP64", [1, 784], "must be FP32 or UINT8, got 'FP64'"),
        (["pixels"], "FP32", [1, 783], "must have shape [N, 784] or [N, 28, 28], got [1, 783]"),
        (["pixels"], "FP32", [0, 784], "must have shape"),
    ],
)
def test_a_wrong_input_tensor_is_named_in_the_refusal(names: list[str], datatype: str, shape: list[int], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_input(names, datatype, shape, _no_limit)
    assert message in str(caught.value)


def test_the_image_count_is_checked_against_the_limit() -> None:
    assert check_input(["pixels"], "UINT8", [2, 28, 28], _at_most_two) == 2
    with pytest.raises(LimitExceeded):
        check_input(["pixels"], "UINT8", [3, 784], _at_most_two)


def test_raw_and_listed_pixels_become_the_same_floats() -> None:
    image = np.arange(784, dtype=np.int64) % 256
    from_bytes = from_raw("UINT8", 1, image.astype(np.uint8).tobytes())
    from_list = from_values("UINT8", 1, image, "data")
    as_floats = from_raw("FP32", 1, (image / 255).astype("<f4").tobytes())
    assert from_bytes.dtype == from_list.dtype == np.float32 and from_bytes.shape == (1, 784)
    np.testing.assert_allclose(from_bytes, from_list)
    np.testing.assert_allclose(from_bytes, as_floats, atol=1e-7)


def test_bad_pixels_are_refused_in_one_line() -> None:
    with pytest.raises(InvalidInput, match="is 783 bytes; 1 UINT8 image needs 784"):
        from_raw("UINT8", 1, bytes(783))
    with pytest.raises(InvalidInput, match="has 10 values in data; 2 FP32 images need 1568"):
        from_values("FP32", 2, np.zeros(10, dtype=np.float32), "data")
    with pytest.raises(InvalidInput, match="UINT8 values must be 0-255"):
        from_values("UINT8", 1, np.full(784, 256), "data")
    with pytest.raises(InvalidInput, match=r"values must be in \[0, 1\]"):
        from_values("FP32", 1, np.full(784, 2.0, dtype=np.float32), "data")
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        from_raw("FP32", 1, np.full(784, np.nan, dtype="<f4").tobytes())


def test_outputs_default_to_probabilities_and_label_and_unknown_ones_are_refused() -> None:
    assert check_outputs([]) == ["probabilities", "label"]
    assert check_outputs(["hidden2", "label"]) == ["hidden2", "label"]
    with pytest.raises(InvalidInput, match="unknown outputs \\['logits'\\]"):
        check_outputs(["logits"])


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0.5, 0.5), (1, 1.0)])
def test_min_confidence_is_a_number_in_0_1_or_absent(value: object, expected: float | None) -> None:
    assert min_confidence_of(value) == expected


@pytest.mark.parametrize("value", ["0.5", True, 1.5, -0.1, [0.5]])
def test_min_confidence_refuses_what_is_not(value: object) -> None:
    with pytest.raises(InvalidInput):
        min_confidence_of(value)


def test_the_answers_are_the_classifier_s_with_blank_images_unknown() -> None:
    classifier = Classifier(Model.load(DEFAULT_MODEL))
    pixels = np.zeros((2, 784), dtype=np.float32)
    pixels[0, 300:320] = 1.0  # a stroke: some digit; the second image is blank
    output, answers = classifier.classify_pixels(pixels)
    tensors = {
        name: (datatype, values)
        for name, datatype, values in output_tensors(output, answers, check_outputs(["label", "outcome", "reason", "hidden1"]))
    }
    assert tensors["label"][1].tolist()[1] == -1 and tensors["outcome"][1] == [b"digit", b"unknown"]
    assert tensors["reason"][1] == [b"", b"blank image: too little ink to be a digit"]
    assert shape_of(*tensors["hidden1"]) == [2, 16] and shape_of(*tensors["outcome"]) == [2]
    assert raw_bytes(*tensors["outcome"]) == struct.pack("<I", 5) + b"digit" + struct.pack("<I", 7) + b"unknown"
    assert raw_bytes(*tensors["label"]) == np.array(tensors["label"][1], dtype="<i8").tobytes()
