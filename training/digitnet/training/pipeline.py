"""The offline jobs behind `digitnet train` and `digitnet evaluate`: data -> fit -> export -> verify -> write.

Usage:
    card = train_and_export("mnist5k", TrainConfig(activation="relu"), Path("models/default.onnx"))
    report = evaluate(Path("models/default.onnx"), "idx:/data/mnist")
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

from digitnet.service.contract.card import (
    Architecture,
    DataInfo,
    EpochRecord,
    ModelCard,
    TrainingInfo,
    ValidationInfo,
)
from digitnet.service.contract.results import confusion_matrix
from digitnet.training.data import load_dataset
from digitnet.training.export import embed_card, to_onnx_model, verify_export, write_artifact
from digitnet.training.train import EpochStats, TrainConfig, count_parameters, split_dataset, train

log = logging.getLogger(__name__)

_LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "mlxtend")


def train_and_export(
    data_spec: str,
    config: TrainConfig,
    out: Path,
    validation_fraction: float = 0.2,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> ModelCard:
    """Train on a dataset, export to ONNX, verify against scikit-learn, write model and card atomically."""
    dataset = load_dataset(data_spec)
    split = split_dataset(dataset, seed=config.seed, validation_fraction=validation_fraction)
    log.info("training on %d digits, validating on %d (%s)", len(split.train_y), len(split.val_y), dataset.source)
    result = train(split, config, on_epoch=on_epoch)
    onnx_model = to_onnx_model(result.classifier)
    difference = verify_export(onnx_model, result.classifier, split.val_x)  # raises before anything is written
    predicted = result.classifier.predict(split.val_x)
    card = ModelCard(
        name=out.stem,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        architecture=Architecture(activation=config.activation, parameters=count_parameters(result.classifier)),
        data=DataInfo(
            source=dataset.source,
            images=len(dataset),
            sha256=dataset.sha256,
            train_images=len(split.train_y),
            validation_images=len(split.val_y),
            split_seed=split.seed,
            validation_fraction=split.validation_fraction,
        ),
        training=TrainingInfo(
            seed=config.seed,
            epochs_run=len(result.history),
            best_epoch=result.best_epoch,
            seconds=round(result.seconds, 1),
            config=config.as_dict(),
            history=[EpochRecord(epoch=h.epoch, loss=h.loss, validation_accuracy=h.validation_accuracy) for h in result.history],
        ),
        validation=ValidationInfo(
            accuracy=float(np.mean(predicted == split.val_y)),
            images=len(split.val_y),
            confusion_matrix=confusion_matrix(split.val_y, predicted).tolist(),
            max_probability_difference=difference,
        ),
        libraries={"python": platform.python_version(), **{name: version(name) for name in _LIBRARIES}},
        onnx_opset=opset_of(onnx_model),
    )
    embed_card(onnx_model, card)
    return write_artifact(onnx_model, card, out)


def opset_of(model: onnx.ModelProto) -> int:
    """Return the default-domain opset a model was exported with."""
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
