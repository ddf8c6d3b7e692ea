"""Pure signal processing: IQ arrays in, bursts out; waveform synthesis; cross-process records.

This package imports none of cellwatch's other packages, does no I/O, reads no
clock and configures no logging.
"""
