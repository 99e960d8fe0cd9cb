"""The words of an answer: why an image gets no digit."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet.service.contract.results import low_confidence_reason


@pytest.mark.parametrize(
    ("confidence", "min_confidence", "reason"),
    [
        (0.433, 0.5, "confidence 0.433 is below min_confidence 0.500 (best guess 6)"),
        (0.4996, 0.5, "confidence 0.4996 is below min_confidence 0.5000 (best guess 6)"),  # not "0.500 is below 0.500"
        (float(np.nextafter(np.float32(0.5), np.float32(0))), 0.5, "confidence 0.49999997 is below min_confidence 0.50000000 (best guess 6)"),
        (0.9995, 1.0, "confidence 0.9995 is below min_confidence 1.0000 (best guess 6)"),
    ],
)
def test_a_low_confidence_reads_as_below_the_threshold(confidence: float, min_confidence: float, reason: str) -> None:
    assert low_confidence_reason(confidence, min_confidence, 6) == reason
