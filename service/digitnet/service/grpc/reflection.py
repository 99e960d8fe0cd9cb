"""The descriptors server reflection shows: the Open Inference Protocol under its real package, `inference`.

The generated Python code carries another package (so that tritonclient's can be loaded beside it), which
reflection would show: grpcurl could list the service but not describe or call it.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from digitnet.service.api._generated import oip_pb2 as pb

#: The protocol's package as clients call it (the Python code is generated under another: see tools/protos.py).
OIP_PACKAGE = "inference"


def reflection_pool(*others: FileDescriptor) -> descriptor_pool.DescriptorPool:
    """A descriptor pool for server reflection: the OIP under its real package, `inference`, beside `others`."""
    pool = descriptor_pool.DescriptorPool()
    for file in others:
        pool.Add(_proto_of(file))
    oip = _proto_of(pb.DESCRIPTOR)
    generated = oip.package
    oip.package = OIP_PACKAGE
    for message in oip.message_type:
        _repackage(message, generated)
    for service in oip.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{generated}.", f".{OIP_PACKAGE}.")
            method.output_type = method.output_type.replace(f".{generated}.", f".{OIP_PACKAGE}.")
    pool.Add(oip)
    return pool


def _proto_of(file: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto


def _repackage(message: descriptor_pb2.DescriptorProto, generated: str) -> None:
    for field in message.field:
        if field.HasField("type_name"):  # assigning even "" would mark a scalar field as typed
            field.type_name = field.type_name.replace(f".{generated}.", f".{OIP_PACKAGE}.")
    for nested in message.nested_type:
        _repackage(nested, generated)
