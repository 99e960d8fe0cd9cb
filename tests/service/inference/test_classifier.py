"""The inference core: one input's failure stays that input's, and work stops once nobody waits for it."""

from __future__ import annotations

import threading

import pytest

from digitnet.service.contract.errors import (
    Cancelled,
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    TimeLimitExceeded,
)
from digitnet.service.contract.model import Model
from digitnet.service.contract.results import Outcome
from digitnet.service.inference.classifier import Classifier, Deadline

from ...conftest import CORPUS, DEFAULT_MODEL, GOLDEN
from ..conftest import DecodeSpy

GOOD = (GOLDEN / "3_scan.png").read_bytes()
ODD = (CORPUS / "tiff_tiles_2G.tif").read_bytes()  # Pillow raises OverflowError on it


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(Model.load(DEFAULT_MODEL, threads=1))


def test_an_odd_file_is_an_error_item_and_the_rest_are_answered(classifier: Classifier) -> None:
    good, odd, also_good = classifier.classify([GOOD, ODD, GOOD])
    assert good.label == 3 and also_good.label == 3
    assert odd.outcome is Outcome.ERROR and isinstance(odd.error, InvalidInput) and "OverflowError" in odd.reason


def test_a_bug_on_one_input_is_internal_for_that_input_only(classifier: Classifier, bug_on_one_pixel_images: bytes) -> None:
    good, bug = classifier.classify([GOOD, bug_on_one_pixel_images])
    assert good.label == 3
    assert bug.outcome is Outcome.ERROR and isinstance(bug.error, InternalError) and "incident" in bug.reason
    with pytest.raises(IndexError):  # one image alone: the transport answers INTERNAL with an incident id
        classifier.classify_one(bug_on_one_pixel_images)


def test_a_passed_deadline_stops_the_work_between_images(classifier: Classifier, decode_spy: DecodeSpy) -> None:
    deadline = Deadline(60)

    def expire(calls: int) -> None:
        if calls == 3:
            deadline.expires = 0.0  # the client's deadline passes while the third image decodes

    decode_spy.after_call = expire
    with pytest.raises(DeadlineExceeded):
        classifier.classify([GOOD] * 100, deadline=deadline)
    assert decode_spy.calls == 3, "images were decoded after the deadline had passed"
    with pytest.raises(DeadlineExceeded):
        classifier.explain(GOOD, deadline=Deadline(-1))


def test_a_cancelled_call_stops_its_work(classifier: Classifier) -> None:
    deadline = Deadline(None)  # no deadline: only a cancellation stops it
    classifier.classify_one(GOOD, deadline=deadline)
    cancelling = threading.Thread(target=deadline.cancel)  # as the transport does, from the event loop's thread
    cancelling.start()
    cancelling.join()
    with pytest.raises(Cancelled):
        classifier.classify_one(GOOD, deadline=deadline)


def test_the_servers_time_limit_bounds_a_request_of_many_cheap_images(classifier: Classifier, decode_spy: DecodeSpy) -> None:
    # 4096 images of 43 bytes, each decoding to 25 million pixels, once cost minutes of CPU in one request.
    decode_spy.delay = 0.01
    with pytest.raises(TimeLimitExceeded, match="took over 0.1 s, the server's limit"):
        classifier.classify([GOOD] * 200, deadline=Deadline(None, limit_seconds=0.1))
    assert decode_spy.calls < 50
