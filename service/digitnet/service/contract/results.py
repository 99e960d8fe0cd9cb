"""What a classification answers, as plain data: the outcome words, Prediction, Explanation, PackedPredictions.

numpy only, so that the client, the batch rows and the transports share these types without loading the
model runtime or the image decoders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from digitnet.service.contract.constants import N_CLASSES
from digitnet.service.contract.errors import DigitnetError, InvalidInput

#: An input image: encoded bytes (PNG, JPEG, ...), or MNIST-form pixels as uint8 or float32 [784].
ImageInput = bytes | np.ndarray


#: The label of an answer with no digit wherever labels are numbers (arrays, the wire); a Prediction says None.
NO_LABEL = -1


class Outcome(Enum):
    """What a prediction says."""

    DIGIT = "digit"
    UNKNOWN = "unknown"
    ERROR = "error"


@dataclass(frozen=True)
class Prediction:
    """The answer for one image."""

    outcome: Outcome
    label: int | None = None
    confidence: float = 0.0
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    reason: str = ""
    error: DigitnetError | None = None

    @classmethod
    def failed(cls, error: DigitnetError) -> Prediction:
        """The ERROR answer for an input that could not be classified."""
        return cls(Outcome.ERROR, reason=str(error), error=error)

    def record(self) -> dict[str, object]:
        """This answer's JSON form (see `record`)."""
        if self.outcome is Outcome.ERROR:
            return record(Outcome.ERROR, None, None, (), self.reason, "")
        confidence = float(self.confidence) if self.probabilities.size else None
        return record(self.outcome, self.label, confidence, self.probabilities.tolist(), "", self.reason)


def record(
    status: Outcome, label: int | None, confidence: float | None, probabilities: Sequence[float], error: str, reason: str
) -> dict[str, object]:
    """The JSON form of one answer, as `digitnet predict`, `score --format jsonl` and POST /v1/classify write it:
    status (the outcome word), label, confidence, probabilities (6 significant digits: float32's), error, reason."""
    return {
        "status": status.value,
        "label": label,
        "confidence": None if confidence is None else _round(confidence),
        "probabilities": [_round(p) for p in probabilities],
        "error": error,
        "reason": reason,
    }


def _round(value: float) -> float:
    # float32 probabilities carry about 7 significant digits: print 6, as the CSV does.
    return float(f"{value:.6g}")


@dataclass(frozen=True)
class Explanation:
    """A prediction plus what the network saw and how its hidden neurons responded."""

    prediction: Prediction
    input: np.ndarray  # float32 [784]: the preprocessed image
    hidden1: np.ndarray  # float32 [16]
    hidden2: np.ndarray  # float32 [16]


@dataclass(frozen=True)
class PackedPredictions:
    """Answers for N MNIST-form images as parallel arrays (the fast batch paths: packed uint8, the OIP)."""

    labels: np.ndarray  # int32 [N]: the digit, or NO_LABEL for UNKNOWN (blank, or under min_confidence)
    confidences: np.ndarray  # float32 [N]: top probability, 0 for blank images
    probabilities: np.ndarray  # float32 [N, 10]: all 0 for blank images
    min_confidence: float = 0.0

    def outcomes(self) -> list[Outcome]:
        """DIGIT or UNKNOWN for each image."""
        return [Outcome.UNKNOWN if label == NO_LABEL else Outcome.DIGIT for label in self.labels.tolist()]

    def predictions(self) -> list[Prediction]:
        """The same answers as one Prediction per image."""
        labels, confidences = self.labels.tolist(), self.confidences.tolist()
        reasons = self.reasons() if NO_LABEL in labels else [""] * len(labels)  # few calls answer UNKNOWN
        return [
            Prediction(Outcome.DIGIT, label, confidence, row) if label != NO_LABEL else Prediction(Outcome.UNKNOWN, None, confidence, row, reason)
            for label, confidence, row, reason in zip(labels, confidences, self.probabilities, reasons)
        ]

    def reasons(self) -> list[str]:
        """Why each UNKNOWN image has no digit ("" for digits), in the words of Prediction.reason."""
        best = self.probabilities.argmax(axis=1).tolist()
        return [
            "" if label != NO_LABEL else BLANK_REASON if confidence == 0 else low_confidence_reason(confidence, self.min_confidence, guess)
            for label, confidence, guess in zip(self.labels.tolist(), self.confidences.tolist(), best)
        ]


BLANK_REASON = "blank image: too little ink to be a digit"


def answer_in_place(items: Sequence[ImageInput | DigitnetError], answer: Callable[[list[ImageInput]], list[Prediction]]) -> list[Prediction]:
    """Answer the items that are not errors in one call; each error (met reading or decoding an input)
    becomes its ERROR prediction, in its place."""
    good = [item for item in items if not isinstance(item, DigitnetError)]
    answers = iter(answer(good) if good else [])
    return [Prediction.failed(item) if isinstance(item, DigitnetError) else next(answers) for item in items]


def check_min_confidence(value: float) -> float:
    """The one rule for an abstain threshold, wherever it comes from (a request, a flag, a setting): a number in [0, 1]."""
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise InvalidInput(f"min_confidence must be a number in [0, 1], got {value:g}")
    return value


def confusion_matrix(truth: np.ndarray, answers: np.ndarray, unknown_column: bool = False) -> np.ndarray:
    """Count (true digit, answer) pairs: rows are true digits, columns answers; with `unknown_column` an
    eleventh column counts the images answered UNKNOWN (answer -1), which otherwise must not occur."""
    matrix = np.zeros((N_CLASSES, N_CLASSES + unknown_column), dtype=np.int64)
    columns = np.where(answers < 0, N_CLASSES, answers) if unknown_column else answers
    np.add.at(matrix, (truth.astype(np.intp), columns.astype(np.intp)), 1)
    return matrix


def low_confidence_reason(confidence: float, min_confidence: float, best_guess: int) -> str:
    """Why an image under min_confidence gets no digit, with as many decimals (3 or more) as make the two
    numbers differ as printed: 0.4996 under 0.5 must not read "0.500 is below 0.500"."""
    digits = next((n for n in range(3, 17) if float(f"{confidence:.{n}f}") < float(f"{min_confidence:.{n}f}")), 17)
    return f"confidence {confidence:.{digits}f} is below min_confidence {min_confidence:.{digits}f} (best guess {best_guess})"
