"""The services' names on the wire, digitnet.v1's read from the generated descriptors: shared by the server and
the client without loading either."""

from __future__ import annotations

from digitnet.service.api._generated import digitnet_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DigitClassifier"].full_name
#: The Open Inference Protocol's service, as tritonclient and KServe clients call it (method paths
#: /inference.GRPCInferenceService/...); not the generated stub's, whose package tools/protos.py renames.
OIP_SERVICE = "inference.GRPCInferenceService"
