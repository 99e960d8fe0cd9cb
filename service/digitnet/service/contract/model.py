"""The artifact contract: load and verify an ONNX model and its card, pick the execution provider, run it.

Usage:
    model = Model.load(Path("models/default.onnx"), provider="auto")
    out = model.run(pixels)          # pixels: float32 [N, 784] in [0, 1], MNIST form
    out.labels, out.probabilities, out.hidden[0], out.hidden[1], out.inputs   # inputs: what the network saw

The file is the whole model: its graph puts the pixels in the input form its card names (deskew, blur) in
front of the network, so one onnxruntime call answers, here as in Triton, KServe or a bare session.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from digitnet.service.contract.card import ModelCard, read_card, sha256_hex
from digitnet.service.contract.constants import (
    CARD_METADATA_KEY,
    INPUT_NAME,
    N_CLASSES,
    N_PARAMETERS,
    N_PIXELS,
    OUTPUT_FORMED,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
    PROVIDERS,
    Provider,
    available_cpus,
)
from digitnet.service.contract.errors import ConfigurationError, ModelError

log = logging.getLogger(__name__)

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_OUTPUTS = [OUTPUT_PROBABILITIES, OUTPUT_LABEL, *OUTPUT_HIDDEN, OUTPUT_FORMED]


@dataclass(frozen=True)
class ModelOutput:
    """One forward pass over N images."""

    probabilities: np.ndarray  # float32 [N, 10]
    labels: np.ndarray  # int64 [N]
    hidden: tuple[np.ndarray, np.ndarray]  # float32 [N, 16] each: the two hidden layers' activations
    inputs: np.ndarray  # float32 [N, 784]: the pixels the network ran on, after the graph's input form


def choose_providers(choice: Provider) -> list[str]:
    """Map the --provider choice to onnxruntime providers, failing clearly when CUDA is asked for but absent."""
    if choice not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {choice!r}: expected one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if choice == "cpu" or (choice == "auto" and _CUDA not in available):
        return [_CPU]
    if _CUDA not in available:
        raise ConfigurationError(
            f"--provider cuda: this onnxruntime build has no CUDA execution provider (it has {', '.join(available)}); "
            "install onnxruntime-gpu with CUDA 12 and cuDNN 9, or use --provider auto or cpu"
        )
    return [_CUDA, _CPU]


class Model:
    """A verified digitnet ONNX model in an onnxruntime session; `run` is thread-safe."""

    def __init__(self, data: bytes, card: ModelCard | None, provider: Provider = "cpu", threads: int | None = None) -> None:
        self.card = card
        self.data = data
        self.sha256 = sha256_hex(data)
        options = ort.SessionOptions()
        # Threads come from the CPUs this process may use, not the host's core count (containers).
        options.intra_op_num_threads = threads or available_cpus()
        options.inter_op_num_threads = 1
        # onnxruntime would also print each failure itself; they reach the user once, as ModelError or in the log.
        options.log_severity_level = 4
        wanted = choose_providers(provider)
        try:
            graph = onnx.load_from_string(data)
        except Exception as err:  # protobuf's DecodeError and friends
            raise ModelError(f"not an ONNX model: {err}") from err
        flushed = flush_subnormals(graph)
        if flushed:  # an artifact exported before exports flushed them: serve it at full speed anyway
            log.warning(
                "the model holds %d subnormal weights (up to ~50x slower on Intel CPUs): set to 0 for serving; "
                "re-export it with `digitnet train` to fix the file",
                flushed,
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a CUDA fallback is detected below, not left to a warning
                self._session = ort.InferenceSession(graph.SerializeToString() if flushed else data, sess_options=options, providers=wanted)
        except Exception as err:  # onnxruntime raises its own untyped errors for corrupt graphs
            raise ModelError(f"onnxruntime cannot load the model: {err}") from err
        self.providers: list[str] = self._session.get_providers()
        if wanted[0] == _CUDA and self.providers[0] != _CUDA:
            # onnxruntime falls back to CPU silently when CUDA libraries are missing: refuse that.
            raise ConfigurationError(f"--provider cuda: onnxruntime could not start CUDA (active: {', '.join(self.providers)})")
        self._check_interface()

    @classmethod
    def from_bytes(cls, data: bytes, provider: Provider = "cpu", threads: int | None = 1) -> Model:
        """Wrap a serialised model without a card (used to verify a fresh export)."""
        return cls(data, card=None, provider=provider, threads=threads)

    @classmethod
    def load(cls, path: Path, provider: Provider = "cpu", threads: int | None = None) -> Model:
        """Load a model and its card, refusing any mismatch between the two."""
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ModelError(f"{path}: cannot read the model: {err.strerror}") from err
        card = read_card(path)
        actual = sha256_hex(data)
        if card.model_sha256 != actual:
            raise ModelError(f"{path}: sha256 {actual[:12]}… does not match its card ({str(card.model_sha256)[:12]}…); refusing to serve it")
        if card.architecture.parameters != N_PARAMETERS:
            raise ModelError(f"{path}: card says {card.architecture.parameters} parameters, expected {N_PARAMETERS}")
        embedded = embedded_card(data)
        if embedded is not None and embedded.model_dump(exclude={"model_sha256"}) != card.model_dump(exclude={"model_sha256"}):
            raise ModelError(f"{path}: the card embedded in the model differs from {path.with_suffix('.json').name}")
        return cls(data, card, provider=provider, threads=threads)

    @property
    def provider(self) -> str:
        """The execution provider actually running the graph (after any fallback)."""
        return self.providers[0]

    def run(self, pixels: np.ndarray) -> ModelOutput:
        """Run the whole model (input form, then network) on MNIST-form float32 pixels [N, 784] in [0, 1], in
        one onnxruntime call (uncounted: the inference core counts served runs)."""
        probabilities, labels, hidden1, hidden2, inputs = self._session.run(_OUTPUTS, {INPUT_NAME: pixels})
        return ModelOutput(probabilities, labels, (hidden1, hidden2), inputs)

    def warm_up(self) -> None:
        """Run a few dummy batches so the first real request does not pay for allocation and kernel setup;
        a model that loads but cannot run is refused here, before it serves anything."""
        # Blank, saturated and random images: a model whose weights overflow answers NaN on some of them only.
        rng = np.random.default_rng(0)
        batches = (np.zeros((1, N_PIXELS)), np.ones((8, N_PIXELS)), rng.random((64, N_PIXELS)))
        try:
            for batch in batches:
                probabilities = self.run(batch.astype(np.float32)).probabilities
                if probabilities.shape != (len(batch), N_CLASSES):
                    raise ValueError(f"it answered probabilities of shape {probabilities.shape} for {len(batch)} images")
                if not np.all(np.isfinite(probabilities)) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
                    raise ValueError("its probabilities are not finite or do not add up to 1")
        except Exception as err:  # onnxruntime raises its own untyped errors (shape mismatches, bad kernels)
            raise ModelError(f"the model loads but fails on a test batch: {type(err).__name__}: {err}") from err

    def _check_interface(self) -> None:
        inputs = self._session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].shape[-1] != N_PIXELS:
            raise ModelError(f"model input must be {INPUT_NAME} [N, {N_PIXELS}], got {[(i.name, i.shape) for i in inputs]}")
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        missing = [name for name in _OUTPUTS if name not in outputs]
        if missing:
            raise ModelError(f"model lacks outputs {missing}: re-train it with `digitnet train` (the committed models are current)")
        width = outputs[OUTPUT_PROBABILITIES][-1]
        if width != N_CLASSES:
            raise ModelError(f"model has {width} probabilities per image, expected {N_CLASSES}")


def flush_subnormals(model: onnx.ModelProto) -> int:
    """Set the model's subnormal float32 weights to 0 in place; return how many there were.

    Weights that decay towards zero in training (those of dead ReLUs) end up subnormal, and Intel CPUs handle
    subnormal arithmetic in microcode: with 791 of them the network ran ~50x slower (onnxruntime's own
    flush-to-zero option did not help). Zeroing them changes outputs by less than 1e-30.
    """
    flushed = 0
    for index, initializer in enumerate(model.graph.initializer):
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        subnormal = (values != 0) & (np.abs(values) < np.finfo(np.float32).tiny)
        if subnormal.any():
            flushed += int(subnormal.sum())
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.where(subnormal, np.float32(0), values), initializer.name))
    return flushed


def embedded_card(data: bytes) -> ModelCard | None:
    """Return the card stored in an ONNX file's metadata, if any."""
    try:
        model = onnx.load_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends
        raise ModelError(f"not an ONNX model: {err}") from err
    props = {p.key: p.value for p in model.metadata_props}
    if CARD_METADATA_KEY not in props:
        return None
    return ModelCard.from_json(props[CARD_METADATA_KEY], "embedded card")
