"""The subscription bookkeeping of one connection (core/subscriptions.py), without sockets."""

from __future__ import annotations

from wsmanager.core.subscriptions import MAX_PARAMS_PER_REQUEST, Refusal, SubscriptionBook

A, B = object(), object()  # tokens: the feeds of two subscriptions


def test_streams_named_in_the_url_are_carried_and_new_ones_are_subscribed_in_one_message() -> None:
    book = SubscriptionBook()
    book.opened(["a@trade"], now=0.0)
    book.want({"a@trade": A, "b@trade": A, "c@trade": A})
    assert book.has_work()
    request = book.next_request(1.0)
    assert request is not None
    assert (request.method, request.streams) == ("SUBSCRIBE", ("b@trade", "c@trade"))
    assert book.next_request(1.0) is None  # in flight: not asked twice
    assert book.answer(request.id, None, 2.0) is None
    assert book.carried == {"a@trade", "b@trade", "c@trade"} and not book.has_work()


def test_unsubscriptions_go_first_and_requests_are_bounded() -> None:
    book = SubscriptionBook()
    names = [f"s{i:03d}@trade" for i in range(250)]
    book.opened(["gone@trade"], now=0.0)
    book.want(dict.fromkeys(names, A))
    first = book.next_request(0.0)
    assert first is not None and first.method == "UNSUBSCRIBE" and first.streams == ("gone@trade",)
    sizes = []
    while (request := book.next_request(0.0)) is not None:
        sizes.append(len(request.streams))
    assert sizes == [MAX_PARAMS_PER_REQUEST, MAX_PARAMS_PER_REQUEST, 50]


def test_a_refused_batch_is_retried_stream_by_stream_and_one_refusal_reported() -> None:
    book = SubscriptionBook()
    book.opened([], now=0.0)
    book.want({"good@trade": A, "bad@trade": B})
    batch = book.next_request(0.0)
    assert batch is not None
    assert book.answer(batch.id, {"code": 2, "msg": "bad"}, 0.1) is None
    refusals = []
    while (request := book.next_request(0.2)) is not None:
        assert request.individual and len(request.streams) == 1
        error = {"code": 2, "msg": "unknown"} if request.streams == ("bad@trade",) else None
        refusal = book.answer(request.id, error, 0.3)
        if refusal is not None:
            refusals.append(refusal)
    assert refusals == [Refusal("bad@trade", 2, "unknown")]
    assert book.carried == {"good@trade"} and not book.has_work()


def test_a_stream_subscribed_again_after_a_refusal_is_requested_again() -> None:
    book = SubscriptionBook()
    book.opened([], now=0.0)
    book.want({"new@trade": A})
    request = book.next_request(0.0)
    assert request is not None
    book.answer(request.id, {"code": 2, "msg": "no"}, 0.0)  # the batch: retried alone
    retry = book.next_request(0.0)
    assert retry is not None
    assert book.answer(retry.id, {"code": 2, "msg": "no"}, 0.0) is not None
    book.want({"new@trade": A})  # the same subscription: not asked again
    assert not book.has_work()
    book.want({"new@trade": B})  # a new subscription of that name (a new feed): asked again
    again = book.next_request(1.0)
    assert again is not None and again.streams == ("new@trade",)


def test_an_unanswered_request_is_overdue_and_an_unknown_answer_is_refused() -> None:
    book = SubscriptionBook()
    book.opened([], now=0.0)
    book.want({"a@trade": A})
    request = book.next_request(0.0)
    assert book.overdue(5.0, timeout=10.0) is None
    assert book.overdue(10.5, timeout=10.0) == request
    try:
        book.answer(999_999_999, None, 0.0)
    except KeyError:
        pass
    else:  # pragma: no cover
        raise AssertionError("an answer to no request must be refused")


def test_a_silent_stream_is_unsubscribed_then_subscribed_again() -> None:
    book = SubscriptionBook()
    book.opened(["quiet@trade", "busy@trade"], now=0.0)
    book.want({"quiet@trade": A, "busy@trade": A})
    last = {"quiet@trade": 1.0, "busy@trade": 9.5}
    assert book.stale(10.0, 5.0, last.get) == ["quiet@trade"]
    assert book.stale(10.0, 5.0, last.get) == []  # marked once
    leave = book.next_request(10.0)
    assert leave is not None and (leave.method, leave.streams) == ("UNSUBSCRIBE", ("quiet@trade",))
    book.answer(leave.id, None, 10.1)
    join = book.next_request(10.2)
    assert join is not None and (join.method, join.streams) == ("SUBSCRIBE", ("quiet@trade",))
