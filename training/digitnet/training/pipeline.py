"""The offline job behind `digitnet train`: data -> cross-validate -> fit -> calibrate -> export -> verify -> write.

Usage:
    card = train_and_export("mnist5k", TrainConfig(activation="relu"), Path("models/default.onnx"))
    card.cross_validation.accuracy      # what to expect on digits the model never saw
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from sklearn.neural_network import MLPClassifier

from digitnet.service.contract.card import (
    Architecture,
    CalibrationInfo,
    CrossValidationInfo,
    DataInfo,
    EpochRecord,
    ExportCheck,
    InputContract,
    Mistake,
    ModelCard,
    SelectiveRow,
    TrainingInfo,
    check_model_name,
)
from digitnet.service.contract.pixels import scale_uint8
from digitnet.service.contract.results import confusion_matrix
from digitnet.training.calibration import ECE_BINS, cross_fitted, pooled_ece, pooled_selective, pooled_temperature
from digitnet.training.crossval import CrossValidation, FoldDone, cross_validate
from digitnet.training.data import load_dataset
from digitnet.training.export import embed_card, to_onnx_model, verify_export, write_artifact
from digitnet.training.form_graph import apply_form
from digitnet.training.train import EpochStats, TrainConfig, count_parameters, dead_units, fit

log = logging.getLogger(__name__)

_LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "scipy", "mlxtend")
#: The min_confidence thresholds the card's selective-accuracy table lists.
SELECTIVE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
#: How many cross-validation mistakes the card keeps for the report.
MISTAKES_KEPT = 12


def train_and_export(
    data_spec: str,
    config: TrainConfig,
    out: Path,
    folds: int = 5,
    repeats: int = 3,
    workers: int = 2,
    name: str | None = None,
    on_fold: Callable[[FoldDone], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> ModelCard:
    """Estimate a recipe by cross-validation, train the final model on all the digits, calibrate it with the
    cross-validated predictions, export it to ONNX, verify it against scikit-learn, write model and card.

    `name` is the model's name in its card (and the server's repository); default: `out`'s stem."""
    name = check_model_name(out.stem if name is None else name)  # before minutes of training
    dataset = load_dataset(data_spec)
    pixels, labels = scale_uint8(dataset.images), dataset.labels.astype(np.int64)
    cv = None
    if repeats:
        log.info("cross-validating on %d digits (%s): %d folds x %d repeats", len(labels), dataset.source, folds, repeats)
        cv = cross_validate(pixels, labels, config, folds=folds, repeats=repeats, workers=workers, on_fold=on_fold)
    log.info("training the final model on all %d digits", len(labels))
    fitted = fit(pixels, labels, config, on_epoch=on_epoch)
    summary, calibration = None, None
    if cv is not None:
        calibrated = cross_fitted(cv.probabilities, cv.labels)
        summary, calibration = summarise(cv, calibrated), calibrate(cv, calibrated)
        fold_temperature(fitted.classifier, calibration.temperature)
    onnx_model = to_onnx_model(fitted.classifier, config.form)
    inputs = apply_form(config.form, pixels)
    difference = verify_export(onnx_model, fitted.classifier, pixels, inputs)  # raises before anything is written
    card = ModelCard(
        name=name,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        architecture=Architecture(activation=config.activation, parameters=count_parameters(fitted.classifier)),
        input=InputContract.of(config.form),
        data=DataInfo(source=dataset.source, images=len(dataset), sha256=dataset.sha256),
        training=TrainingInfo(
            seed=config.seed,
            epochs=config.epochs,
            seconds=round(fitted.seconds, 1),
            dead_units=[int(dead.sum()) for dead in dead_units(fitted.classifier, inputs)] if config.activation == "relu" else [0, 0],
            config=config.as_dict(),
            history=[EpochRecord(epoch=h.epoch, loss=h.loss) for h in fitted.history],
        ),
        cross_validation=summary,
        calibration=calibration,
        export=ExportCheck(images=len(inputs), max_probability_difference=difference),
        libraries={"python": platform.python_version(), **{name: version(name) for name in _LIBRARIES}},
        onnx_opset=opset_of(onnx_model),
    )
    embed_card(onnx_model, card)
    return write_artifact(onnx_model, card, out)


def summarise(cv: CrossValidation, calibrated: np.ndarray) -> CrossValidationInfo:
    """The card's account of a cross-validation: accuracy, confusions, selective accuracy (of the
    cross-fitted calibrated predictions), mistakes."""
    predicted = cv.probabilities.argmax(axis=2)
    first = cv.probabilities[0]
    wrong = np.flatnonzero(predicted[0] != cv.labels)
    wrong = wrong[np.argsort(-first[wrong].max(axis=1), kind="stable")][:MISTAKES_KEPT]
    return CrossValidationInfo(
        folds=cv.folds,
        repeats=len(cv.probabilities),
        accuracy=cv.mean,
        accuracy_sd=cv.sd,
        accuracies=cv.accuracies.tolist(),
        confusion_matrix=np.sum([confusion_matrix(cv.labels, p) for p in predicted], axis=0).tolist(),
        selective=[
            SelectiveRow(threshold=r.threshold, answered=r.answered, accuracy=r.accuracy)
            for r in pooled_selective(calibrated, cv.labels, SELECTIVE_THRESHOLDS)
        ],
        mistakes=[Mistake(index=int(i), label=int(cv.labels[i]), predicted=int(predicted[0, i]), confidence=float(first[i].max())) for i in wrong],
        seconds=round(cv.seconds, 1),
    )


def calibrate(cv: CrossValidation, calibrated: np.ndarray) -> CalibrationInfo:
    """The temperature for the final model, fitted on all cross-validated predictions, and the ECE before
    and after (`calibrated`: the cross-fitted predictions, see calibration.cross_fitted)."""
    return CalibrationInfo(
        temperature=pooled_temperature(cv.probabilities, cv.labels),
        ece_before=pooled_ece(cv.probabilities, cv.labels),
        ece_after=pooled_ece(calibrated, cv.labels),
        bins=ECE_BINS,
    )


def fold_temperature(classifier: MLPClassifier, temperature: float) -> None:
    """Divide the output layer's weights and bias by the temperature: softmax(logits / T), same architecture."""
    classifier.coefs_[-1] = classifier.coefs_[-1] / temperature
    classifier.intercepts_[-1] = classifier.intercepts_[-1] / temperature


def opset_of(model: onnx.ModelProto) -> int:
    """Return the default-domain opset a model was exported with."""
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
