"""A threaded rtl_tcp server on loopback that serves a recording's cu8 bytes, for tests.

It speaks the protocol of rtl-sdr's ``rtl_tcp.c``: a 12-byte ``RTL0`` header (tuner type
and gain count, uint32 big-endian), then the raw cu8 stream, written ``chunk_bytes`` at a
time as rtl_tcp forwards librtlsdr's buffers; it reads 5-byte commands and records them
(``commands``) so a test can assert what the client asked for. Serving continues where
the previous connection stopped, so a reconnecting client sees a gap-free file split in
two. Streaming starts once the client has sent its settings (rtl_tcp itself starts at
once; waiting makes the tests deterministic). ``realtime`` paces the bytes at the sample rate the client set (0x02);
``drop_after_bytes`` closes the first connection once that many bytes went out;
``lose_at_bytes``/``lose_bytes`` skip bytes of the file (their time passes) as a server
whose dongle overflowed. After the end of the data the connection idles, like a dongle
that went quiet.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

HEADER = struct.Struct(">4sII")
COMMAND = struct.Struct(">BI")


class RtlTcpTestServer:
    def __init__(
        self,
        data: bytes,
        *,
        tuner_type: int = 5,
        n_gains: int = 29,
        magic: bytes = b"RTL0",
        realtime: bool = False,
        chunk_bytes: int = 16_384,
        sample_rate_hz: int = 2_048_000,
        drop_after_bytes: int | None = None,
        lose_at_bytes: int | None = None,
        lose_bytes: int = 0,
    ) -> None:
        self.data = data
        self.tuner_type = tuner_type
        self.n_gains = n_gains
        self.magic = magic
        self.realtime = realtime
        self.chunk_bytes = chunk_bytes
        self.sample_rate_hz = sample_rate_hz
        self.drop_after_bytes = drop_after_bytes
        self.lose_at_bytes = lose_at_bytes
        self.lose_bytes = lose_bytes
        self.commands: list[tuple[int, int]] = []
        self.n_connections = 0
        self.position = 0  # next byte of ``data`` to send
        self.n_sent = 0
        self._dropped = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def spec(self) -> str:
        return f"rtl_tcp://127.0.0.1:{self.port}"

    def start(self) -> RtlTcpTestServer:
        thread = threading.Thread(target=self._accept_loop, name="rtl_tcp test server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(2.0)
        self._listener.close()

    def __enter__(self) -> RtlTcpTestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def commands_named(self, command: int) -> list[int]:
        with self._lock:
            return [value for cmd, value in self.commands if cmd == command]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.n_connections += 1
                self._connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read_commands(self, conn: socket.socket, closed: threading.Event) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                part = conn.recv(64)
                if not part:
                    break
                buffer += part
                while len(buffer) >= COMMAND.size:
                    command, value = COMMAND.unpack(buffer[: COMMAND.size])
                    buffer = buffer[COMMAND.size :]
                    with self._lock:
                        self.commands.append((command, value))
                        if command == 0x02:
                            self.sample_rate_hz = value
        except OSError:
            pass
        finally:
            closed.set()

    def _serve(self, conn: socket.socket) -> None:
        closed = threading.Event()
        reader = threading.Thread(target=self._read_commands, args=(conn, closed), daemon=True)
        try:
            with self._lock:
                n_commands = len(self.commands)
            conn.sendall(HEADER.pack(self.magic, self.tuner_type, self.n_gains))
            reader.start()
            while len(self.commands) == n_commands and not closed.is_set() and not self._stop.is_set():
                time.sleep(0.001)  # stream once the client has sent its settings
            deadline = time.monotonic()
            while not self._stop.is_set() and not closed.is_set():
                with self._lock:
                    if self.lose_at_bytes is not None and self.position >= self.lose_at_bytes:
                        self.position += self.lose_bytes
                        if self.realtime:
                            deadline += self.lose_bytes / (2 * self.sample_rate_hz)
                        self.lose_at_bytes = None
                    start = self.position
                    n = min(self.chunk_bytes, len(self.data) - start)
                    drop = False
                    if self.drop_after_bytes is not None and not self._dropped:
                        if self.n_sent + n >= self.drop_after_bytes:
                            n = max(0, self.drop_after_bytes - self.n_sent)
                            drop = self._dropped = True
                    rate = self.sample_rate_hz
                if n <= 0 and not drop:
                    closed.wait(0.01)  # the end of the data: idle like a quiet dongle
                    continue
                if self.realtime:
                    deadline += n / (2 * rate)
                    delay = deadline - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                conn.sendall(self.data[start : start + n])
                with self._lock:
                    self.position = start + n
                    self.n_sent += n
                if drop:
                    return
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
