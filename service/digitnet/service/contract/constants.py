"""Constants of the MNIST form and of the network, defined once for training, serving and tests."""

import os
from importlib.util import find_spec
from pathlib import Path
from typing import Final, Literal, get_args

#: Side of an MNIST image in pixels; images are IMAGE_SIDE x IMAGE_SIDE.
IMAGE_SIDE: Final = 28
#: MNIST digits are scaled to fit a DIGIT_BOX x DIGIT_BOX box inside the 28x28 image.
DIGIT_BOX: Final = 20
#: Number of input pixels (28 * 28).
N_PIXELS: Final = IMAGE_SIDE * IMAGE_SIDE
#: The classes, in the order of the probability vector.
LABELS: Final = tuple(range(10))
N_CLASSES: Final = len(LABELS)
#: The two hidden layers of 3Blue1Brown's network.
HIDDEN_LAYERS: Final = (16, 16)
LAYER_SIZES: Final = (N_PIXELS, *HIDDEN_LAYERS, N_CLASSES)
#: Weights plus biases of 784-16-16-10: 784*16+16 + 16*16+16 + 16*10+10.
N_PARAMETERS: Final = sum(a * b + b for a, b in zip(LAYER_SIZES, LAYER_SIZES[1:]))
#: scikit-learn's names for the hidden-layer activations: ReLU and the sigmoid.
Activation = Literal["relu", "logistic"]
ACTIVATIONS: Final[tuple[Activation, ...]] = ("relu", "logistic")
#: The ONNX operator of each hidden-layer activation: the export writes it, reading a model file back finds it.
ACTIVATION_OPS: Final[dict[Activation, str]] = {"relu": "Relu", "logistic": "Sigmoid"}

#: The abstain threshold a request gets when it sets none (the server's --min-confidence): below this top
#: probability the answer is UNKNOWN. Chosen from the committed models' selective-accuracy table
#: (docs/training.md): it trades few answers for many fewer mistakes.
DEFAULT_MIN_CONFIDENCE: Final = 0.5

# The ONNX artifact's interface (see model.py, which owns the contract).
INPUT_NAME: Final = "pixels"
OUTPUT_PROBABILITIES: Final = "probabilities"
OUTPUT_LABEL: Final = "label"
OUTPUT_HIDDEN: Final = ("hidden1", "hidden2")
#: The pixels the network ran on, after the input form (deskew, blur) that the graph applies in front of it.
OUTPUT_FORMED: Final = "network_input"
#: How file names are encoded in text output: the OS gives bytes, and a name that is not UTF-8 is
#: written (and read back by --resume) byte for byte.
PATH_ERRORS: Final = "surrogateescape"
#: Room in a gRPC message for what surrounds the pixels or image bytes (fields, ids, options).
MESSAGE_OVERHEAD_BYTES: Final = 64 * 1024
#: Key of the model card in the ONNX file's metadata_props.
CARD_METADATA_KEY: Final = "digitnet.card"
#: Where the model runs: onnxruntime's CUDA execution provider if present ("auto"), or a fixed choice.
Provider = Literal["auto", "cpu", "cuda"]
PROVIDERS: Final[tuple[Provider, ...]] = get_args(Provider)
#: The name the default model answers to besides its own (the Open Inference Protocol's model_name), so that
#: clients written before the server served several models keep working; and every model's one version.
MODEL_NAME: Final = "digitnet"
MODEL_VERSION: Final = "1"

assert N_PARAMETERS == 13_002


#: The committed model's file name in models/, which installs as the package data `digitnet.models`.
DEFAULT_MODEL_FILE: Final = "default.onnx"


def available_cpus() -> int:
    """Count the CPUs this process may run on (cgroup/affinity aware, unlike os.cpu_count)."""
    return len(os.sched_getaffinity(0))


def model_repository() -> Path:
    """The folder the server serves by default: $DIGITNET_MODEL_REPOSITORY, else the one of the committed models."""
    configured = os.environ.get("DIGITNET_MODEL_REPOSITORY")
    return Path(configured) if configured else _installed_default().parent


def installed_models() -> list[Path]:
    """The models beside the default one (the committed default and logistic), the default first."""
    default = default_model()
    others = sorted(p for p in default.parent.glob("*.onnx") if p != default) if default.parent.is_dir() else []
    return [default, *others]


def default_model() -> Path:
    """The model a command uses without --model: $DIGITNET_MODEL (the first, if it names several), else the
    default.onnx of $DIGITNET_MODEL_REPOSITORY, else the committed one installed with digitnet."""
    configured = os.environ.get("DIGITNET_MODEL", "").split(",")[0].strip()
    if configured:
        return Path(configured)
    repository = os.environ.get("DIGITNET_MODEL_REPOSITORY")
    if repository:
        return Path(repository) / DEFAULT_MODEL_FILE
    return _installed_default()


def _installed_default() -> Path:
    # models/ has no __init__.py (it holds artifacts only), so `digitnet.models` is a namespace package:
    # look for the file in each of its folders (an editable install adds a path hook that is not one).
    spec = find_spec("digitnet.models")
    folders = [Path(folder) for folder in (spec.submodule_search_locations or []) if Path(folder).is_dir()] if spec else []
    found = [folder / DEFAULT_MODEL_FILE for folder in folders if (folder / DEFAULT_MODEL_FILE).is_file()]
    return found[0] if found else Path("models") / DEFAULT_MODEL_FILE
