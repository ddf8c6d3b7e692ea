"""``cellwatch keys``: CURVE key pairs for the service and the sensor nodes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "keys",
        help="create CURVE key pairs (the service's, and one per sensor node)",
        description=(
            "Nodes and the service talk over ZeroMQ with CURVE encryption and authentication. "
            "Each party has a key pair: NAME.key (public, safe to copy) and NAME.key_secret "
            "(secret, mode 0600, never leaves its machine). The service accepts only nodes whose "
            "public key files sit in its allowed-keys folder, and a node's key name is its node id. "
            "Existing keys are never overwritten."
        ),
        epilog=(
            "example (installing a site):\n"
            "  cellwatch keys --dir /etc/cellwatch/keys service\n"
            "  cellwatch keys --dir /etc/cellwatch/keys A1 A2 B1 B2     # one per node\n"
            "  then copy A1.key_secret and service.key to node A1, and A1.key to the service's allowed folder"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="key names: 'service' or node ids")
    parser.add_argument("--dir", type=Path, default=Path("keys"), help="folder to write into (default ./keys)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.keys import create_keypair

    for name in args.names:
        public_path, secret_path = create_keypair(args.dir, name)
        print(f"{name}: public {public_path}  secret {secret_path}")
    return 0
