"""One module per ``cellwatch`` subcommand; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse

from service.commands import (
    audit,
    demo,
    detect,
    evaluate,
    info,
    keys,
    locate,
    node,
    serve,
    simulate,
    users,
)


def register_all(sub: argparse._SubParsersAction) -> None:
    for module in (info, simulate, detect, locate, evaluate, keys, demo, serve, users, audit, node):
        module.register(sub)
