"""The replay feed: MT5 ticks from a file, as fast as possible or at N x real time.

Three formats are read:

* **MT5 CSV**: a header naming some of the ``copy_ticks`` fields (``time, bid, ask, last,
  volume, time_msc, flags, volume_real``), comma or tab separated, optionally a ``symbol``
  column. ``bid`` and ``ask`` are required, and ``time_msc`` or ``time``; the others default to 0.
* **HistData CSV** (no header): ``YYYYMMDD HHMMSSmmm,bid,ask,vol``. HistData stamps its ticks in
  EST without daylight saving (UTC-5); ``histdata_utc_offset_hours`` converts them to UTC.
* **Parquet** with the MT5 CSV columns, when ``pyarrow`` is installed.

The file is parsed once, when the feed is built, into one array of the MT5 dtype (so pacing is
exact and the replay itself allocates nothing per tick); memory is 60 bytes per tick. A row that
cannot be a tick is never fatal: it is skipped, counted in ``stats.rejects`` under its reason, and
the rows after it are read as usual; the first few are kept as ``file:line: reason: detail`` in
``stats.reject_examples``. The reasons:

``field_count``, ``not_a_number``, ``bad_timestamp``, ``negative_value``
    The row cannot be read as a tick (a missing field, text where a number belongs, a bad or
    negative time or one beyond 2^63-1, a negative volume or flags).
``non_finite_price``, ``non_positive_price``, ``crossed_price``, ``volume_out_of_range``
    The tick breaks a quote rule (:func:`flowchain_bridge.ticks.tick_fault`, the rules the wire decoder
    and the validator apply): a NaN or infinite value, a zero or negative price, bid above ask,
    a volume out of range.
``time_backwards``, ``time_ahead``
    The row is out of time order among its symbol's rows. The reader keeps the largest set of
    each symbol's rows that is in time order (a longest non-decreasing run of ``time_msc``), so
    one row misdated far ahead costs that row only, never the rows after it: a skipped row
    earlier than a tick before it is ``time_backwards``, one later than the ticks after it is
    ``time_ahead``.
``unknown_symbol``
    A ``symbol`` column names a symbol the feed was not asked for, or is empty in the row (a
    file whose symbol column is empty in every row is refused).
"""
from __future__ import annotations

import asyncio
import bisect
import csv
import datetime as dt
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE, TICK_FAULTS, tick_fault

from flowchain.feeds.base import DEFAULT_RING_CAPACITY, Feed, FeedStats

MT5_FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
_HISTDATA_LINE = re.compile(r"^\s*\d{8} \d{9}\s*[,;]")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_FAULT_REASONS = {"non_finite": "non_finite_price", "non_positive": "non_positive_price",
                  "crossed": "crossed_price", "volume_out_of_range": "volume_out_of_range"}
assert set(_FAULT_REASONS) == set(TICK_FAULTS)

Row = tuple[int, float, float, float, int, int, int, float]


class ReplayFeed(Feed):
    """Replay the ticks of one file in file order.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``/``.txt`` (MT5 or HistData, detected from the first line) or ``.parquet`` file.
    symbol : str, optional
        The symbol of a file without a ``symbol`` column (required then).
    symbols : sequence of str, optional
        For a file with a ``symbol`` column: deliver only these (rows of others are counted as
        ``unknown_symbol``); default: every symbol in the file, in order of first appearance.
    speed : float or None, optional
        ``None`` replays as fast as possible; ``N`` replays at N x the recorded pace.
    histdata_utc_offset_hours : float, optional
        The UTC offset of HistData timestamps (HistData uses EST, -5).
    ring_capacity : int, optional
        Ticks each ring keeps.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the header lacks a required column, no symbol is known, or ``speed`` is not positive.
    ImportError
        If ``path`` is Parquet and ``pyarrow`` is not installed (the message says how to fix it).
    """

    def __init__(self, path: str | os.PathLike[str], symbol: str | None = None,
                 symbols: Sequence[str] | None = None, speed: float | None = None,
                 histdata_utc_offset_hours: float = -5.0,
                 ring_capacity: int = DEFAULT_RING_CAPACITY) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"ReplayFeed {path}: speed must be a positive multiple of real time "
                             f"or None (as fast as possible), got {speed}")
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"ReplayFeed: no tick file at {self.path!r}")
        stats = FeedStats()
        named = _read(self.path, stats, histdata_utc_offset_hours)
        has_symbols = any(sym is not None for sym, *_ in named)
        if has_symbols:
            chosen = list(symbols) if symbols else list(dict.fromkeys(
                sym for sym, *_ in named if sym))
            if not chosen:
                raise ValueError(f"ReplayFeed {self.path}: the symbol column holds no symbol; "
                                 "fill it in (EURUSD, ...) or drop the column and name the "
                                 "file's one symbol")
        else:
            if symbol is None:
                raise ValueError(f"ReplayFeed {self.path}: the file has no 'symbol' column; pass "
                                 "symbol='EURUSD' (the symbol its ticks belong to)")
            chosen = [symbol]
        super().__init__(chosen, ring_capacity)
        self.stats = stats
        self.speed = speed
        ids = {name: i for i, name in enumerate(self.symbols)}
        rows_of: dict[int, list[int]] = {}
        sids: list[int] = []
        for k, (sym, where, _row) in enumerate(named):
            sid = ids.get(sym if sym is not None else self.symbols[0])
            sids.append(-1 if sid is None else sid)
            if sid is None:
                stats.reject("unknown_symbol", where, "the symbol column is empty" if not sym
                             else f"symbol {sym!r} is not in {list(ids)}")
            else:
                rows_of.setdefault(sid, []).append(k)
        kept = [False] * len(named)
        for rows in rows_of.values():
            _keep_in_time_order([named[k][2][5] for k in rows], rows, kept, named, stats)
        keep_ids: list[int] = []
        records: list[Row] = []
        for k, (_, _, row) in enumerate(named):
            if kept[k]:
                keep_ids.append(sids[k])
                records.append(row)
        self._ticks = np.array(records, dtype=TICK_DTYPE) if records else np.zeros(0, TICK_DTYPE)
        self._raw = memoryview(self._ticks.view(np.uint8))
        self._ids = keep_ids
        self._ring_list = [self.rings[s] for s in self.symbols]
        self.sent = 0
        """Ticks delivered so far (also the next tick's sequence number)."""

    @property
    def total(self) -> int:
        """Ticks the file holds after rejects."""
        return len(self._ids)

    def pump(self, n: int) -> int:
        """Deliver up to ``n`` ticks now, synchronously.

        Returns
        -------
        int
            Ticks delivered (0 once the file is exhausted).
        """
        start = self.sent
        end = min(len(self._ids), start + n)
        raw, ids, rings = self._raw, self._ids, self._ring_list
        for i in range(start, end):
            ring = rings[ids[i]]
            self._deliver(ring, ring.append_record(raw[i * 60:i * 60 + 60], i))
        self.sent = end
        return end - start

    async def _run(self) -> None:
        sleep = asyncio.sleep
        total = len(self._ids)
        if self.speed is None or total == 0:
            while self.pump(512):
                await sleep(0)
            return
        msc = self._ticks["time_msc"]
        first = int(msc[0])
        started = time.perf_counter()
        while self.sent < total:
            due_ms = first + (time.perf_counter() - started) * 1000.0 * self.speed
            end = int(np.searchsorted(msc, due_ms, side="right")) if self.sent < total else total
            if end > self.sent:
                self.pump(min(end - self.sent, 4096))
                await sleep(0)
            else:
                ahead_ms = int(msc[self.sent]) - due_ms
                await sleep(min(max(ahead_ms / 1000.0 / self.speed, 0.0), 0.25))


# -- time order ------------------------------------------------------------------------------
def _keep_in_time_order(times: list[int], rows: list[int], kept: list[bool],
                        named: list, stats: FeedStats) -> None:
    """Mark the rows (of one symbol, in file order) of a longest non-decreasing run of
    ``times`` as kept (of several, the one of the earliest rows); count every other one as
    ``time_backwards`` or ``time_ahead``."""
    n = len(times)
    if all(times[i] <= times[i + 1] for i in range(n - 1)):
        for k in rows:
            kept[k] = True
        return
    # run_from[i]: the longest non-decreasing run of times that starts at row i (patience
    # sorting from the end); then the earliest rows that still allow a longest run are kept.
    tails: list[int] = []
    run_from = [0] * n
    for i in range(n - 1, -1, -1):
        j = bisect.bisect_right(tails, -times[i])
        if j == len(tails):
            tails.append(-times[i])
        else:
            tails[j] = -times[i]
        run_from[i] = j + 1
    need, last = len(tails), None
    in_run = [False] * n
    for i, t in enumerate(times):
        if need and run_from[i] >= need and (last is None or t >= last):
            in_run[i] = True
            need -= 1
            last = t
    latest = None
    for i, t in enumerate(times):
        where = named[rows[i]][1]
        if in_run[i]:
            kept[rows[i]] = True
            latest = t
        elif latest is not None and t < latest:
            stats.reject("time_backwards", where,
                         f"time_msc {t} is before the previous tick's {latest}")
        else:
            stats.reject("time_ahead", where,
                         f"time_msc {t} is after the ticks that follow it in the file")


# -- parsing ---------------------------------------------------------------------------------
def _read(path: str, stats: FeedStats,
          utc_offset_hours: float) -> list[tuple[str | None, str, Row]]:
    if path.lower().endswith((".parquet", ".pq")):
        return list(_read_parquet(path, stats))
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline()
        fh.seek(0)
        if _HISTDATA_LINE.match(first):
            return list(_read_histdata(path, fh, stats, utc_offset_hours))
        return list(_read_mt5_csv(path, fh, stats))


def _read_mt5_csv(path: str, fh: Iterable[str],
                  stats: FeedStats) -> Iterator[tuple[str | None, str, Row]]:
    lines = iter(fh)
    header_line = next(lines, "")
    delimiter = "\t" if header_line.count("\t") > header_line.count(",") else ","
    header = [h.strip().strip("<>").lower() for h in next(csv.reader([header_line],
                                                                     delimiter=delimiter), [])]
    columns = {name: i for i, name in enumerate(header)}
    missing = [c for c in ("bid", "ask") if c not in columns]
    if missing or ("time_msc" not in columns and "time" not in columns):
        raise ValueError(
            f"{path}:1: the header {header} lacks {missing or ['time_msc or time']}; an MT5 tick "
            f"CSV needs bid, ask and time_msc (or time) among {list(MT5_FIELDS)}, or use the "
            "HistData format 'YYYYMMDD HHMMSSmmm,bid,ask,vol' without a header")
    reader = csv.reader(lines, delimiter=delimiter)
    width = len(header)
    for lineno, fields in enumerate(reader, start=2):
        where = f"{path}:{lineno}"
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != width:
            stats.reject("field_count", where, f"{len(fields)} fields, the header has {width}")
            continue
        values = {}
        bad = None
        for name in MT5_FIELDS:
            i = columns.get(name)
            if i is None:
                continue
            text = fields[i].strip()
            try:
                values[name] = (int(text) if name in ("time", "volume", "time_msc", "flags")
                                else float(text))
            except ValueError:
                bad = f"{name}={text!r} is not a number"
                break
        if bad is not None:
            stats.reject("not_a_number", where, bad)
            continue
        if "time_msc" not in values:
            values["time_msc"] = values["time"] * 1000
        values.setdefault("time", values["time_msc"] // 1000)
        row = _row(values, stats, where)
        if row is not None:
            sym = fields[columns["symbol"]].strip() if "symbol" in columns else None
            yield sym, where, row  # (an empty symbol is counted as unknown_symbol)


def _read_histdata(path: str, fh: Iterable[str], stats: FeedStats,
                   utc_offset_hours: float) -> Iterator[tuple[str | None, str, Row]]:
    offset_ms = int(round(utc_offset_hours * 3_600_000))
    for lineno, line in enumerate(fh, start=1):
        where = f"{path}:{lineno}"
        text = line.strip()
        if not text:
            continue
        fields = [f.strip() for f in re.split(r"[,;]", text)]
        if len(fields) != 4:
            stats.reject("field_count", where, f"{len(fields)} fields, HistData has 4")
            continue
        stamp = fields[0]
        try:
            when = dt.datetime.strptime(stamp[:15], "%Y%m%d %H%M%S").replace(
                tzinfo=dt.timezone.utc)
            millis = int(stamp[15:18])
            if len(stamp) != 18:
                raise ValueError(stamp)
        except ValueError:
            stats.reject("bad_timestamp", where,
                         f"{stamp!r} is not 'YYYYMMDD HHMMSSmmm'")
            continue
        time_msc = (when - _EPOCH) // dt.timedelta(milliseconds=1) + millis - offset_ms
        try:
            bid, ask, vol = float(fields[1]), float(fields[2]), float(fields[3])
        except ValueError:
            stats.reject("not_a_number", where, f"bid/ask/vol {fields[1:]!r}")
            continue
        row = _row({"time": time_msc // 1000, "time_msc": time_msc, "bid": bid, "ask": ask,
                    "volume": int(vol) if math.isfinite(vol) and vol >= 0 else 0,
                    "volume_real": vol, "flags": 0x06}, stats, where)
        if row is not None:
            yield None, where, row


def _read_parquet(path: str, stats: FeedStats) -> Iterator[tuple[str | None, str, Row]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"ReplayFeed {path}: reading Parquet needs pyarrow, which is not installed; "
            "run `pip install pyarrow` or convert the file to an MT5 tick CSV") from None
    table = pq.read_table(path)
    data = table.to_pydict()
    names = {n.lower(): n for n in data}
    if "bid" not in names or "ask" not in names or (
            "time_msc" not in names and "time" not in names):
        raise ValueError(f"{path}: the Parquet columns {list(data)} lack bid, ask or "
                         f"time_msc/time; expected the MT5 tick fields {list(MT5_FIELDS)}")
    for i in range(table.num_rows):
        where = f"{path}:row {i}"
        values = {f: data[names[f]][i] for f in MT5_FIELDS if f in names}
        if any(v is None for v in values.values()):
            stats.reject("not_a_number", where, "a null field")
            continue
        if "time_msc" not in values:
            values["time_msc"] = int(values["time"]) * 1000
        values.setdefault("time", int(values["time_msc"]) // 1000)
        row = _row(values, stats, where)
        if row is not None:
            sym = (data[names["symbol"]][i] or "") if "symbol" in names else None
            yield sym, where, row


def _row(values: dict, stats: FeedStats, where: str) -> Row | None:
    """Validate one tick's fields; return the record tuple or count the reject."""
    bid, ask = float(values["bid"]), float(values["ask"])
    last, volume_real = float(values.get("last", 0.0)), float(values.get("volume_real", 0.0))
    fault = tick_fault(bid, ask, last, max(0, int(values.get("volume", 0))), volume_real)
    if fault:
        stats.reject(_FAULT_REASONS[TICK_FAULTS[fault - 1]], where,
                     f"bid={bid} ask={ask} last={last} volume_real={volume_real}")
        return None
    for name in ("time", "time_msc"):  # int64 in the tick record
        if int(values.get(name, 0)) >= 1 << 63:
            stats.reject("bad_timestamp", where, f"{name}={values[name]} is beyond 2^63-1 "
                         "(time_msc counts milliseconds since 1970)")
            return None
    for name in ("volume", "flags", "time_msc"):
        if int(values.get(name, 0)) < 0:
            stats.reject("negative_value" if name != "time_msc" else "bad_timestamp", where,
                         f"{name}={values[name]}")
            return None
    if int(values.get("flags", 0)) > 0xFFFFFFFF or int(values.get("volume", 0)) >= 1 << 64:
        stats.reject("not_a_number", where, "flags or volume out of range")
        return None
    return (int(values["time"]), float(values["bid"]), float(values["ask"]),
            float(values.get("last", 0.0)), int(values.get("volume", 0)),
            int(values["time_msc"]), int(values.get("flags", 0)),
            float(values.get("volume_real", 0.0)))
