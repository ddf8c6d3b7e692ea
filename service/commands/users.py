"""``cellwatch users --config F add|list|passwd|set-role|disable|enable``: the service's accounts.

Creates the first admin (there is no default account or password); later changes can be
made here or by an admin through the API. Every change is written to the audit log as
made by ``cli:<unix user>``. A password is asked twice on a terminal, or read as one line
from standard input with ``--password-stdin`` (for scripts).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from dsp.errors import InputError

ROLES = ("viewer", "operator", "admin")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("users", help="create and manage the service's user accounts", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="the service's TOML file")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    actions.add_parser("list", help="list the users")
    passwd = actions.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = actions.add_parser("set-role", help="change a user's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    for name, text in (("disable", "disable a user (ends their sessions)"), ("enable", "enable a user again")):
        p = actions.add_parser(name, help=text)
        p.add_argument("username")
    parser.set_defaults(handler=run)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def read_password(from_stdin: bool, min_length: int) -> str:
    from service.passwords import check_password

    if from_stdin or not sys.stdin.isatty():
        if not from_stdin:
            raise InputError(None, "password", "standard input is not a terminal: use --password-stdin")
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise InputError(None, "password", "the two entries differ")
    try:
        return check_password(password, min_length)
    except ValueError as exc:
        raise InputError(None, "password", str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from service.passwords import Passwords, check_username
    from service.settings import load_settings
    from service.store import ConflictError, NotFoundError, open_store

    settings = load_settings(args.config)
    sec = settings.security
    store = open_store(settings.database_url)
    actor = _actor()
    try:
        if args.action == "list":
            for u in store.list_users():
                print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'enabled'}")
            return 0
        try:
            check_username(args.username)
        except ValueError as exc:
            raise InputError(None, "username", str(exc)) from None
        passwords = Passwords(sec.password_hash_time_cost, sec.password_hash_memory_kib)
        changes: dict[str, Any] = {}
        if args.action == "add":
            password = read_password(args.password_stdin, sec.password_min_length)
            try:
                store.create_user(args.username, args.role, passwords.hash(password), actor=actor)
            except ConflictError as exc:
                raise InputError(None, "username", str(exc)) from None
            print(f"user {args.username} created with role {args.role}")
            return 0
        if args.action == "passwd":
            changes["password_hash"] = passwords.hash(read_password(args.password_stdin, sec.password_min_length))
        elif args.action == "set-role":
            changes["role"] = args.role
        else:
            changes["disabled"] = args.action == "disable"
        try:
            store.update_user(args.username, actor=actor, **changes)
        except NotFoundError as exc:
            raise InputError(None, "username", str(exc)) from None
        print(f"user {args.username} updated ({args.action})")
        return 0
    finally:
        store.close()
