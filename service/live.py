"""The live feed: one publisher side for any thread, Server-Sent Events out to every viewer.

Why SSE rather than WebSocket: the feed only flows server -> browser, EventSource
reconnects by itself and resumes with ``Last-Event-ID``, it carries the session cookie
like any request, and it passes through HTTP proxies unchanged.

Messages are numbered; the last ``replay_size`` are kept so a viewer that reconnects
gets what it missed. Publishing never blocks the caller (the event worker, API request
threads): each subscriber has a bounded queue, and a subscriber too slow to drain it is
disconnected (its browser reconnects and replays from its last id) instead of making
the service buffer without limit.

Message types (``event:`` field; ``data:`` is JSON):

* ``event.created`` / ``event.updated``: ``{"event": <the API's event summary>}``;
* ``event.detections``: the bursts of one event that just arrived, per sensor
  (``{"event_id", "channel", "freq_hz", "tech", "t_s", "sensors": [{"sensor_id",
  "rssi_dbm", "power_dbfs", "snr_db", "n_bursts"}]}``), for the "hunt" view;
* ``sensor.health``: ``{"sensor": <the API's sensor health>}`` when a sensor goes online
  or offline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0


@dataclass(frozen=True, slots=True)
class LiveMessage:
    id: int
    type: str
    data: dict[str, Any]

    def sse(self) -> bytes:
        """The message as one SSE frame (data is one line: JSON escapes newlines)."""
        payload = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        return f"id: {self.id}\nevent: {self.type}\ndata: {payload}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[LiveMessage | None]
    types: frozenset[str] | None
    after_id: int = 0  # messages up to this id were replayed (or came before it subscribed)
    overflowed: bool = False
    n_sent: int = field(default=0)


class LiveHub:
    """Fan-out of live messages; :meth:`publish` from any thread, subscribe on the event loop."""

    def __init__(self, *, queue_size: int = 2000, replay_size: int = 1000, keepalive_s: float = KEEPALIVE_S) -> None:
        if not 0 < replay_size <= queue_size:
            raise ValueError("need 0 < replay_size <= queue_size")
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self._lock = threading.Lock()
        self._next_id = 1
        self._replay: deque[LiveMessage] = deque(maxlen=replay_size)
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.n_published = 0
        self.n_dropped_subscribers = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the event loop the subscribers live on (the app's lifespan does it)."""
        self._loop = loop

    @property
    def n_subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def publish(self, type_: str, data: dict[str, Any]) -> LiveMessage:
        """Number and queue one message for every subscriber; never blocks."""
        with self._lock:
            message = LiveMessage(self._next_id, type_, data)
            self._next_id += 1
            self._replay.append(message)
            self.n_published += 1
            loop = self._loop
            # Scheduled under the lock: the loop runs the fan-outs in id order.
            if loop is not None and not self._closed:
                try:
                    loop.call_soon_threadsafe(self._fan_out, message)
                except RuntimeError:  # the loop is closed: the service is stopping
                    pass
        return message

    def _fan_out(self, message: LiveMessage) -> None:
        for sub in list(self._subscribers):
            if message.id <= sub.after_id or (sub.types is not None and message.type not in sub.types):
                continue
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        sub.overflowed = True
        self._subscribers.discard(sub)
        self.n_dropped_subscribers += 1
        log.warning("live subscriber too slow, disconnected queue_size=%d", self.queue_size)
        while True:  # make room for the end marker
            try:
                sub.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        sub.queue.put_nowait(None)

    def recent(self, after_id: int = 0) -> list[LiveMessage]:
        """The messages still held for replay with ids above ``after_id``."""
        with self._lock:
            return [m for m in self._replay if m.id > after_id]

    def subscribe(self, types: Collection[str] | None = None, last_event_id: int | None = None) -> Subscriber:
        """A new subscriber (on the loop's thread), first fed what it missed after ``last_event_id``."""
        sub = Subscriber(asyncio.Queue(self.queue_size), None if types is None else frozenset(types))
        with self._lock:
            sub.after_id = self._next_id - 1
            if last_event_id is not None:
                for message in self._replay:
                    if message.id > last_event_id and (sub.types is None or message.type in sub.types):
                        sub.queue.put_nowait(message)  # fits: replay_size <= queue_size
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every stream (service shutdown)."""
        self._closed = True
        for sub in list(self._subscribers):
            self._subscribers.discard(sub)
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                self._drop(sub)

    async def stream(self, sub: Subscriber, *, still_allowed: Any = None) -> AsyncIterator[bytes]:
        """SSE bytes for one subscriber: messages, and a comment line every ``keepalive_s``.

        ``still_allowed`` (an async callable) is asked at each keepalive: a session that
        expired or was revoked ends its stream.
        """
        try:
            yield f"retry: 2000\n: cellwatch live feed, last id {self.last_id}\n\n".encode()
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), self.keepalive_s)
                except TimeoutError:
                    if still_allowed is not None and not await still_allowed():
                        return
                    yield b": keepalive\n\n"
                    continue
                if message is None:
                    return
                sub.n_sent += 1
                yield message.sse()
        finally:
            self.unsubscribe(sub)
