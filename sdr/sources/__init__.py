"""Radio sources behind one interface: a local dongle, an rtl_tcp server, a recording.

``open_source("rtlsdr:00000042" | "rtl_tcp://pi-corridor:1234" | "replay:rec.sigmf-meta", ...)``
returns an opened :class:`Source` yielding :class:`~dsp.records.IQBlock` s. pyrtlsdr is
imported only when an ``rtlsdr`` source opens. See :mod:`sdr.sources.base`.
"""

from sdr.sources.base import (
    RETRYING,
    RUNNING,
    SOURCE_KINDS,
    STOPPED,
    LiveClock,
    LiveSource,
    Source,
    SourceError,
    SourceSpec,
    SourceState,
    SourceStats,
    create_source,
    open_source,
    parse_source_spec,
)

__all__ = [
    "RETRYING",
    "RUNNING",
    "SOURCE_KINDS",
    "STOPPED",
    "LiveClock",
    "LiveSource",
    "Source",
    "SourceError",
    "SourceSpec",
    "SourceState",
    "SourceStats",
    "create_source",
    "open_source",
    "parse_source_spec",
]
