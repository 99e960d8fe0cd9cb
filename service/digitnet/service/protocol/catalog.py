"""What the Open Inference Protocol says about the model: its tensors, metadata, Triton configuration,
statistics and repository index, as the protocol's messages (gRPC sends them; REST sends their JSON form).

One table (INPUT, OUTPUTS) describes every tensor once; metadata and configuration are derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.contract.constants import (
    INPUT_NAME,
    MODEL_VERSION,
    N_CLASSES,
    N_PIXELS,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
)
from digitnet.service.inference.statistics import Duration, Snapshot
from digitnet.service.protocol.repository import IndexEntry

OUTPUT_OUTCOME, OUTPUT_REASON = "outcome", "reason"


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, OIP datatype and shape per image (the batch dimension comes first)."""

    name: str
    datatype: str
    per_image: tuple[int, ...]  # () for one value per image


INPUT = Tensor(INPUT_NAME, "FP32", (N_PIXELS,))  # UINT8 and [N, 28, 28] are accepted too
OUTPUTS = (
    Tensor(OUTPUT_PROBABILITIES, "FP32", (N_CLASSES,)),
    Tensor(OUTPUT_LABEL, "INT64", ()),  # -1: no digit (blank, or under min_confidence)
    Tensor(OUTPUT_HIDDEN[0], "FP32", (16,)),
    Tensor(OUTPUT_HIDDEN[1], "FP32", (16,)),
    Tensor(OUTPUT_OUTCOME, "BYTES", ()),  # b"digit" or b"unknown"
    Tensor(OUTPUT_REASON, "BYTES", ()),  # why there is no digit; b"" for digits
)
#: Sent when a request names no outputs: what every client of the first version read.
DEFAULT_OUTPUTS = (OUTPUT_PROBABILITIES, OUTPUT_LABEL)
_DATA_TYPES = {"FP32": pb.TYPE_FP32, "INT64": pb.TYPE_INT64, "BYTES": pb.TYPE_STRING, "UINT8": pb.TYPE_UINT8}


def metadata_record(name: str) -> dict[str, Any]:
    """ModelMetadata of the model `name` as the REST API sends it: the tensors with the batch dimension as -1
    (every model of the repository has the same)."""
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT.name, "datatype": INPUT.datatype, "shape": [-1, *INPUT.per_image]}],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": [-1, *t.per_image]} for t in OUTPUTS],
    }


def model_config(name: str, max_batch_size: int, batch_size: int | None, batch_delay_ms: float) -> pb.ModelConfig:
    """Triton's ModelConfig: dims without the batch dimension (Triton's rule when max_batch_size > 0); outputs of one
    value per image are dims [1] reshaped to []; dynamic batching when adaptive batching is on."""
    config = pb.ModelConfig(
        name=name,
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        max_batch_size=max_batch_size,
        input=[pb.ModelInput(name=INPUT.name, data_type=_DATA_TYPES[INPUT.datatype], dims=list(INPUT.per_image))],
    )
    for tensor in OUTPUTS:
        output = config.output.add(name=tensor.name, data_type=_DATA_TYPES[tensor.datatype], dims=list(tensor.per_image) or [1])
        if not tensor.per_image:
            output.reshape.SetInParent()  # shape [] per image
    if batch_size:
        config.dynamic_batching.preferred_batch_size.append(batch_size)
        config.dynamic_batching.max_queue_delay_microseconds = int(batch_delay_ms * 1000)
    return config


def model_statistics(models: list[tuple[str, Snapshot]]) -> pb.ModelStatisticsResponse:
    """ModelStatistics of each (name, statistics) given."""
    return pb.ModelStatisticsResponse(model_stats=[_model_statistics(name, now) for name, now in models])


def _model_statistics(name: str, now: Snapshot) -> pb.ModelStatistics:
    def duration(d: Duration) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=d.count, ns=d.ns)

    return pb.ModelStatistics(
        name=name,
        version=MODEL_VERSION,
        last_inference=now.last_inference_ms,
        inference_count=now.inference_count,
        execution_count=now.execution_count,
        inference_stats=pb.InferStatistics(
            success=duration(now.success), fail=duration(now.fail), queue=duration(now.queue), compute_infer=duration(now.compute)
        ),
        batch_stats=[pb.InferBatchStatistics(batch_size=size, compute_infer=duration(d)) for size, d in now.batches.items()],
    )


def repository_index(entries: list[IndexEntry], only_ready: bool) -> pb.RepositoryIndexResponse:
    """RepositoryIndex: every model of the repository and its state (only the READY ones if asked)."""
    models = [pb.RepositoryIndexResponse.ModelIndex(name=e.name, version=e.version, state=e.state, reason=e.reason) for e in entries]
    return pb.RepositoryIndexResponse(models=[m for m in models if m.state == "READY" or not only_ready])


_WIDE_INTEGERS = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64}


def as_record(message: Message) -> dict[str, Any]:
    """A protocol message as Triton's REST API writes it: the proto's field names, every field (zeros too), and
    64-bit integers as JSON numbers (protobuf's JSON mapping writes them as strings, which REST clients do not expect)."""
    record: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _wide_integers_as_numbers(record, message.DESCRIPTOR)


def _wide_integers_as_numbers(record: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    for name, value in record.items():
        field = descriptor.fields_by_name.get(name)
        if field is None:
            continue
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in value if isinstance(value, list) else [value]:
                _wide_integers_as_numbers(item, field.message_type)
        elif field.type in _WIDE_INTEGERS:
            record[name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return record
