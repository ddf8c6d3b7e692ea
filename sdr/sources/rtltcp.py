"""A dongle on another host behind the standard ``rtl_tcp`` server (a Raspberry Pi in the corridor).

The protocol (rtl-sdr's ``rtl_tcp.c``), over one TCP connection:

* on connect the server sends a 12-byte header: ``b"RTL0"``, the tuner type and the
  number of gain steps, both uint32 big-endian;
* then an endless stream of raw cu8 bytes (interleaved I, Q);
* the client sends 5-byte commands, a command byte and a uint32 big-endian parameter:
  0x01 centre frequency (Hz), 0x02 sample rate, 0x03 tuner gain mode (1 = manual),
  0x04 tuner gain (tenths of dB), 0x05 frequency correction (ppm, as two's complement),
  0x08 RTL2832 AGC, 0x0d gain by index, 0x0e bias tee. The server acknowledges nothing.

pyrtlsdr's ``RtlSdrTcpClient`` speaks its own protocol, not this one: a plain socket is
used. A reader thread fills a bounded queue (a slow consumer drops chunks, counted, and
never stalls TCP into the server's own silent drops), chunks are stamped by
:class:`~sdr.sources.base.LiveClock`, a closed or silent connection is reopened with
backoff. rtl_tcp sends what librtlsdr gives it, 256 KiB buffers by default, so samples
arrive in bursts of 55 ms at 2.4 MS/s: the loss detector's threshold is sized on them.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Any

import numpy as np

from sdr.sources.base import LiveSource, SourceError

logger = logging.getLogger(__name__)

HEADER = struct.Struct(">4sII")
COMMAND = struct.Struct(">BI")
MAGIC = b"RTL0"

SET_FREQ = 0x01
SET_SAMPLE_RATE = 0x02
SET_GAIN_MODE = 0x03
SET_GAIN = 0x04
SET_FREQ_CORRECTION = 0x05
SET_IF_GAIN = 0x06
SET_TEST_MODE = 0x07
SET_AGC_MODE = 0x08
SET_DIRECT_SAMPLING = 0x09
SET_OFFSET_TUNING = 0x0A
SET_RTL_XTAL = 0x0B
SET_TUNER_XTAL = 0x0C
SET_GAIN_BY_INDEX = 0x0D
SET_BIAS_TEE = 0x0E

TUNER_NAMES = {0: "unknown", 1: "E4000", 2: "FC0012", 3: "FC0013", 4: "FC2580", 5: "R820T", 6: "R828D"}
# gain steps in tenths of dB, as librtlsdr lists them, for the tuners rtl_tcp servers carry today
TUNER_GAINS_TENTHS_DB: dict[int, tuple[int, ...]] = {
    1: (-10, 15, 40, 65, 90, 115, 140, 165, 190, 215, 240, 290, 340, 420),
    5: (0, 9, 14, 27, 37, 77, 87, 125, 144, 157, 166, 197, 207, 229, 254, 280, 297, 328, 338,
        364, 372, 386, 402, 421, 434, 439, 445, 480, 496),
}
TUNER_GAINS_TENTHS_DB[6] = TUNER_GAINS_TENTHS_DB[5]
SERVER_BUFFER_BYTES = 16 * 32 * 512  # librtlsdr's default transfer, which rtl_tcp forwards whole


def encode_command(command: int, parameter: int) -> bytes:
    """One 5-byte rtl_tcp command; negative parameters (ppm, E4000 gains) as two's complement."""
    return COMMAND.pack(command, parameter & 0xFFFF_FFFF)


class RtlTcpSource(LiveSource):
    """A dongle served by ``rtl_tcp -a HOST -p PORT`` on another machine."""

    default_settle_s = 0.05  # the command crosses the network before the tuner moves

    def __init__(
        self,
        host: str,
        port: int = 1234,
        *,
        spec: str | None = None,
        sensor_id: str | None = None,
        sample_rate_hz: float | None,
        center_freq_hz: int | None,
        gain_db: float | None,
        ppm: float = 0.0,
        allow_agc: bool = False,
        bias_tee: bool = False,
        connect_timeout_s: float = 5.0,
        server_buffer_bytes: int = SERVER_BUFFER_BYTES,
        **live_options: Any,
    ) -> None:
        self._host = host
        self._port = int(port)
        self._bias_tee = bool(bias_tee)
        self._connect_timeout_s = float(connect_timeout_s)
        self._server_buffer_samples = max(1, int(server_buffer_bytes) // 2)
        self._sock: socket.socket | None = None
        self.tuner_type: int | None = None
        self.n_tuner_gains: int | None = None
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        spec = spec or f"rtl_tcp://{address}"
        super().__init__(
            spec,
            sensor_id=sensor_id or address,
            sample_rate_hz=sample_rate_hz,  # type: ignore[arg-type]  # checked by LiveSource
            center_freq_hz=center_freq_hz,  # type: ignore[arg-type]
            gain_db=gain_db,
            ppm=ppm,
            allow_agc=allow_agc,
            **live_options,
        )

    def _burst_samples(self) -> int:
        return max(self._buffer_samples, self._server_buffer_samples)

    # -- LiveSource hooks -----------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout_s)
        except OSError as exc:
            raise SourceError(self._spec, f"cannot connect: {exc.strerror or exc}") from None
        try:
            header = _recv_exact(sock, HEADER.size)
            if header is None:
                raise SourceError(self._spec, "the server closed the connection before its header")
            magic, tuner_type, n_gains = HEADER.unpack(header)
            if magic != MAGIC:
                raise SourceError(self._spec, f"not an rtl_tcp server: header starts {magic!r}, expected {MAGIC!r}")
            self.tuner_type, self.n_tuner_gains = tuner_type, n_gains
            self._sock = sock
            self._configure(tuner_type)
            sock.settimeout(self._stall_timeout_s)
        except (SourceError, OSError) as exc:
            self._sock = None
            sock.close()
            if isinstance(exc, SourceError):
                raise
            raise SourceError(self._spec, f"connection failed during setup: {exc}") from None
        logger.info("rtl_tcp_open source=%s tuner=%s n_gains=%d gain_db=%s",
                    self._spec, TUNER_NAMES.get(tuner_type, tuner_type), n_gains, self._gain_applied_db)

    def _configure(self, tuner_type: int) -> None:
        """Send every setting in one write, so the server applies them together."""
        commands = [(SET_SAMPLE_RATE, self._requested_rate_hz), (SET_FREQ, self._center_freq_hz)]
        if self._ppm_int:
            commands.append((SET_FREQ_CORRECTION, self._ppm_int))
        if self._gain_requested_db is None:
            commands.append((SET_GAIN_MODE, 0))  # tuner AGC: only with allow_agc (a listening test)
            self._gain_applied_db = None
        else:
            tenths = round(self._gain_requested_db * 10)
            steps = TUNER_GAINS_TENTHS_DB.get(tuner_type)
            if steps:
                tenths = min(steps, key=lambda step: abs(step - tenths))
            commands += [(SET_GAIN_MODE, 1), (SET_GAIN, tenths)]
            self._gain_applied_db = tenths / 10
        commands += [(SET_AGC_MODE, 0), (SET_BIAS_TEE, int(self._bias_tee))]
        self._send(*commands)

    def _send(self, *commands: tuple[int, int]) -> None:
        sock = self._sock
        if sock is None:
            raise SourceError(self._spec, "not connected")
        sock.sendall(b"".join(encode_command(command, parameter) for command, parameter in commands))

    def _stream(self) -> None:
        sock = self._sock
        if sock is None:
            return
        n_bytes = 2 * self._buffer_samples
        while not self._stopping.is_set():
            chunk = np.empty(n_bytes, dtype=np.uint8)
            view = chunk.data  # recv_into fills the array in place
            got = 0
            while got < n_bytes:
                try:
                    n = sock.recv_into(view[got:])
                except TimeoutError:
                    raise SourceError(self._spec, f"no samples for {self._stall_timeout_s:g} s") from None
                except OSError as exc:
                    if self._stopping.is_set():
                        return
                    raise SourceError(self._spec, f"connection lost: {exc}") from None
                if n == 0:
                    if self._stopping.is_set():
                        return
                    raise SourceError(self._spec, "the server closed the connection")
                got += n
            self._deliver(chunk, time.monotonic())

    def _interrupt(self) -> None:
        with self._device_lock:
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _send_center_freq(self, center_freq_hz: int) -> None:
        self._send((SET_FREQ, center_freq_hz))


def _recv_exact(sock: socket.socket, n_bytes: int) -> bytes | None:
    """Exactly ``n_bytes``, or None if the peer closed first."""
    buffer = bytearray()
    while len(buffer) < n_bytes:
        part = sock.recv(n_bytes - len(buffer))
        if not part:
            return None
        buffer += part
    return bytes(buffer)
