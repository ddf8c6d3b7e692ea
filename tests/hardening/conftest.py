"""Hypothesis profiles for the fuzz tests.

``make test`` (and CI) replays the same inputs every run (``derandomize``): a landing
must not depend on whether this run's random draw meets a case no earlier run met.
New cases are searched with ``make fuzz`` (``CELLWATCH_FUZZ=explore``: fresh random
inputs each run, as many); each one it finds becomes a fix and a named regression test
(see ``test_a_key_holding_a_newline_is_named_on_one_line``).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("CELLWATCH_FUZZ", "ci"))
