"""Child spans of a traced call (OpenTelemetry), for the steps where the work happens: decode, preprocessing,
the batcher's wait, the model run, encoding.

Only the OpenTelemetry API is used here (a core dependency, a no-op without the SDK): which exporter, sampler and
transport exist is the telemetry layer's business (telemetry/tracing.py). A child span is opened only when the
call's own span is recording, so an untraced or unsampled call pays one context-variable read per step.

Usage:
    with child("digitnet.model.run", {"digitnet.images": len(pixels)}):
        ...
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

#: The tracer of the server's own spans (the API's proxy: real once the telemetry layer installs the SDK).
TRACER = trace.get_tracer("digitnet")


def recording() -> bool:
    """Whether the current call is traced and sampled."""
    return trace.get_current_span().is_recording()


#: What child() returns in a call that is not recorded: one shared context manager that does nothing.
_NOTHING = nullcontext()


def child(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> AbstractContextManager[object]:
    """A child span of the current one while the block runs; nothing at all when the call is not recorded."""
    if not trace.get_current_span().is_recording():
        return _NOTHING
    return TRACER.start_as_current_span(name, attributes=attributes)


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Set attributes on the current span (a no-op on one that does not record)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)
