"""The node's tick feeds: one interface (:class:`Feed`), three sources, per-symbol tick rings."""
from flowchain.feeds.base import DEFAULT_RING_CAPACITY, Feed, FeedState, FeedStats, TickHandler
from flowchain.feeds.batches import TickBatch, TickBatcher
from flowchain.feeds.ring import TickRing

__all__ = ["DEFAULT_RING_CAPACITY", "Feed", "FeedState", "FeedStats", "TickBatch", "TickBatcher",
           "TickHandler", "TickRing"]
