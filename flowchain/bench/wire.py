"""The wire benchmark: ticks bridge -> node and orders node -> bridge, against bare pyzmq.

What it measures, all in one run, on 127.0.0.1 TCP:

* ``decode_ns``: validating one 80-byte tick frame and copying its record into a ring row
  (``wire.decode_tick_into``), median of repetitions; ``feed_message_ns``: the feed's whole
  per-message work (topic lookup, checks, seq, ring append, delivery) without a handler.
* One-way tick latency at ``rate`` ticks/s from a publisher process (paced, timestamps in shared
  memory, read with the same ``CLOCK_MONOTONIC``):
  *bare*: the same frame bytes on a bare PUB, received by a blocking ``recv_multipart`` on a SUB
  (the physical floor); *flowchain*: the frames built by ``wire.encode_tick_into`` (what the
  bridge publishes) -> :class:`~flowchain.feeds.subscriber.ZmqFeed` on uvloop -> the tick in
  the ring (the timestamp is taken in the per-tick handler). Bare and FlowChain repetitions are
  interleaved (A B A B ...), each repetition's p50/p99 come from an HDR histogram, and the
  reported figure is the median over repetitions. A third way, interleaved too, is reported for
  the design choice: ``zmq_asyncio_oneway_*``, ``await recv_multipart()`` with zmq.asyncio on
  the same uvloop (the feed uses ``add_reader`` on the socket's FD instead).
* A sustained run of the FlowChain path for ``seconds`` at ``rate`` ticks/s: ``ticks_sent``,
  ``ticks_lost`` (sent but never in the ring).
* Order round trips, interleaved ``ORDER_BLOCK`` (10) trips at a time, so that every way
  meets the same moments of a noisy machine: *bare*: a blocking DEALER ``send``/``recv`` of an
  ORDER_REQUEST frame echoed by a bare ROUTER in another process; *flowchain*:
  :meth:`flowchain_bridge.OrderClient.send` (encode, send, ACK, RESULT, decode) to a
  :class:`flowchain_bridge.Bridge` on the fake MT5 with zero order latency, in another process
  (every trip a new req_id, a real fill on the fake), on its default config: once the terminal
  has answered fast 8 times in a row, the ACK rides with the RESULT (``ack_defer_us``);
  *flowchain_ack_first*: the same with ``ack_defer_us=0``, every ACK sent before the order runs
  (reported, not budgeted: what the early ACK costs when the terminal answers in microseconds).
"""
from __future__ import annotations

import asyncio
import statistics
import struct
import time
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import zmq
from flowchain_bridge import wire
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.bench.distribution import interleave, median_summary, summarize_ns
from flowchain.bench.environment import cpu, versions

BARE_SYMBOL = "BARE00"
ASYNC_SYMBOL = "ASYNC0"
FEED_SYMBOL = "EURUSD"
SESSION = 0x5EED
BUDGET = {"oneway": 1.3, "order_rtt": 1.5, "ticks_lost": 0}
"""The budgets: one-way at most 1.3x bare (p50 and p99), order RTT at most 1.5x, zero loss."""
ORDER_BLOCK = 10
"""Order round trips of one way per turn of the interleaving (see :func:`measure_order_rtt`)."""
_SEQ_AT = struct.Struct("<Q")
_SEQ_OFFSET = 12  # version u8, type u8, symbol_id u16, session_id u64, then seq u64


# -- the publisher process ---------------------------------------------------------------------
def _publisher_main(conn: Connection, shm_name: str, slots: int) -> None:
    """Serve commands from the parent: probe a topic, publish n paced ticks, stop."""
    shm = SharedMemory(name=shm_name)
    stamps = np.ndarray((2, slots), dtype=np.int64, buffer=shm.buf)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 1_000_000)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    conn.send(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    records = np.zeros(1024, dtype=TICK_DTYPE)
    records["bid"], records["ask"], records["flags"] = 1.08500, 1.08507, 0x86
    records["time_msc"] = 1_704_186_000_000 + np.arange(1024)
    records["time"] = records["time_msc"] // 1000
    flat = memoryview(records.view(np.uint8))
    frame = bytearray(wire.TICK_FRAME_SIZE)
    clock = time.perf_counter_ns
    sleep = time.sleep
    try:
        while True:
            cmd = conn.recv()
            if cmd[0] == "stop":
                return
            if cmd[0] == "probe":  # until the parent has heard one (the slow-joiner problem)
                _, topic, body = cmd
                while not conn.poll(0.005):
                    pub.send_multipart([topic, body])
                conn.recv()
                conn.send("probed")
                continue
            _, lane, topic, first_seq, n, rate = cmd
            send = pub.send_multipart
            row = stamps[lane]
            period = 1e9 / rate
            start = clock() + 1_000_000
            for k in range(n):
                seq = first_seq + k
                wire.encode_tick_into(frame, SESSION, seq, 0, flat, seq & 1023)
                body = bytes(frame)
                due = start + int(k * period)
                now = clock()
                if due > now:  # sleep, never spin: a spinning sender steals a core on CI
                    sleep((due - now) * 1e-9)
                row[seq] = clock()
                send([topic, body])
            conn.send(("sent", n))
    finally:
        pub.close(0)
        ctx.term()
        shm.close()


class _Publisher:
    """The parent's handle on the publisher process."""

    def __init__(self, slots: int) -> None:
        mp = get_context("spawn")
        self.slots = slots
        self.shm = SharedMemory(create=True, size=2 * slots * 8)
        self.stamps = np.ndarray((2, slots), dtype=np.int64, buffer=self.shm.buf)
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_publisher_main, args=(child, self.shm.name, slots),
                               daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the benchmark's publisher process did not start within 60 s")
        self.endpoint: str = self.conn.recv()

    def probe(self, topic: bytes, body: bytes, heard: Callable[[], bool],
              pump: Callable[[], None]) -> None:
        self.conn.send(("probe", topic, body))
        deadline = time.monotonic() + 30
        while not heard():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no probe on topic {topic!r} arrived within 30 s")
            pump()
        self.conn.send("heard")
        self.conn.recv()

    def publish(self, lane: int, topic: bytes, first_seq: int, n: int, rate: float) -> None:
        self.conn.send(("run", lane, topic, first_seq, n, rate))

    def wait_sent(self, timeout: float) -> int:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the publisher did not finish within {timeout:.0f} s")
        return self.conn.recv()[1]

    def close(self) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
        self.shm.close()
        self.shm.unlink()


# -- receivers ----------------------------------------------------------------------------------
class _BareReceiver:
    """A SUB socket read by blocking ``recv_multipart``: the floor."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.tick_topic(BARE_SYMBOL))
        self.sub.connect(endpoint)
        self.heard = False

    def pump_probe(self) -> None:
        if self.sub.poll(10):
            self.sub.recv_multipart()
            self.heard = True

    def drain(self) -> None:
        while self.sub.poll(50):
            self.sub.recv_multipart()

    def receive(self, n: int, stamps: np.ndarray, first_seq: int, timeout_ms: int) -> np.ndarray:
        lat = np.zeros(n, dtype=np.int64)
        recv = self.sub.recv_multipart
        clock = time.perf_counter_ns
        unpack = _SEQ_AT.unpack_from
        self.sub.setsockopt(zmq.RCVTIMEO, timeout_ms)
        got = 0
        try:
            while got < n:
                _, frame = recv()
                now = clock()
                seq = unpack(frame, _SEQ_OFFSET)[0]
                if seq >= first_seq:
                    lat[got] = now - stamps[seq]
                    got += 1
        except zmq.Again:
            pass
        finally:
            self.sub.setsockopt(zmq.RCVTIMEO, -1)
        return lat[:got]


class _AsyncioReceiver:
    """The alternative the feed did not take: ``await sock.recv_multipart()`` with zmq.asyncio
    on the same uvloop (one future per message)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, runner: asyncio.Runner) -> None:
        import zmq.asyncio

        self.runner = runner
        self.sub = zmq.asyncio.Context(ctx).socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.tick_topic(ASYNC_SYMBOL))
        self.sub.connect(endpoint)
        self.heard = False

    def pump_probe(self) -> None:
        async def once() -> None:
            try:
                await asyncio.wait_for(self.sub.recv_multipart(), 0.01)
                self.heard = True
            except asyncio.TimeoutError:
                pass
        self.runner.run(once())

    def drain(self) -> None:
        async def drain() -> None:
            while await self.sub.poll(50):
                await self.sub.recv_multipart()
        self.runner.run(drain())

    def receive(self, n: int, stamps: np.ndarray, first_seq: int, timeout_s: float) -> np.ndarray:
        lat = np.zeros(n, dtype=np.int64)
        clock = time.perf_counter_ns
        unpack = _SEQ_AT.unpack_from
        got = 0

        async def loop() -> None:
            nonlocal got
            recv = self.sub.recv_multipart
            while got < n:
                _, frame = await recv()
                now = clock()
                seq = unpack(frame, _SEQ_OFFSET)[0]
                if seq >= first_seq:
                    lat[got] = now - stamps[seq]
                    got += 1

        async def bounded() -> None:
            try:
                await asyncio.wait_for(loop(), timeout_s)
            except asyncio.TimeoutError:
                pass
        self.runner.run(bounded())
        return lat[:got]

    def close(self) -> None:
        self.sub.close(0)


class _FeedReceiver:
    """The node's ZmqFeed on uvloop; the timestamp is taken when the tick is in the ring."""

    def __init__(self, endpoint: str, runner: asyncio.Runner, ring_capacity: int) -> None:
        from flowchain.feeds.subscriber import ZmqFeed

        self.runner = runner
        self.feed = ZmqFeed(endpoint, [FEED_SYMBOL], heartbeat_interval=3600.0,
                            ring_capacity=ring_capacity)
        self.runner.run(self.feed.start())
        self._lat = np.zeros(1, dtype=np.int64)
        self._got = 0
        self._want = 0
        self._done: asyncio.Future | None = None

    def probe_heard(self) -> bool:
        return self.feed.stats.heartbeats > 0

    def pump(self) -> None:
        self.runner.run(asyncio.sleep(0.01))

    def _handler(self, stamps: np.ndarray) -> Callable:
        clock = time.perf_counter_ns
        lat = self._lat
        want = self._want

        def on_tick(ring, index: int) -> None:
            now = clock()
            got = self._got
            lat[got] = now - stamps[ring.seqs[index]]
            self._got = got + 1
            if got + 1 == want and self._done is not None and not self._done.done():
                self._done.set_result(None)
        return on_tick

    def receive(self, n: int, stamps: np.ndarray, timeout_s: float) -> np.ndarray:
        self._lat = np.zeros(n, dtype=np.int64)
        self._got, self._want = 0, n
        self.feed.on_tick(self._handler(stamps))

        async def wait() -> None:
            self._done = asyncio.get_running_loop().create_future()
            if self._got >= n:
                return
            try:
                await asyncio.wait_for(self._done, timeout_s)
            except asyncio.TimeoutError:
                pass
        self.runner.run(wait())
        self.feed.on_tick(None)
        return self._lat[:self._got]

    def close(self) -> None:
        self.runner.run(self.feed.stop())


# -- micro-benchmarks -----------------------------------------------------------------------------
def _per_call_ns(fn: Callable[[], object], n: int, reps: int = 5) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def measure_decode(n: int = 200_000) -> dict[str, float]:
    """Return ``decode_ns`` (validate + copy one tick frame into a ring row) and
    ``feed_message_ns`` (the feed's whole per-message work, no handler)."""
    from flowchain.feeds.subscriber import ZmqFeed

    record = np.zeros(1, dtype=TICK_DTYPE)
    record[0] = (1_704_186_000, 1.085, 1.08507, 0.0, 0, 1_704_186_000_123, 0x86, 0.0)
    frame = wire.encode_tick(SESSION, 1, 0, record.tobytes())
    ring = np.zeros(1024, dtype=TICK_DTYPE)
    flat = memoryview(ring.view(np.uint8))
    decode = wire.decode_tick_into
    decode_ns = _per_call_ns(lambda: decode(frame, flat, 7), n)
    feed = ZmqFeed("tcp://127.0.0.1:1", [FEED_SYMBOL], ring_capacity=1024)
    topic = wire.tick_topic(FEED_SYMBOL)
    frames = [wire.encode_tick(SESSION, s, 0, record.tobytes()) for s in range(1, n * 5 + 2)]
    it = iter(frames)
    on_message = feed.on_message
    message_ns = _per_call_ns(lambda: on_message([topic, next(it)]), n)
    return {"decode_ns": round(decode_ns, 1), "feed_message_ns": round(message_ns, 1)}


def _start_helper(target: Callable[..., None], name: str, *args: object):
    mp = get_context("spawn")
    conn, child = mp.Pipe()
    proc = mp.Process(target=target, args=(child, *args), daemon=True, name=name)
    proc.start()
    if not conn.poll(60):
        _stop_helper(conn, proc)
        raise RuntimeError(f"the benchmark's {name} process did not start within 60 s")
    endpoint = conn.recv()
    if not endpoint:
        _stop_helper(conn, proc)
        raise RuntimeError(f"the benchmark's {name} process started but its server never "
                           "became ready (30 s)")
    return conn, proc, endpoint


def _stop_helper(conn: Connection, proc) -> None:
    try:
        conn.send("stop")
    except OSError:
        pass
    proc.join(10)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)


def _bridge_main(conn: Connection, ack_defer_us: float | None = None) -> None:
    """A bridge on the fake MT5 (zero order latency) until the parent says stop; its default
    config unless ``ack_defer_us`` is given."""
    from flowchain_bridge import Bridge, BridgeConfig, FakeMetaTrader5

    options = {} if ack_defer_us is None else {"ack_defer_us": ack_defer_us}
    config = BridgeConfig(symbols=[FEED_SYMBOL], pub_endpoint="tcp://127.0.0.1:*",
                          router_endpoint="tcp://127.0.0.1:*", reconcile_delay_s=0.0,
                          allow_unauthenticated_orders=True, **options)  # the fake, on loopback
    bridge = Bridge(FakeMetaTrader5(seed=3), config).start()
    deadline = time.monotonic() + 30
    while not bridge.ready and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.send(bridge.router_endpoint if bridge.ready else "")
    try:
        conn.recv()
    finally:
        bridge.stop()


def _bare_trips(dealer: zmq.Socket, body: bytes, out: np.ndarray) -> None:
    """Time ``len(out)`` blocking echo round trips into ``out`` (ns)."""
    clock = time.perf_counter_ns
    for i in range(len(out)):
        t0 = clock()
        dealer.send(body)
        dealer.recv()
        out[i] = clock() - t0


def _order_trips(client, out: np.ndarray) -> None:
    """Time ``len(out)`` orders through ``client`` into ``out`` (ns); each must fill."""
    clock = time.perf_counter_ns
    for i in range(len(out)):
        req = wire.OrderRequest(client.next_req_id(), time.time_ns() + 5_000_000_000,
                                FEED_SYMBOL, i & 1, 0.01, type_filling=1, magic=7)
        t0 = clock()
        result = client.send(req)
        out[i] = clock() - t0
        if result.retcode != 10009:
            raise RuntimeError(f"benchmark order {req.req_id} came back {result.status.name} "
                               f"retcode {result.retcode} ({result.comment!r}); it needs fills")


def interleave_blocks(ways: dict[str, Callable[[np.ndarray], None]], trips: int,
                      block: int, rotation: int = 0) -> dict[str, np.ndarray]:
    """One repetition of every way, taken ``block`` trips at a time in turn (A B C A B C ...,
    the first way rotating from round to round), so that every way meets the same moments of
    a noisy machine; return each way's ``trips`` latencies (ns).

    Each callable fills the array it is given with that many timed trips.
    """
    lat = {name: np.zeros(trips, dtype=np.int64) for name in ways}
    names = list(ways)
    for start in range(0, trips, block):
        turn = (rotation + start // block) % len(names)
        for name in names[turn:] + names[:turn]:
            ways[name](lat[name][start:start + block])
    return lat


def measure_order_rtt(trips: int, reps: int, warmup: int = 200,
                      block: int = ORDER_BLOCK) -> dict[str, list[dict[str, int]]]:
    """Interleave a bare DEALER/ROUTER echo, the node's order client -> bridge (fake MT5)
    -> RESULT, and the same with every ACK sent at once (``ack_defer_us=0``, a second bridge
    process), ``block`` trips of each in turn; return one HDR summary per repetition of each.

    Parameters
    ----------
    trips : int
        Round trips per repetition, each way (at least 10).
    reps : int
        Repetitions of each way (at least 5).
    warmup : int
        Untimed round trips of each way before the first repetition.
    block : int
        Round trips of one way before the next way's turn (at least 1). Short turns let the
        ways share the machine's moments: its slow spells last milliseconds to seconds, and a
        whole repetition per turn (hundreds of ms) let one way take a spell the other missed.

    Returns
    -------
    dict
        ``{"bare": [...], "flowchain": [...], "flowchain_ack_first": [...]}``, one summary
        (count, p50/p99/p99.9/max ns) per repetition.

    Raises
    ------
    ValueError
        If ``reps`` < 5, ``trips`` < 10 or ``block`` < 1.
    RuntimeError
        If a helper process does not start or an order does not fill.
    """
    from flowchain_bridge import OrderClient

    if reps < 5 or trips < 10 or block < 1:
        raise ValueError(f"order benchmark: need repetitions >= 5, trips >= 10 and block >= 1, "
                         f"got {reps}, {trips} and {block}")
    helpers = []
    try:
        helpers.append(_start_helper(_echo_main, "echo"))
        helpers.append(_start_helper(_bridge_main, "bridge"))
        helpers.append(_start_helper(_bridge_main, "bridge-ack-first", 0.0))
    except RuntimeError:
        for conn, proc, _ in helpers:
            _stop_helper(conn, proc)
        raise
    (_, _, echo_endpoint), (_, _, bridge_endpoint), (_, _, ack_first_endpoint) = helpers
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(echo_endpoint)
    client = OrderClient(bridge_endpoint, context=ctx)
    ack_first = OrderClient(ack_first_endpoint, context=ctx)
    body = wire.encode_order_request(wire.OrderRequest(1, time.time_ns() + 10**10, FEED_SYMBOL,
                                                       0, 0.01))
    ways: dict[str, Callable[[np.ndarray], None]] = {
        "bare": lambda out: _bare_trips(dealer, body, out),
        "flowchain": lambda out: _order_trips(client, out),
        "flowchain_ack_first": lambda out: _order_trips(ack_first, out),
    }
    try:
        for way in ways.values():
            way(np.zeros(warmup, dtype=np.int64))
        out: dict[str, list[dict[str, int]]] = {name: [] for name in ways}
        for rep in range(reps):
            for name, lat in interleave_blocks(ways, trips, block, rotation=rep).items():
                out[name].append(summarize_ns(lat))
        return out
    finally:
        client.close()
        ack_first.close()
        dealer.close(0)
        ctx.term()
        for conn, proc, _ in helpers:
            _stop_helper(conn, proc)


def _echo_main(conn: Connection) -> None:
    """A bare ROUTER that echoes every message until the parent says stop."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    conn.send(router.getsockopt_string(zmq.LAST_ENDPOINT))
    router.setsockopt(zmq.RCVTIMEO, 200)
    try:
        while not conn.poll(0):
            try:
                router.send_multipart(router.recv_multipart())
            except zmq.Again:
                continue
    finally:
        router.close(0)
        ctx.term()


# -- the whole benchmark --------------------------------------------------------------------------
def run(seconds: float = 10.0, rate: float = 20_000.0, repetitions: int = 5,
        rep_seconds: float = 1.0, order_trips: int = 2000,
        progress: Callable[[str], None] | None = None) -> dict:
    """Run every measurement and return the JSON-ready result.

    Parameters
    ----------
    seconds : float
        Length of the sustained loss run (20,000 ticks/s for 10 s by default).
    rate : float
        Ticks per second the publisher sends.
    repetitions : int
        Interleaved repetitions of each way (at least 5).
    rep_seconds : float
        Length of one latency repetition.
    order_trips : int
        Order round trips per repetition.
    progress : callable, optional
        Called with a line of text as each phase starts.

    Raises
    ------
    ValueError
        If a parameter is out of range.
    RuntimeError
        If a helper process does not start or a probe never arrives.
    """
    if repetitions < 5 or seconds <= 0 or rate <= 0 or rep_seconds <= 0 or order_trips < 10:
        raise ValueError(f"wire benchmark: need repetitions >= 5, order_trips >= 10 and positive "
                         f"seconds/rate/rep_seconds; got {repetitions}, {order_trips}, {seconds}, "
                         f"{rate}, {rep_seconds}")
    import uvloop

    say = progress or (lambda line: None)
    rep_ticks = max(100, int(rate * rep_seconds))
    sustained = max(100, int(rate * seconds))
    slots = repetitions * rep_ticks + sustained + 16
    result: dict = {"rate_ticks_per_s": rate, "repetitions": repetitions, "rep_ticks": rep_ticks}
    say("decode micro-benchmark")
    result.update(measure_decode())
    publisher = _Publisher(slots)
    ctx = zmq.Context()
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    bare = _BareReceiver(ctx, publisher.endpoint)
    feed = _FeedReceiver(publisher.endpoint, runner, ring_capacity=65_536)
    aio = _AsyncioReceiver(ctx, publisher.endpoint, runner)
    bare_topic, feed_topic = wire.tick_topic(BARE_SYMBOL), wire.tick_topic(FEED_SYMBOL)
    aio_topic = wire.tick_topic(ASYNC_SYMBOL)
    try:
        say("connecting (slow-joiner probes)")
        probe = wire.encode_tick(SESSION, 0, 0, bytes(TICK_DTYPE.itemsize))
        publisher.probe(bare_topic, probe, lambda: bare.heard, bare.pump_probe)
        bare.drain()
        publisher.probe(aio_topic, probe, lambda: aio.heard, aio.pump_probe)
        aio.drain()
        up = wire.HeartbeatState.CONNECTED | wire.HeartbeatState.INITIALIZED  # a terminal that is up
        beat = wire.encode_heartbeat(SESSION, 0, 0, int(up | wire.HeartbeatState.TRADE_ALLOWED))
        publisher.probe(wire.heartbeat_topic(FEED_SYMBOL), beat, feed.probe_heard, feed.pump)
        feed.pump()
        timeout = rep_seconds * 4 + 5

        def oneway(lane: int, topic: bytes,
                   receive: Callable[[int, np.ndarray, int], np.ndarray]) -> Callable[[int], dict]:
            """One repetition of a way: publish ``rep_ticks`` on ``topic``, summarize."""
            next_seq = 1

            def measure(rep: int) -> dict[str, int]:
                nonlocal next_seq
                publisher.publish(lane, topic, next_seq, rep_ticks, rate)
                lat = receive(rep_ticks, publisher.stamps[lane], next_seq)
                publisher.wait_sent(timeout)
                next_seq += rep_ticks
                return summarize_ns(lat)
            return measure

        oneway_reps = interleave({
            "bare_oneway": oneway(0, bare_topic, lambda n, stamps, first: bare.receive(
                n, stamps, first, int(timeout * 1000))),
            "flowchain_oneway": oneway(1, feed_topic, lambda n, stamps, first: feed.receive(
                n, stamps, timeout)),
            "zmq_asyncio_oneway": oneway(0, aio_topic, lambda n, stamps, first: aio.receive(
                n, stamps, first, timeout)),
        }, repetitions, before_each=lambda rep: say(
            f"one-way repetition {rep + 1}/{repetitions}: bare, flowchain, zmq.asyncio"))
        say(f"sustained flowchain run: {sustained:,} ticks at {rate:,.0f}/s")
        before = feed.feed.ring(FEED_SYMBOL).count
        feed_seq = 1 + repetitions * rep_ticks
        publisher.publish(1, feed_topic, feed_seq, sustained, rate)
        lat = feed.receive(sustained, publisher.stamps[1], seconds * 2 + 10)
        sent = publisher.wait_sent(seconds * 2 + 10)
        delivered = feed.feed.ring(FEED_SYMBOL).count - before
        result["ticks_sent"] = sent
        result["ticks_lost"] = sent - delivered
        result["sustained"] = summarize_ns(lat) if len(lat) else {}
        result["feed_stats"] = feed.feed.stats.as_dict()
    finally:
        feed.close()
        aio.close()
        runner.close()
        bare.sub.close(0)
        ctx.term()
        publisher.close()
    for prefix, reps in oneway_reps.items():
        for key, value in median_summary(reps, ("p50_ns", "p99_ns")).items():
            result[f"{prefix}_{key}"] = value
        result[f"{prefix}_reps"] = reps
    say("order round trips: bare echo, then order client -> bridge (fake MT5) -> RESULT")
    rtt = measure_order_rtt(order_trips, repetitions)
    for way in ("bare", "flowchain", "flowchain_ack_first"):
        for key, value in median_summary(rtt[way], ("p50_ns", "p99_ns")).items():
            result[f"{way}_order_rtt_{key}"] = value
        result[f"{way}_order_rtt_reps"] = rtt[way]
    for path in ("oneway", "order_rtt"):
        for q in ("p50", "p99"):
            result[f"{path}_{q}_ratio"] = round(
                result[f"flowchain_{path}_{q}_ns"] / result[f"bare_{path}_{q}_ns"], 3)
    result["budget"] = dict(BUDGET)
    result["within_budget"] = (
        result["oneway_p50_ratio"] <= BUDGET["oneway"]
        and result["oneway_p99_ratio"] <= BUDGET["oneway"]
        and result["order_rtt_p50_ratio"] <= BUDGET["order_rtt"]
        and result["order_rtt_p99_ratio"] <= BUDGET["order_rtt"]
        and result["ticks_lost"] == 0)
    result["versions"] = versions()
    result["cpu"] = cpu()
    return result
