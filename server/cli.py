"""The ``tactline`` command: ``check``, ``rules``, ``serve`` and ``users``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from server import checkcmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tactline", description="Agent-assist live chat.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Coach on the command line.
    check = commands.add_parser("check", help="check text with the phrasing coach")
    check.add_argument("files", nargs="*", help="files to check (stdin when none)")
    check.add_argument("--lang", default="en", help="language: en, sr, hr, sl (default en)")
    check.add_argument("--role", default="agent", choices=["agent", "customer"])
    check.add_argument("--format", default="text", choices=["text", "json", "jsonl"])
    check.add_argument(
        "--min-severity",
        default="info",
        choices=["info", "warning", "alert"],
        help="lowest severity to report and to fail on (default info)",
    )
    check.add_argument("--rules", default=None, help="rules directory (default: bundled)")
    check.set_defaults(func=checkcmd.run_check)

    rules = commands.add_parser("rules", help="test and validate rule packs")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    rules_test = rules_commands.add_parser("test", help="run every rule's examples")
    rules_test.add_argument("dir", nargs="?", default=None)
    rules_test.set_defaults(func=checkcmd.run_rules_test)
    rules_lint = rules_commands.add_parser("lint", help="validate rule files")
    rules_lint.add_argument("dir", nargs="?", default=None)
    rules_lint.set_defaults(func=checkcmd.run_rules_lint)

    # Server side (server/serve.py, server/accounts.py).
    serve = commands.add_parser("serve", help="run the chat server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--no-demo", action="store_true", help="do not create the demo")
    serve.set_defaults(func=_run_serve)

    users = commands.add_parser("users", help="manage agent and supervisor accounts")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    users_add = users_commands.add_parser(
        "add", help="add an account (password from prompt or stdin)"
    )
    users_add.add_argument("name")
    users_add.add_argument("--role", required=True, choices=["agent", "supervisor"])
    users_add.add_argument("--display-name", default=None)
    users_add.add_argument("--languages", default="en", help="comma-separated, e.g. sr,hr")
    users_add.add_argument("--teams", default="support", help="comma-separated, e.g. billing")
    users_add.set_defaults(func=_run_users_add)
    visitors = commands.add_parser("visitors", help="visitors' data")
    visitors_commands = visitors.add_subparsers(dest="visitors_command", required=True)
    visitors_delete = visitors_commands.add_parser(
        "delete", help="delete a visitor's conversations and revoke their tokens"
    )
    visitors_delete.add_argument("visitor", help="visitor id (v_...)")
    visitors_delete.set_defaults(func=_run_visitors_delete)
    return parser


def _run_visitors_delete(args: argparse.Namespace) -> int:
    from server import privacy

    return privacy.cli_delete(args)


def _run_serve(args: argparse.Namespace) -> int:
    from server import serve

    return serve.main(args)


def _run_users_add(args: argparse.Namespace) -> int:
    from server import accounts

    return accounts.cli_add(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
