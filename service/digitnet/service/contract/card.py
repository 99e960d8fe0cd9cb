"""The model card: what an artifact is, how it was made and how well it does, stored as JSON beside the model.

The same card (minus `model_sha256`, which cannot be known before the file is written) is also embedded
in the ONNX file's metadata under `digitnet.card`, so a model copied without its JSON still explains itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from digitnet.service.contract.constants import (
    DIGIT_BOX,
    IMAGE_SIDE,
    INPUT_NAME,
    LAYER_SIZES,
    N_PIXELS,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
)
from digitnet.service.contract.errors import ModelError

CARD_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    """The network's shape."""

    layers: list[int] = Field(default_factory=lambda: list(LAYER_SIZES))
    activation: Literal["relu", "logistic"]
    parameters: int


class InputContract(_Strict):
    """What the model expects as input: MNIST-form float pixels."""

    name: str = INPUT_NAME
    dtype: str = "float32"
    shape: list[int] = Field(default_factory=lambda: [-1, N_PIXELS])
    value_range: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    layout: str = (
        f"row-major {IMAGE_SIDE}x{IMAGE_SIDE}, white ink (1.0) on black (0.0); the digit fitted into "
        f"{DIGIT_BOX}x{DIGIT_BOX} keeping its aspect ratio and centred by centre of mass (the MNIST convention)"
    )
    outputs: list[str] = Field(default_factory=lambda: [OUTPUT_LABEL, OUTPUT_PROBABILITIES, *OUTPUT_HIDDEN])


class DataInfo(_Strict):
    """Where the training digits came from and how they were split."""

    source: str
    images: int
    sha256: str
    train_images: int
    validation_images: int
    split_seed: int
    validation_fraction: float


class EpochRecord(_Strict):
    """One point of the training curve."""

    epoch: int
    loss: float
    validation_accuracy: float


class TrainingInfo(_Strict):
    """How the model was fitted."""

    seed: int
    epochs_run: int
    best_epoch: int
    seconds: float
    config: dict[str, Any]
    history: list[EpochRecord]


class ValidationInfo(_Strict):
    """How the exported model does on the validation split (the epoch was chosen on it too)."""

    accuracy: float
    images: int
    confusion_matrix: list[list[int]]  # rows: true digit, columns: predicted digit
    max_probability_difference: float  # ONNX vs scikit-learn on the validation split


class ModelCard(_Strict):
    """Everything a reader or the server needs to know about one model artifact."""

    card_version: int = CARD_VERSION
    name: str
    created: str
    architecture: Architecture
    input: InputContract = Field(default_factory=InputContract)
    data: DataInfo
    training: TrainingInfo
    validation: ValidationInfo
    libraries: dict[str, str]
    onnx_opset: int
    model_sha256: str | None = None

    def to_json(self, include_file_hash: bool = True) -> str:
        """Serialise, optionally without the model file's hash (for embedding in the file itself)."""
        exclude = None if include_file_hash else {"model_sha256"}
        return self.model_dump_json(indent=2, exclude=exclude) + "\n"

    def with_file_hash(self, model_bytes: bytes) -> ModelCard:
        """Return a copy that records the sha256 of the serialised model."""
        return self.model_copy(update={"model_sha256": sha256_hex(model_bytes)})

    @classmethod
    def from_json(cls, text: str, origin: str) -> ModelCard:
        """Parse a card, naming its origin in the error if it is malformed."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            raise ModelError(f"{origin}: not a valid digitnet model card: {err}") from err


def card_path_for(model_path: Path) -> Path:
    """Return where the JSON card of a model lives: models/x.onnx -> models/x.json."""
    return model_path.with_suffix(".json")


def read_card(model_path: Path) -> ModelCard:
    """Read the JSON card beside a model file."""
    path = card_path_for(model_path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model card that must sit beside {model_path.name}: {err.strerror}") from err
    return ModelCard.from_json(text, str(path))


def sha256_hex(data: bytes) -> str:
    """Return the hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()
