"""The model card: what an artifact is, how it was made and how well it does, stored as JSON beside the model.

The same card (minus `model_sha256`, which cannot be known before the file is written) is also embedded
in the ONNX file's metadata under `digitnet.card`, so a model copied without its JSON still explains itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from digitnet.service.contract.constants import (
    DIGIT_BOX,
    IMAGE_SIDE,
    INPUT_NAME,
    LAYER_SIZES,
    N_PIXELS,
    OUTPUT_FORMED,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
    Activation,
)
from digitnet.service.contract.errors import InvalidInput, ModelError
from digitnet.service.contract.input_form import MAX_BLUR, InputForm

#: 2: cross-validated accuracy and calibration instead of a validation split; the input form says `deskew`.
#: 3: the input form may also `blur`.
#: 4: the input form is inside the ONNX graph, which takes MNIST-form pixels and outputs `network_input` too.
#: Older files ran their form outside the graph, so the file alone gave other answers: they are refused, as
#: re-training (minutes) gives a file that every runtime serves alike.
CARD_VERSION = 4
READABLE_CARD_VERSIONS = (4,)
#: What a model's name (its card's `name`) may be: names appear in URLs (/v2/models/NAME) and in metric
#: labels, so 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit.
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    """The network's shape."""

    layers: list[int] = Field(default_factory=lambda: list(LAYER_SIZES))
    activation: Activation
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
    graph: str = (
        f"one ONNX graph: `{INPUT_NAME}` in the layout above -> the input form below (deskew, blur) -> the network; "
        f"output `{OUTPUT_FORMED}` is what the network saw. Any ONNX runtime fed MNIST-form pixels gives digitnet's answers"
    )
    deskew: bool = False  # the graph deskews the pixels before its network (training/form_graph.py)
    # Then blurs them with a Gaussian of this sigma; beyond MAX_BLUR a 28x28 digit is a smudge, and a card
    # asking for it is refused rather than served.
    blur: float = Field(default=0.0, ge=0.0, le=MAX_BLUR)
    outputs: list[str] = Field(default_factory=lambda: [OUTPUT_LABEL, OUTPUT_PROBABILITIES, *OUTPUT_HIDDEN, OUTPUT_FORMED])

    @property
    def form(self) -> InputForm:
        """The steps the graph applies before the network."""
        return InputForm(deskew=self.deskew, blur=self.blur)

    @classmethod
    def of(cls, form: InputForm) -> InputContract:
        """The contract of a model trained on this input form."""
        return cls(deskew=form.deskew, blur=form.blur)


class DataInfo(_Strict):
    """Where the training digits came from: the final model trains on all of them."""

    source: str
    images: int
    sha256: str


class EpochRecord(_Strict):
    """One point of the training curve."""

    epoch: int
    loss: float


class TrainingInfo(_Strict):
    """How the model was fitted."""

    seed: int
    epochs: int
    seconds: float  # wall time of the final model's training, cross-validation not included
    dead_units: list[int]  # per hidden layer: ReLUs that no training digit switches on (0 for the sigmoid)
    config: dict[str, Any]
    history: list[EpochRecord]


class SelectiveRow(_Strict):
    """What a min_confidence threshold does on the cross-validated predictions (after calibration)."""

    threshold: float
    answered: float  # share of the images with a top probability >= threshold
    accuracy: float | None  # accuracy on those; None when none are answered


class Mistake(_Strict):
    """A digit the cross-validated models got wrong: its index in the training data, for the report."""

    index: int
    label: int
    predicted: int
    confidence: float


class CrossValidationInfo(_Strict):
    """How the training recipe does on digits its models never saw: repeated stratified k-fold."""

    folds: int
    repeats: int
    accuracy: float  # mean over repeats of each repeat's accuracy over all the digits
    accuracy_sd: float  # over repeats (split and seed both vary)
    accuracies: list[float]
    confusion_matrix: list[list[int]]  # summed over repeats; rows: true digit, columns: predicted digit
    selective: list[SelectiveRow]
    mistakes: list[Mistake]  # of the first repeat, most confident first
    seconds: float


class CalibrationInfo(_Strict):
    """Temperature scaling fitted on the cross-validated predictions, folded into the output layer."""

    temperature: float  # the output layer's weights and bias were divided by it
    ece_before: float  # expected calibration error of the cross-validated predictions, raw
    ece_after: float  # the same after scaling, with the temperature fitted on the other half of the digits
    bins: int


class ExportCheck(_Strict):
    """The exported ONNX graph against scikit-learn on the training digits."""

    images: int
    max_probability_difference: float


class ModelCard(_Strict):
    """Everything a reader or the server needs to know about one model artifact."""

    card_version: int = CARD_VERSION
    name: str
    created: str
    architecture: Architecture
    input: InputContract = Field(default_factory=InputContract)
    data: DataInfo
    training: TrainingInfo
    cross_validation: CrossValidationInfo | None  # None when training was asked to skip it
    calibration: CalibrationInfo | None  # needs the cross-validated predictions
    export: ExportCheck
    libraries: dict[str, str]
    onnx_opset: int
    model_sha256: str | None = None

    def estimate_line(self) -> str:
        """One line: the accuracy to expect on unseen digits and how calibrated the confidence is."""
        cv, calibration = self.cross_validation, self.calibration
        if cv is None:
            return "no cross-validated estimate: the model was trained with --cv-repeats 0 (and is not calibrated)"
        line = (
            f"cross-validated accuracy {cv.accuracy:.2%} ± {cv.accuracy_sd:.2%} ({cv.folds} folds x {cv.repeats} repeats "
            f"over {self.data.images:,} digits; every digit scored by models that never saw it)"
        )
        if calibration is not None:
            line += (
                f"; calibration: temperature {calibration.temperature:.3f}, "
                f"expected calibration error {calibration.ece_before:.2%} -> {calibration.ece_after:.2%}"
            )
        return line

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
        version = _card_version(text)
        if version is not None and version not in READABLE_CARD_VERSIONS:
            # An older card needs a new model; a newer one needs a newer digitnet (re-training here would
            # drop what the new card asks for, such as a blur in the input form).
            remedy = (
                "upgrade digitnet to serve it"
                if version > CARD_VERSION
                else "its input form runs outside the ONNX file, so the file alone gives other answers: re-train it with "
                "`digitnet train` (the committed models are already current)"
            )
            readable = ", ".join(map(str, READABLE_CARD_VERSIONS))
            raise ModelError(f"{origin}: a version {version} model card; this digitnet reads version {readable}: {remedy}")
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            # One line naming each bad field, not pydantic's multi-line report with its links.
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'card'}: {e['msg']}" for e in err.errors())
            raise ModelError(f"{origin}: not a valid digitnet model card: {problems}") from err


def _card_version(text: str) -> int | None:
    try:
        version = json.loads(text).get("card_version")
    except (ValueError, AttributeError):
        return None  # not a JSON object: pydantic names what is wrong
    return version if isinstance(version, int) else None


def check_model_name(name: str) -> str:
    """Return `name` if it may name a model (MODEL_NAME_PATTERN), else raise InvalidInput saying what may."""
    if re.fullmatch(MODEL_NAME_PATTERN, name) is None:
        raise InvalidInput(f"model name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return name


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
