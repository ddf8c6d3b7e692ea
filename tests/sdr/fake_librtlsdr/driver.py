"""Runs an ``rtlsdr`` source against the fake librtlsdr, in a process of its own.

pyrtlsdr loads librtlsdr once, when it is imported, and keeps it: a test process must
not share that choice with other tests, so each run is a subprocess. pyrtlsdrlib (the
bundled library, which pyrtlsdr tries first) is hidden, so pyrtlsdr takes its documented
fallback, ``$LD_LIBRARY_PATH/librtlsdr.so``, where the test put the fake. Everything
after that is the real code path: ``rtlsdr.RtlSdr`` methods calling into the C library.

Usage: ``python driver.py CONFIG.json OUT.npz``. CONFIG holds ``repo``, ``spec``,
``options`` (keywords for ``open_source``), and when to stop: ``n_delivered`` samples,
or ``idle_s`` without a block, or ``timeout_s``; ``consumer_sleep_s`` slows the consumer;
``tune`` (``after_blocks``, ``center_freq_hz``) retunes the running dongle.
OUT holds the samples and per-block fields, plus ``info`` (JSON): the library pyrtlsdr
loaded, the device class, the states seen, the source's stats and its log lines, or
the error ``open_source`` raised.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time


def main() -> None:
    config = json.loads(open(sys.argv[1], encoding="utf-8").read())
    out_path = sys.argv[2]
    sys.path.insert(0, config["repo"])
    sys.modules["pyrtlsdrlib"] = None  # type: ignore[assignment]  # pyrtlsdr falls back to LD_LIBRARY_PATH

    import numpy as np

    from sdr.sources import open_source

    log_lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_lines.append(f"{record.levelname} {record.name} {record.getMessage()}")

    root = logging.getLogger()
    root.addHandler(Collect())
    root.setLevel(logging.DEBUG)

    info: dict[str, object] = {"log": log_lines}
    blocks = []
    try:
        source = open_source(config["spec"], **config["options"])
    except Exception as exc:
        info["error"] = type(exc).__name__
        info["message"] = str(exc)
    else:
        states = [source.state]
        done = threading.Event()

        def watch_state() -> None:
            while not done.is_set():
                if source.state != states[-1]:
                    states.append(source.state)
                time.sleep(0.002)

        watcher = threading.Thread(target=watch_state, daemon=True)
        watcher.start()
        deadline = time.monotonic() + config.get("timeout_s", 20.0)
        idle_s = config.get("idle_s", 0.5)
        n_delivered = config.get("n_delivered")
        last_block = time.monotonic()
        delivered = 0
        device = None
        while time.monotonic() < deadline:
            block = source.read_block(timeout_s=0.05)
            if block is None:
                if n_delivered is None and blocks and time.monotonic() - last_block > idle_s:
                    break
                continue
            last_block = time.monotonic()
            blocks.append(block)
            delivered += block.n_samples
            if device is None and source._device is not None:
                device = type(source._device)
            if n_delivered is not None and delivered >= n_delivered:
                break
            tune = config.get("tune")
            if tune and len(blocks) == tune["after_blocks"]:
                t_tune = time.monotonic()
                source.tune(tune["center_freq_hz"])
                info["tune_s"] = time.monotonic() - t_tune
            if config.get("consumer_sleep_s"):
                time.sleep(config["consumer_sleep_s"])
        source.close()
        while (block := source.read_block(timeout_s=0.5)) is not None:  # chunks flushed at close
            blocks.append(block)
        done.set()
        watcher.join()
        info.update(
            library=sys.modules["rtlsdr.librtlsdr"].librtlsdr._name,  # the package rebinds rtlsdr.librtlsdr
            device_class=None if device is None else f"{device.__module__}.{device.__qualname__}",
            states=states,
            stats=dataclasses.asdict(source.stats()),
            gain_db=source.gain_db,
            serial=source.serial,
            sensor_id=source.sensor_id,
            sample_rate_hz=source.sample_rate_hz,
        )
    samples = np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.complex64)
    np.savez(
        out_path,
        samples=samples,
        sample_index=np.array([b.sample_index for b in blocks], dtype=np.int64),
        n_samples=np.array([b.n_samples for b in blocks], dtype=np.int64),
        n_dropped=np.array([b.n_dropped for b in blocks], dtype=np.int64),
        t_start_s=np.array([b.t_start_s for b in blocks], dtype=np.float64),
        center_freq_hz=np.array([b.center_freq_hz for b in blocks], dtype=np.int64),
        gain_db=np.array([np.nan if b.gain_db is None else b.gain_db for b in blocks]),
        info=np.array(json.dumps(info)),
    )


if __name__ == "__main__":
    main()
