"""``cellwatch audit --config F verify|tail``: check the audit log's hash chain, show its last entries.

``verify`` recomputes every row's hash from the first row on; a row edited or deleted
behind the service's back breaks the chain there (exit status 2, naming the row). It
prints the head hash: keep a copy elsewhere (a ticket, a printout) and a later
truncation of the log shows as a head that no longer matches.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from dsp.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="verify the audit log's hash chain, or show its last entries",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="the service's TOML file")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("verify", help="recompute the hash chain")
    tail = actions.add_parser("tail", help="print the last entries (JSON Lines, oldest first)")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.settings import load_settings
    from service.store import open_store

    settings = load_settings(args.config)
    store = open_store(settings.database_url)
    try:
        if args.action == "verify":
            result = store.verify_audit_chain()
            if not result.ok:
                raise InputError(store.engine.url.render_as_string(hide_password=True),
                                 f"audit_log row {result.first_bad_id}",
                                 f"{result.problem} (the {result.n_rows} rows before it are intact)")
            print(f"audit log intact: {result.n_rows} rows, head hash {result.head_hash}")
            return 0
        _, rows = store.list_audit(limit=max(1, args.n))
        for r in reversed(rows):
            when = dt.datetime.fromtimestamp(r.t_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            print(json.dumps({"id": r.id, "time": when, "actor": r.actor, "action": r.action, "target": r.target,
                              "details": r.details}, ensure_ascii=False))
        return 0
    finally:
        store.close()
