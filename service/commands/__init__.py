"""One module per ``cellwatch`` subcommand; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse

from service.commands import demo, detect, evaluate, info, keys, simulate


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for module in (info, simulate, detect, evaluate, keys, demo):
        module.register(sub)
