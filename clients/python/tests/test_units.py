"""The pure parts: chunk planning by every limit, verdicts, Retry-After, error mapping."""

from __future__ import annotations

import pytest

from psr_reward_client import EncodedImage, Limits, errors
from psr_reward_client._core import Verdict, retry_after_seconds, verdict
from psr_reward_client.request import PreparedItem, PreparedSubject, plan_chunks


def _item(i: int, b64_len: int = 100, side: int = 10, ref: str = "r") -> PreparedItem:
    img = EncodedImage("x" * b64_len, side, side, f"img{i}")
    r = EncodedImage("y" * b64_len, side, side, ref)
    return PreparedItem(i, img, "", None, (PreparedSubject("red", r),))


def test_chunks_respect_items_bytes_and_pixels() -> None:
    items = [_item(i) for i in range(10)]
    assert plan_chunks(items, Limits(max_items_per_request=4), 32) == [
        range(0, 4),
        range(4, 8),
        range(8, 10),
    ]
    assert plan_chunks(items, Limits(), 3)[0] == range(0, 3)
    big = [_item(i, b64_len=400_000) for i in range(10)]
    chunks = plan_chunks(big, Limits(max_body_bytes=2_000_000), 32)
    assert [len(c) for c in chunks] == [2, 2, 2, 2, 2]
    # Pixels count distinct images: the shared reference once per chunk.
    px = [_item(i, side=100) for i in range(10)]
    chunks = plan_chunks(px, Limits(max_request_pixels=100 * 100 * 5), 32)
    assert [len(c) for c in chunks] == [4, 4, 2]
    # An item over a limit alone still gets its own chunk (the server names the limit).
    assert plan_chunks([_item(0, b64_len=10_000)], Limits(max_body_bytes=100), 32) == [range(0, 1)]


def test_only_429_503_and_reference_misses_are_retried() -> None:
    assert verdict(200, None) is Verdict.OK
    assert verdict(429, "overloaded") is Verdict.BUSY
    assert verdict(503, "not_ready") is Verdict.DOWN
    assert verdict(422, "unknown_reference") is Verdict.RESEND
    assert verdict(422, "request_too_large") is Verdict.SPLIT
    assert verdict(413, "too_many_pixels") is Verdict.SPLIT
    for status, kind in [
        (500, "backend"),
        (422, "invalid_request"),
        (504, "timeout"),
        (413, "image_too_large"),
    ]:
        assert verdict(status, kind) is Verdict.FAIL


def test_retry_after() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize(
    ("status", "body", "cls", "kind"),
    [
        (
            422,
            '{"error":"x","error_type":"invalid_request"}',
            errors.InvalidRequestError,
            "invalid_request",
        ),
        (
            422,
            '{"error":"x","error_type":"unknown_reference"}',
            errors.UnknownReferenceError,
            "unknown_reference",
        ),
        (
            413,
            '{"error":"x","error_type":"payload_too_large"}',
            errors.PayloadTooLargeError,
            "payload_too_large",
        ),
        (429, '{"error":"x","error_type":"overloaded"}', errors.OverloadedError, "overloaded"),
        (503, '{"error":"x","error_type":"not_ready"}', errors.NotReadyError, "not_ready"),
        (504, '{"error":"x","error_type":"timeout"}', errors.ServerTimeoutError, "timeout"),
        (500, '{"error":"x","error_type":"backend"}', errors.BackendError, "backend"),
        (502, "Bad Gateway", errors.BackendError, "http_502"),
    ],
)
def test_errors_are_typed(
    status: int, body: str, cls: type[errors.RewardServerError], kind: str
) -> None:
    e = errors.error_for(status, body, request_id="rid", url="http://h")
    assert type(e) is cls and e.error_type == kind and e.status == status
    assert "rid" in str(e) and "http://h" in str(e)


def test_subjects_per_item_as_lists_or_single_subjects() -> None:
    from psr_reward_client import Subject
    from psr_reward_client._core import collect

    ref, other = object(), object()
    c = collect(
        ["a", "b", "c", "d"],
        "p",
        [[("red", ref)], ("red", ref), {"name": "blue", "reference": other}, Subject("red", ref)],
        None,
    )
    assert c.subjects == [[("red", 4)], [("red", 4)], [("blue", 5)], [("red", 4)]]
    assert c.images[4] is ref and c.images[5] is other and len(c.images) == 6
    with pytest.raises(ValueError, match="subjects: 1 given for 2 images"):
        collect(["a", "b"], "p", [[("red", ref)]], None)
