"""Orders through the bridge on the fake MT5: idempotency, deadlines, reconciliation, ACK then RESULT."""
import threading
import time

import pytest
import zmq
from bridge_fixtures import fake_mt5, started_bridge
from flowchain_bridge import FakeMetaTrader5, OrderClient, OrderFault, wire
from flowchain_bridge.server import FAST_STREAK


@pytest.fixture
def mt5():
    return fake_mt5(seed=1)


@pytest.fixture
def bridge(bridge, mt5, eventually):
    """The shared bridge, once the fake has made its first quote (orders need a price)."""
    eventually(lambda: mt5.symbol_info_tick("EURUSD").time_msc > 0)
    return bridge


@pytest.fixture
def client(bridge, ctx):
    with OrderClient(bridge.router_endpoint, context=ctx) as c:
        yield c


def _order(client, **kw):
    fields = dict(req_id=client.next_req_id(), deadline_ns=time.time_ns() + 5_000_000_000, symbol="EURUSD",
                  type=FakeMetaTrader5.ORDER_TYPE_BUY, volume=0.1, magic=99,
                  type_filling=FakeMetaTrader5.ORDER_FILLING_IOC)
    fields.update(kw)
    return wire.OrderRequest(**fields)


def test_ack_then_result_with_every_field(client, mt5):
    req = _order(client, comment="alpha-1")
    result = client.send(req)
    assert client.acks[req.req_id].status is wire.AckStatus.QUEUED
    assert result.status is wire.OrderStatus.SENT and result.retcode == mt5.TRADE_RETCODE_DONE
    (deal,) = mt5.history_deals_get(0, 2**33)
    assert (result.deal, result.order, result.price) == (deal.ticket, deal.order, deal.price)
    assert result.comment == "Request executed" and result.request_id > 0
    assert result.bid > 0 and result.ask >= result.bid and result.last_error == (1, "Success")
    assert result.mt5_ns > 0 and not result.replayed


def test_duplicate_req_id_trades_once(client, mt5, bridge, ctx):
    req = _order(client)
    first = client.send(req)
    again = client.send(req)  # the same req_id resent, e.g. after a lost reply
    assert again.replayed and again._replace(replayed=False) == first
    assert client.acks[req.req_id].status is wire.AckStatus.DUPLICATE_DONE
    assert mt5.order_send_calls == 1 and mt5.positions_total() == 1


def _dealer(ctx, bridge):
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(bridge.router_endpoint)
    return dealer


def _replies(dealer, n, timeout_ms=5000):
    got = []
    while len(got) < n and dealer.poll(timeout_ms):
        got.append(wire.decode(dealer.recv()))
    return got


def _raw_order(req_id, **kw):
    fields = dict(req_id=req_id, deadline_ns=time.time_ns() + 5_000_000_000, symbol="EURUSD", type=0,
                  volume=0.1, type_filling=1, magic=5)
    fields.update(kw)
    return wire.encode_order_request(wire.OrderRequest(**fields))


def _record_sends(mt5):
    """Wrap the fake's order_send: return a list of (comment, start ns, end ns) and an Event set at each start."""
    calls, started = [], threading.Event()
    real_send = mt5.order_send

    def order_send(request):
        start = time.time_ns()
        started.set()
        result = real_send(request)
        calls.append((request["comment"], start, time.time_ns()))
        return result

    mt5.order_send = order_send
    return calls, started


def test_concurrent_duplicates_while_pending_trade_once(bridge, mt5, ctx):
    mt5.faults.order_latency_s = 0.3
    _, started = _record_sends(mt5)
    first = _dealer(ctx, bridge)
    first.send(_raw_order(1001))  # a slow order keeps the order thread busy ...
    assert started.wait(5)
    dealers = [_dealer(ctx, bridge) for _ in range(2)]
    for d in dealers:  # ... while the same new req_id comes from two peers
        d.send(_raw_order(424242))
    replies = [_replies(d, 2) for d in dealers]
    assert [type(r) for r in _replies(first, 2)] == [wire.OrderAck, wire.OrderResult]
    for d in (first, *dealers):
        d.close(0)
    acks = sorted(r[0].status for r in replies)
    assert acks == [wire.AckStatus.QUEUED, wire.AckStatus.DUPLICATE_PENDING]
    assert all(isinstance(r[1], wire.OrderResult) and r[1].retcode == 10009 for r in replies)
    assert replies[0][1].deal == replies[1][1].deal and mt5.order_send_calls == 2  # 1001 and 424242 once


def test_order_arriving_during_a_send_is_acked_before_its_own_and_backfill_between(bridge, mt5, ctx, eventually):
    mt5.faults.order_latency_s = 0.25
    calls, started = _record_sends(mt5)
    eventually(lambda: bridge.histories[0].last_seq >= 1)
    dealer = _dealer(ctx, bridge)
    dealer.send(_raw_order(2001, comment="first"))
    assert started.wait(5), "the first order never reached order_send"
    dealer.send(_raw_order(2002, comment="second"))  # arrives while "first" is inside order_send
    dealer.send(wire.encode_backfill_request(wire.BackfillRequest(9, bridge.session_id, 0, 1, 1)))
    replies = _replies(dealer, 5)
    dealer.close(0)
    kinds = [(type(r).__name__, getattr(r, "req_id", None)) for r in replies]
    assert kinds == [("OrderAck", 2001), ("OrderResult", 2001), ("OrderAck", 2002),
                     ("BackfillResponse", 9), ("OrderResult", 2002)], kinds
    (_, first_start, first_end), (_, second_start, _) = calls
    second_ack = replies[2]
    assert second_ack.status is wire.AckStatus.QUEUED
    assert first_end <= second_ack.bridge_time_ns <= second_start, "ACK not between the two sends"
    assert replies[0].bridge_time_ns <= first_start
    assert [r.retcode for r in (replies[1], replies[4])] == [mt5.TRADE_RETCODE_DONE] * 2


def test_deadline_passed_is_rejected_unsent(bridge, mt5, ctx):
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(bridge.router_endpoint)
    late = wire.OrderRequest(req_id=77, deadline_ns=time.time_ns() - 1, symbol="EURUSD", type=0, volume=0.1,
                             type_filling=1)
    dealer.send(wire.encode_order_request(late))
    replies = []
    while len(replies) < 2 and dealer.poll(5000):
        replies.append(wire.decode(dealer.recv()))
    dealer.close(0)
    ack, result = replies
    assert isinstance(ack, wire.OrderAck) and ack.status is wire.AckStatus.QUEUED
    assert result.status is wire.OrderStatus.EXPIRED and result.retcode == 0
    assert mt5.order_send_calls == 0 and mt5.positions_total() == 0


@pytest.mark.parametrize("fault,status", [
    (OrderFault.TIMEOUT_FILLED, wire.OrderStatus.RECONCILED_FILLED),
    (OrderFault.NONE_FILLED, wire.OrderStatus.RECONCILED_FILLED),
    (OrderFault.TIMEOUT_ABSENT, wire.OrderStatus.RECONCILED_ABSENT),
    (OrderFault.NONE_ABSENT, wire.OrderStatus.RECONCILED_ABSENT),
])
def test_unanswered_sends_are_reconciled_never_resent(client, mt5, fault, status):
    mt5.faults.orders.append(fault)
    req = _order(client)
    result = client.send(req)
    assert result.status is status
    assert mt5.order_send_calls == 1, "the bridge resent an order blindly"
    if status is wire.OrderStatus.RECONCILED_FILLED:
        (deal,) = mt5.history_deals_get(0, 2**33)
        assert result.deal == deal.ticket and deal.comment == f"fc{req.req_id:016x}"
        assert mt5.positions_total() == 1
    else:
        assert mt5.positions_total() == 0 and result.deal == 0


@pytest.mark.parametrize("fault,retcode", [(OrderFault.REQUOTE, 10004), (OrderFault.REJECT, 10006),
                                           (OrderFault.MARKET_CLOSED, 10018), (OrderFault.INVALID_FILL, 10030)])
def test_mt5_refusals_come_back_as_sent_with_their_retcode(client, mt5, fault, retcode):
    mt5.faults.orders.append(fault)
    result = client.send(_order(client))
    assert result.status is wire.OrderStatus.SENT and result.retcode == retcode


def test_order_check_refusal_is_not_sent(client, mt5):
    result = client.send(_order(client, volume=0.015))
    assert result.status is wire.OrderStatus.CHECK_FAILED and result.retcode == mt5.TRADE_RETCODE_INVALID_VOLUME
    assert mt5.order_send_calls == 0


def test_symbol_not_streamed_is_invalid_and_unsent(client, mt5):
    result = client.send(_order(client, symbol="GBPUSD"))
    assert result.status is wire.OrderStatus.INVALID and "GBPUSD" in result.comment
    assert mt5.order_send_calls == 0


def test_disconnected_terminal_refuses_unsent(client, mt5, bridge, eventually):
    mt5.server_connected = False
    eventually(lambda: not bridge.link.connected)
    result = client.send(_order(client))
    assert result.status is wire.OrderStatus.DISCONNECTED and mt5.order_send_calls == 0


def test_malformed_order_frames_are_counted(bridge, ctx, eventually):
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(bridge.router_endpoint)
    good = bytearray(wire.encode_order_request(wire.OrderRequest(1, 0, "EURUSD", 0, 0.1)))
    good[48:56] = b"\xff" * 8  # volume := NaN
    for frame in (bytes(good), b"\x01", b"\x09\x06" + bytes(200)):
        dealer.send(frame)
    eventually(lambda: (bridge.rejects["nan_price"], bridge.rejects["short"], bridge.rejects["version"]) == (1, 1, 1))
    assert not dealer.poll(100)  # nothing is answered to garbage
    dealer.close(0)


def test_ack_goes_at_once_when_mt5_is_slow(bridge, mt5, ctx):
    mt5.faults.order_latency_s = 1.0
    dealer = _dealer(ctx, bridge)
    dealer.send(_raw_order(515))
    assert dealer.poll(800), "the ACK waited for the slow order_send"
    ack = wire.decode(dealer.recv())
    assert isinstance(ack, wire.OrderAck) and ack.status is wire.AckStatus.QUEUED
    assert not dealer.poll(0)  # the RESULT is still on its way
    assert dealer.poll(5000)
    assert wire.decode(dealer.recv()).retcode == mt5.TRADE_RETCODE_DONE
    dealer.close(0)


def test_multi_frame_messages_are_counted_not_answered(bridge, ctx, eventually):
    dealer = _dealer(ctx, bridge)
    dealer.send_multipart([_raw_order(616), b"extra"])
    dealer.send(_raw_order(617))  # a good order behind the bad one is still served
    replies = _replies(dealer, 2)
    dealer.close(0)
    assert [(type(r), r.req_id) for r in replies] == [(wire.OrderAck, 617), (wire.OrderResult, 617)]
    eventually(lambda: bridge.rejects["length"] == 1)


def test_result_for_a_departed_peer_is_counted_and_served_again_on_resend(bridge, mt5, ctx, eventually):
    mt5.faults.order_latency_s = 0.3
    leaving = _dealer(ctx, bridge)
    leaving.send(_raw_order(818))
    assert isinstance(_replies(leaving, 1)[0], wire.OrderAck)
    leaving.close(0)  # gone before the RESULT
    eventually(lambda: bridge.replies_dropped == 1)
    mt5.faults.order_latency_s = 0.0
    back = _dealer(ctx, bridge)
    back.send(_raw_order(818))  # the resend gets the cached RESULT, no second trade
    ack, result = _replies(back, 2)
    back.close(0)
    assert ack.status is wire.AckStatus.DUPLICATE_DONE and result.replayed
    assert mt5.order_send_calls == 1



@pytest.fixture
def patient_bridge(mt5, ctx, eventually):
    """A bridge whose ACK window is 250 ms, so that a busy test machine never ends a streak."""
    running = started_bridge(mt5, ctx, eventually, ack_defer_us=250_000)
    yield running
    running.stop()


def _reply_messages(dealer, req_ids):
    """Send each order and wait for its RESULT; return the replies to each as lists of frames."""
    shapes = []
    for req_id in req_ids:
        dealer.send(_raw_order(req_id))
        messages = []
        while not messages or not isinstance(messages[-1][-1], wire.OrderResult):
            assert dealer.poll(5000), f"no reply to order {req_id}"
            messages.append([wire.decode(f) for f in dealer.recv_multipart()])
        shapes.append(messages)
    return shapes


def _kinds(messages):
    return [[type(f) for f in m] for m in messages]


def test_ack_rides_with_the_result_once_the_terminal_answers_fast(patient_bridge, mt5, ctx):
    dealer = _dealer(ctx, patient_bridge)
    shapes = _reply_messages(dealer, range(4000, 4000 + FAST_STREAK + 3))
    dealer.close(0)
    for messages in shapes[:FAST_STREAK]:  # no streak yet: the ACK leaves first, on its own
        assert _kinds(messages) == [[wire.OrderAck], [wire.OrderResult]]
    for messages in shapes[FAST_STREAK:]:  # then one message: ACK, RESULT
        (ack, result), = messages
        assert ack.status is wire.AckStatus.QUEUED and ack.req_id == result.req_id
        assert result.retcode == mt5.TRADE_RETCODE_DONE
    assert patient_bridge.stats()["acks_deferred"] == 3 and mt5.order_send_calls == FAST_STREAK + 3


def test_one_slow_order_ends_the_streak_and_acks_go_first_again(patient_bridge, mt5, ctx):
    dealer = _dealer(ctx, patient_bridge)
    _reply_messages(dealer, range(5000, 5000 + FAST_STREAK))
    mt5.faults.order_latency_s = 0.3  # admitted during the streak: its ACK rides with its RESULT
    (slow,) = _reply_messages(dealer, [5100])
    mt5.faults.order_latency_s = 0.0
    (after,) = _reply_messages(dealer, [5101])  # the streak is over: the ACK leaves at once
    dealer.close(0)
    assert _kinds(slow) == [[wire.OrderAck, wire.OrderResult]]
    assert _kinds(after) == [[wire.OrderAck], [wire.OrderResult]]


def test_ack_defer_zero_acks_every_order_at_once(mt5, ctx, eventually):
    bridge = started_bridge(mt5, ctx, eventually, ack_defer_us=0)
    try:
        dealer = _dealer(ctx, bridge)
        shapes = _reply_messages(dealer, range(6000, 6000 + FAST_STREAK + 4))
        dealer.close(0)
        assert all(_kinds(messages) == [[wire.OrderAck], [wire.OrderResult]] for messages in shapes)
        assert bridge.stats()["acks_deferred"] == 0
    finally:
        bridge.stop()


def test_order_client_reads_an_ack_and_result_sent_as_one_message(patient_bridge, ctx, mt5):
    with OrderClient(patient_bridge.router_endpoint, context=ctx) as client:
        results = [client.send(_order(client)) for _ in range(FAST_STREAK + 2)]
        assert all(r.retcode == mt5.TRADE_RETCODE_DONE for r in results)
        assert all(client.acks[r.req_id].status is wire.AckStatus.QUEUED for r in results)
    assert patient_bridge.stats()["acks_deferred"] == 2


def test_polling_client_sees_both_frames_of_a_combined_reply(patient_bridge, ctx, mt5):
    with OrderClient(patient_bridge.router_endpoint, context=ctx) as client:
        for _ in range(FAST_STREAK + 2):
            req = _order(client)
            client.post(req)
            replies, deadline = [], time.monotonic() + 5
            while not replies or type(replies[-1]) is not wire.OrderResult:
                assert time.monotonic() < deadline, f"no RESULT for {req.req_id} through receive(0)"
                reply = client.receive(0)  # the node's polling hook: never blocks
                if reply is not None:
                    replies.append(reply)
            assert [type(r) for r in replies] == [wire.OrderAck, wire.OrderResult]
    assert patient_bridge.stats()["acks_deferred"] == 2


def test_pending_order_carries_its_expiration_to_mt5(client, mt5):
    quote = mt5.symbol_info_tick("EURUSD")
    expires = int(time.time()) + 3600
    limit = dict(action=mt5.TRADE_ACTION_PENDING, type=mt5.ORDER_TYPE_BUY_LIMIT,
                 price=round(quote.ask - 0.005, 5), type_filling=mt5.ORDER_FILLING_RETURN,
                 type_time=mt5.ORDER_TIME_SPECIFIED)
    placed = client.send(_order(client, expiration=expires, **limit))
    assert placed.status is wire.OrderStatus.SENT and placed.retcode == mt5.TRADE_RETCODE_PLACED
    (order,) = mt5.orders_get(symbol="EURUSD")
    assert order.ticket == placed.order and order.time_expiration == expires
    stale = client.send(_order(client, expiration=int(time.time()) - 60, **limit))
    assert stale.status is wire.OrderStatus.CHECK_FAILED
    assert stale.retcode == mt5.TRADE_RETCODE_INVALID_EXPIRATION and mt5.order_send_calls == 1


def test_resend_unknown_to_a_restarted_bridge_is_found_in_the_terminal_not_traded_again(mt5, ctx, eventually):
    first_run = started_bridge(mt5, ctx, eventually)
    with OrderClient(first_run.router_endpoint, context=ctx) as client:
        req = _order(client)
        first = client.send(req)
    first_run.stop()
    second_run = started_bridge(mt5, ctx, eventually)
    try:
        with OrderClient(second_run.router_endpoint, context=ctx) as client:
            again = client.send(req._replace(resend=True))
            fresh = _order(client)
            new = client.send(fresh._replace(resend=True))  # a resend the terminal never saw: sent once
        assert again.status is wire.OrderStatus.RECONCILED_FILLED and again.deal == first.deal
        assert new.status is wire.OrderStatus.SENT and new.retcode == mt5.TRADE_RETCODE_DONE
        assert mt5.order_send_calls == 2 and second_run.stats()["resends_checked"] == 2
    finally:
        second_run.stop()


def test_resend_is_not_sent_blind_when_the_terminal_cannot_be_asked(bridge, client, mt5):
    mt5.faults.ipc_timeouts = 3  # the history/positions/orders queries all fail
    result = client.send(_order(client)._replace(resend=True))
    assert result.status is wire.OrderStatus.UNKNOWN and mt5.order_send_calls == 0


def test_order_client_resends_the_same_req_id_flagged_until_its_deadline(ctx):
    from flowchain_bridge.client import OrderTimeout
    silent = ctx.socket(zmq.ROUTER)  # a bridge that reads and never answers
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    with OrderClient(f"tcp://127.0.0.1:{port}", context=ctx) as client:
        req = _order(client, deadline_ns=time.time_ns() + 400_000_000)
        started = time.monotonic()
        with pytest.raises(OrderTimeout, match="no ACK"):
            client.send(req, ack_timeout_s=0.1)
        assert 0.3 < time.monotonic() - started < 2.0
        assert client.resends >= 2
    seen = []
    while silent.poll(100):
        _, frame = silent.recv_multipart()
        seen.append(wire.decode_order_request(frame))
    silent.close(0)
    assert len(seen) == 1 + client.resends and {r.req_id for r in seen} == {req.req_id}
    assert not seen[0].resend and all(r.resend for r in seen[1:])
    assert all(r._replace(resend=False) == req for r in seen)


def test_a_bridge_starts_once(bridge):
    with pytest.raises(RuntimeError, match="started already"):
        bridge.start()


def test_a_reused_req_id_with_other_content_is_refused_never_given_the_cached_result(client, mt5, bridge):
    first = _order(client)
    done = client.send(first)
    assert done.status is wire.OrderStatus.SENT and mt5.order_send_calls == 1
    other = first._replace(symbol="EURUSD", volume=0.2, deadline_ns=time.time_ns() + 5_000_000_000)
    refused = client.send(other)
    assert refused.status is wire.OrderStatus.REQ_ID_CONFLICT and not refused.replayed
    assert (refused.deal, refused.order, refused.volume, refused.price) == (0, 0, 0.0, 0.0)
    assert client.acks[first.req_id].status is wire.AckStatus.REQ_ID_CONFLICT
    again = client.send(first._replace(resend=True, deadline_ns=first.deadline_ns + 1))  # same content
    assert again.replayed and (again.deal, again.price) == (done.deal, done.price)
    assert mt5.order_send_calls == 1 and bridge.stats()["req_id_conflicts"] == 1


def test_a_conflict_while_the_first_is_pending_leaves_the_first_alone(bridge, mt5, ctx):
    mt5.faults.order_latency_s = 0.3
    with OrderClient(bridge.router_endpoint, context=ctx) as one, \
            OrderClient(bridge.router_endpoint, context=ctx) as two:
        first = _order(one)
        one.post(first)
        time.sleep(0.05)  # the first is executing on the bridge's order thread
        refused = two.send(first._replace(volume=0.3, comment="another order"))
        assert refused.status is wire.OrderStatus.REQ_ID_CONFLICT
        mine = None
        while mine is None or type(mine) is not wire.OrderResult:
            mine = one.receive(5000)
        assert mine.status is wire.OrderStatus.SENT and mine.volume == 0.1
    assert mt5.order_send_calls == 1


def test_resends_of_unknown_req_ids_never_stall_a_live_order(mt5, ctx, eventually):
    """Twenty RESENDs of ids the bridge never saw wait for the terminal's history as rechecks;
    a live order sent after them is executed long before its 2 s deadline."""
    bridge = started_bridge(mt5, ctx, eventually, reconcile_delay_s=3.0)
    try:
        with OrderClient(bridge.router_endpoint, context=ctx) as client:
            for _ in range(20):
                client.post(_order(client, resend=True, deadline_ns=1))
            live = _order(client, deadline_ns=time.time_ns() + 2_000_000_000)
            result = client.send(live)
            assert result.status is wire.OrderStatus.SENT and result.retcode == 10009
            # served while all twenty look-ups still wait for the terminal's history (a sleep
            # of 3 s each on the order thread would have expired it)
            assert bridge.stats()["rechecks_waiting"] == 20 and bridge.stats()["resends_checked"] == 0
            eventually(lambda: bridge.stats()["resends_checked"] == 20)
            assert bridge.stats()["rechecks_waiting"] == 0 and mt5.order_send_calls == 1
    finally:
        bridge.stop()


def test_a_resend_deferred_then_found_in_the_terminal_is_not_traded_again(mt5, ctx, eventually):
    first_run = started_bridge(mt5, ctx, eventually)
    with OrderClient(first_run.router_endpoint, context=ctx) as client:
        req = _order(client, comment="fc-deferred-1")
        filled = client.send(req)
    first_run.stop()
    second_run = started_bridge(mt5, ctx, eventually, reconcile_delay_s=0.2)
    try:
        with OrderClient(second_run.router_endpoint, context=ctx) as client:
            again = client.send(req._replace(resend=True), ack_timeout_s=2.0)
        assert again.status is wire.OrderStatus.RECONCILED_FILLED and again.deal == filled.deal
        assert mt5.order_send_calls == 1
    finally:
        second_run.stop()


def test_timeout_reconciliation_is_rechecked_not_slept_on(mt5, ctx, eventually):
    bridge = started_bridge(mt5, ctx, eventually, reconcile_delay_s=2.0)
    try:
        mt5.faults.orders.append(OrderFault.TIMEOUT_FILLED)
        with OrderClient(bridge.router_endpoint, context=ctx) as client:
            timed_out = _order(client)
            client.post(timed_out)
            eventually(lambda: bridge.stats()["rechecks_waiting"] == 1)
            other = client.send(_order(client))  # served while the first waits for the history
            assert other.status is wire.OrderStatus.SENT and bridge.stats()["rechecks_waiting"] == 1
            reply = None
            while reply is None or type(reply) is not wire.OrderResult or reply.req_id != timed_out.req_id:
                reply = client.receive(3000)
            assert reply.status is wire.OrderStatus.RECONCILED_FILLED
        assert mt5.order_send_calls == 2
    finally:
        bridge.stop()


def test_orders_that_would_pass_their_deadline_are_refused_at_once(bridge, mt5, ctx):
    mt5.faults.order_latency_s = 0.4
    with OrderClient(bridge.router_endpoint, context=ctx) as client:
        measured = client.send(_order(client))  # teaches the bridge its pace: ~0.4 s an order
        assert measured.status is wire.OrderStatus.SENT
        burst = [_order(client, deadline_ns=time.time_ns() + 1_000_000_000) for _ in range(5)]
        for req in burst:
            client.post(req)
        results = {}
        while len(results) < len(burst):
            reply = client.receive(5000)
            assert reply is not None, f"only {len(results)} of {len(burst)} answered"
            if type(reply) is wire.OrderResult:
                results[reply.req_id] = reply
    statuses = [results[r.req_id].status for r in burst]
    sent = statuses.count(wire.OrderStatus.SENT)
    assert 1 <= sent <= 2 and wire.OrderStatus.EXPIRED not in statuses  # none waited to expire
    assert statuses.count(wire.OrderStatus.OVERLOADED) == len(burst) - sent
    assert mt5.order_send_calls == 1 + sent and bridge.stats()["orders_overloaded"] == len(burst) - sent


def test_account_query_counts_only_the_magic_and_prefix_asked_for(client, mt5, bridge):
    mine = [_order(client, comment=f"fcaaaa0001{i:08x}", type=t, volume=v)
            for i, (t, v) in enumerate([(0, 0.3), (1, 0.1), (0, 0.2)], start=1)]
    others = [_order(client, comment="fcbbbb000100000001", volume=0.5),  # another node's namespace
              _order(client, comment="fcaaaa000100000009", magic=7, volume=0.4)]  # another magic
    for req in mine + others:
        assert client.send(req).retcode == 10009
    client.post_query(wire.AccountQuery(77, 99, "fcaaaa0001", 0))
    state = client.receive(5000)
    assert type(state) is wire.AccountState and state.status is wire.AccountStatus.OK
    (eurusd,) = state.symbols
    assert eurusd.symbol == "EURUSD" and eurusd.positions == 3
    assert (eurusd.long_volume, eurusd.short_volume, eurusd.net_volume) == pytest.approx((0.5, 0.1, 0.4))
    assert state.deals == 3 and state.req_id == 77
    mt5.disconnect()
    client.post_query(wire.AccountQuery(78, 99, "fcaaaa0001", 0))
    down = client.receive(5000)
    assert down.status is wire.AccountStatus.UNAVAILABLE and down.symbols == ()
