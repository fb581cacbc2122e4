"""What every API command shares: where the API is, how to authenticate, and how a result or an
error is printed (one line for an unreachable API, not a traceback)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from service.cli.render import visible
from service.client import ApiError, ApiUnreachable, AsclClient


def connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=os.environ.get("ASCL_API", "http://127.0.0.1:8000"),
        help="the API's URL (default: $ASCL_API or http://127.0.0.1:8000)",
    )
    common.add_argument(
        "--token",
        default=None,
        help="an API token (default: $ASCL_TOKEN, else the one a local `ascl serve` recorded for --api)",
    )
    return common


def client(args: argparse.Namespace) -> AsclClient:
    return AsclClient(args.api, token=args.token)


def call(
    args: argparse.Namespace, action: Callable[[AsclClient], Any], show: Callable[[Any], None] | None = None
) -> int:
    """Run `action` against the API; print its result with `show` (JSON by default)."""
    try:
        result = action(client(args))
    except ApiUnreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except ApiError as error:  # its detail may name back what a user sent (another user's, even)
        print(f"error: {visible(str(error))}", file=sys.stderr)
        if error.status == 401:
            print("hint: pass --token, set ASCL_TOKEN, or create one with `ascl tokens create`", file=sys.stderr)
        return 2
    if result is not None:
        (show or print_json)(result)
    return 0


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
