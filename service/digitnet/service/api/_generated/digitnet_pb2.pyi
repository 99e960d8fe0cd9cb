from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_DIGIT: _ClassVar[Outcome]
    OUTCOME_UNKNOWN: _ClassVar[Outcome]
    OUTCOME_ERROR: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_DIGIT: Outcome
OUTCOME_UNKNOWN: Outcome
OUTCOME_ERROR: Outcome

class Image(_message.Message):
    __slots__ = ("encoded", "mnist_uint8", "mnist_float")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    MNIST_UINT8_FIELD_NUMBER: _ClassVar[int]
    MNIST_FLOAT_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    mnist_uint8: bytes
    mnist_float: MnistFloat
    def __init__(self, encoded: _Optional[bytes] = ..., mnist_uint8: _Optional[bytes] = ..., mnist_float: _Optional[_Union[MnistFloat, _Mapping]] = ...) -> None: ...

class MnistFloat(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "min_confidence", "id", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: Image
    min_confidence: float
    id: str
    model: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., min_confidence: _Optional[float] = ..., id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("outcome", "label", "confidence", "probabilities", "reason", "error")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    label: int
    confidence: float
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    reason: str
    error: Error
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., label: _Optional[int] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Iterable[float]] = ..., reason: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("prediction", "id", "model")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    id: str
    model: str
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ..., id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ClassifyBatchRequest(_message.Message):
    __slots__ = ("images", "min_confidence", "mnist_uint8", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MNIST_UINT8_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    min_confidence: float
    mnist_uint8: bytes
    model: str
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., min_confidence: _Optional[float] = ..., mnist_uint8: _Optional[bytes] = ..., model: _Optional[str] = ...) -> None: ...

class ClassifyBatchResponse(_message.Message):
    __slots__ = ("predictions", "packed", "model")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    packed: PackedPredictions
    model: str
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., packed: _Optional[_Union[PackedPredictions, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class PackedPredictions(_message.Message):
    __slots__ = ("labels", "confidences", "probabilities")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    confidences: _containers.RepeatedScalarFieldContainer[float]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, labels: _Optional[_Iterable[int]] = ..., confidences: _Optional[_Iterable[float]] = ..., probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("prediction", "input", "hidden1", "hidden2", "model")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    HIDDEN1_FIELD_NUMBER: _ClassVar[int]
    HIDDEN2_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    input: _containers.RepeatedScalarFieldContainer[float]
    hidden1: _containers.RepeatedScalarFieldContainer[float]
    hidden2: _containers.RepeatedScalarFieldContainer[float]
    model: str
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ..., input: _Optional[_Iterable[float]] = ..., hidden1: _Optional[_Iterable[float]] = ..., hidden2: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("include_model", "model")
    INCLUDE_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    include_model: bool
    model: str
    def __init__(self, include_model: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("card_json", "model_sha256", "execution_provider", "server_version", "layers", "activation", "parameters", "model_onnx", "limits", "name")
    CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ONNX_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    card_json: str
    model_sha256: str
    execution_provider: str
    server_version: str
    layers: _containers.RepeatedScalarFieldContainer[int]
    activation: str
    parameters: int
    model_onnx: bytes
    limits: ServerLimits
    name: str
    def __init__(self, card_json: _Optional[str] = ..., model_sha256: _Optional[str] = ..., execution_provider: _Optional[str] = ..., server_version: _Optional[str] = ..., layers: _Optional[_Iterable[int]] = ..., activation: _Optional[str] = ..., parameters: _Optional[int] = ..., model_onnx: _Optional[bytes] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("max_message_bytes", "max_image_bytes", "max_request_images", "max_image_pixels", "max_image_side", "max_image_aspect", "max_request_seconds")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_ASPECT_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_image_bytes: int
    max_request_images: int
    max_image_pixels: int
    max_image_side: int
    max_image_aspect: float
    max_request_seconds: float
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_image_bytes: _Optional[int] = ..., max_request_images: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., max_image_side: _Optional[int] = ..., max_image_aspect: _Optional[float] = ..., max_request_seconds: _Optional[float] = ...) -> None: ...
