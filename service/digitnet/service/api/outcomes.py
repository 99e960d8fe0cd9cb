"""The outcome words as digitnet.v1 carries them: one table, read both ways by the server and the client."""

from __future__ import annotations

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.contract.results import NO_LABEL, Outcome

#: Each outcome's enum value on the wire.
TO_WIRE = {Outcome.DIGIT: pb.OUTCOME_DIGIT, Outcome.UNKNOWN: pb.OUTCOME_UNKNOWN, Outcome.ERROR: pb.OUTCOME_ERROR}
#: The outcome each enum value on the wire stands for.
FROM_WIRE = {wire: outcome for outcome, wire in TO_WIRE.items()}


def wire_label(label: int | None) -> int:
    """A prediction's label as the wire carries it: the digit, or NO_LABEL (proto3 cannot say 'no value' for an int)."""
    return NO_LABEL if label is None else label
