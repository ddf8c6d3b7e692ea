"""One module per ``cellwatch`` subcommand; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse

from service.commands import detect, evaluate, info, simulate


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for module in (info, simulate, detect, evaluate):
        module.register(sub)
