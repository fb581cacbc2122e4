"""`ascl tokens create|list|revoke`: API tokens for users and service accounts."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from service.cli.common import call, connection_options
from service.cli.render import table


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = commands.add_parser("tokens", help="create, list and revoke API tokens").add_subparsers(
        dest="verb", required=True
    )
    common = connection_options()
    create = verbs.add_parser("create", parents=[common], help="create a token (shown once)")
    create.add_argument("--name", default="api token", help="what the token is for")
    create.add_argument("--subject", help="whom it authenticates (default: you; others need the admin role)")
    create.add_argument("--role", choices=["admin", "user", "viewer"], help="default: your role; never above it")
    create.add_argument("--service", action="store_true", help="a service account's token (admins only)")
    create.add_argument(
        "--group", dest="groups", action="append", default=[], help="a group it belongs to (repeatable)"
    )
    create.add_argument("--expires-in", default="90d", help="e.g. 30d, 12h, or 'never' (default 90d)")
    create.set_defaults(handler=_create)
    listing = verbs.add_parser("list", parents=[common], help="your tokens (an admin: everyone's)")
    listing.add_argument("--subject", help="an admin: only this user's tokens")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)
    revoke = verbs.add_parser("revoke", parents=[common], help="revoke a token at once")
    revoke.add_argument("token_id", help="the token's id (see `ascl tokens list`)")
    revoke.set_defaults(handler=_revoke)


def expiry_seconds(text: str) -> int | None:
    """'30d', '12h', '90m', '45s' or plain seconds; 'never' → None."""
    if text == "never":
        return None
    match = re.fullmatch(r"(\d{1,6})([dhms]?)", text.strip())
    if match is None:
        raise ValueError(f"--expires-in: expected a number with d, h, m or s, or 'never' (got {text!r})")
    return int(match[1]) * {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}[match[2]]


def _create(args: argparse.Namespace) -> int:
    expires = expiry_seconds(args.expires_in)
    body: dict[str, Any] = {"name": args.name, "expires_in_s": expires, "groups": args.groups}
    body |= {"kind": "service"} if args.service else {}
    body |= {key: getattr(args, key) for key in ("subject", "role") if getattr(args, key)}

    def show(created: dict[str, Any]) -> None:
        print(created["token"])
        expiry = created["expires_at"] or "never"
        print(f"token {created['id']} for {created['subject']} ({created['role']}), expires {expiry}", file=sys.stderr)
        print("it is shown this once: store it now", file=sys.stderr)

    return call(args, lambda c: c.create_token(body), show)


def _list(args: argparse.Namespace) -> int:
    def show(rows: list[dict[str, Any]]) -> None:
        columns = ["id", "subject", "role", "kind", "name", "expires_at", "revoked_at", "last_used_at"]
        print(table(columns, [[row[c] or "" for c in columns] for row in rows]))

    return call(args, lambda c: c.tokens(args.subject), None if args.json else show)


def _revoke(args: argparse.Namespace) -> int:
    return call(args, lambda c: c.revoke_token(args.token_id), lambda row: print(f"revoked {row['id']}"))
