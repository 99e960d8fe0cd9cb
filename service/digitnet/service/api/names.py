"""The digitnet.v1 service's name, read from the generated descriptors: shared by the server and the client
without loading either."""

from __future__ import annotations

from digitnet.service.api._generated import digitnet_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DigitClassifier"].full_name
