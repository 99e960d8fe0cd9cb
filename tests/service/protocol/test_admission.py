"""The one admission policy both transports apply: the token, draining, the bound on calls, and the counting."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from digitnet.service.contract.errors import Unauthenticated, Unavailable
from digitnet.service.inference.statistics import ANSWERING, InferenceStatistics
from digitnet.service.protocol.admission import Admission


@dataclass
class _State:
    ready: bool = True
    draining_now: bool = False


def test_exactly_one_right_token_is_admitted() -> None:
    admission = Admission(_State(), token="s3cret")
    assert admission.refusal(lambda: [b"Bearer s3cret"]) is None
    for given in ([], [b"Bearer wrong"], [b"Bearer s3cret", b"Bearer s3cret"], [b"s3cret"]):
        refused = admission.refusal(lambda given=given: given)
        assert isinstance(refused, Unauthenticated) and "bearer token" in str(refused), given


def test_a_stranger_learns_nothing_of_the_servers_state() -> None:
    # The token is checked first: a draining server still answers UNAUTHENTICATED to a call without it.
    assert isinstance(Admission(_State(draining_now=True), token="s3cret").refusal(list), Unauthenticated)
    assert isinstance(Admission(_State(draining_now=True), token="s3cret").refusal(lambda: [b"Bearer s3cret"]), Unavailable)


def test_single_calls_and_streams_are_bounded_apart() -> None:
    admission = Admission(_State(), max_in_flight=2)
    admission.admit(list)
    admission.admit(list)
    with pytest.raises(Unavailable, match="2 calls in flight"):
        admission.admit(list)
    admission.admit(list, stream=True)  # streams have slots of their own
    admission.release()
    admission.admit(list)  # a released slot is taken again
    for stream in (False, False, True):  # give every slot back: the in-flight gauge is the process's, other tests read it
        admission.release(stream)


def test_a_call_counts_against_the_model_that_answered_it_unless_cancelled() -> None:
    relu, sigmoid = InferenceStatistics("relu"), InferenceStatistics("sigmoid")
    Admission.begin()
    Admission.record("Classify", "Classify", "OK", ok=True, elapsed=0.01)  # no model answered: counted nowhere
    ANSWERING.set(relu)
    Admission.record("ModelInfer", "http ModelInfer", "499", ok=False, elapsed=0.01, cancelled=True)
    Admission.record("Live", "http Live", "200", ok=True, elapsed=0.01)
    assert relu.snapshot().fail.count == 0 and relu.snapshot().success.count == 0
    Admission.record("Classify", "Classify", "OK", ok=True, elapsed=0.01)
    ANSWERING.set(sigmoid)
    Admission.record("ModelInfer", "ModelInfer", "INVALID_ARGUMENT", ok=False, elapsed=0.01)
    assert (relu.snapshot().success.count, relu.snapshot().fail.count) == (1, 0)
    assert (sigmoid.snapshot().success.count, sigmoid.snapshot().fail.count) == (0, 1)
    Admission.begin()
    assert ANSWERING.get() is None
