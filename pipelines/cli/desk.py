"""`datashare desk` (the leads' web desk) and `datashare users` (its accounts)."""

from __future__ import annotations

import argparse
import getpass
import sys

from pipelines.home.settings import Settings

DEFAULT_PORT = 3100  # beside the Dagster UI's 3000


def add_desk_commands(sub: argparse._SubParsersAction) -> None:
    desk = sub.add_parser(
        "desk",
        help="serve the leads' desk: breaches, notices, the pack, agreements, Data Docs",
        description="Serve the leads' desk on this home (sign-in needed: `datashare users "
        "add`). It listens on 127.0.0.1 unless --host says otherwise; put it behind https "
        "to reach it from other machines (see DATASHARE_DESK_URL in the README).",
    )
    desk.add_argument("--host", default="127.0.0.1")
    desk.add_argument("--port", type=int, default=DEFAULT_PORT)
    users = sub.add_parser("users", help="the desk's accounts: add, list, remove")
    actions = users.add_subparsers(dest="users_command", required=True)
    add = actions.add_parser(
        "add",
        help="make an account (the password is asked for, or read from standard input)",
    )
    add.add_argument("name")
    add.add_argument(
        "--role",
        choices=["lead", "viewer"],
        required=True,
        help="lead: may act on breaches and send notices; viewer: reads only",
    )
    add.add_argument("--replace", action="store_true", help="reset an existing account")
    actions.add_parser("list", help="every account and its role")
    remove = actions.add_parser("remove", help="remove an account (its sessions end at once)")
    remove.add_argument("name")


def _password() -> str:
    """The new password: asked twice at a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("error: the two passwords differ; nothing was changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def run_users_command(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.desk.users import AccountError, UserStore

    store = UserStore(settings.home)
    try:
        if args.users_command == "add":
            user = store.add(args.name, args.role, _password(), replace=args.replace)
            print(f"Account {user.name} ({user.role}) saved in {store.path}")
        elif args.users_command == "remove":
            store.remove(args.name)
            print(f"Account {args.name} removed")
        else:
            accounts = store.all()
            for user in accounts:
                print(f"{user.name}\t{user.role}")
            if not accounts:
                print("No accounts: `datashare users add NAME --role lead|viewer` makes one.")
    except AccountError as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    return 0


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run_desk_command(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from pipelines.desk.app import create_app
    from pipelines.desk.config import load_desk_config
    from pipelines.desk.users import UserStore

    config = load_desk_config()
    if config.trusted_user_header and args.host not in LOOPBACK:
        # Anyone reaching the desk directly could name any account in that header.
        print(
            f"error: DATASHARE_DESK_TRUSTED_USER_HEADER is set, so the desk must listen on "
            f"loopback behind the proxy that sets it, not on {args.host}",
            file=sys.stderr,
        )
        return 2
    if args.host not in LOOPBACK and not config.secure_cookies:
        print(
            f"warning: serving on {args.host} over plain http: passwords and session cookies "
            "would cross the network unencrypted. Put an https proxy in front and set "
            "DATASHARE_DESK_URL=https://...",
            file=sys.stderr,
        )

    if not UserStore(settings.home).all():
        print(
            "note: no accounts yet, so nobody can sign in: "
            "`datashare users add NAME --role lead` makes one.",
            file=sys.stderr,
        )
    app = create_app(settings, config)
    print(f"The leads' desk on http://{args.host}:{args.port} (home {settings.home}); Ctrl-C "
          "to stop.", flush=True)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
