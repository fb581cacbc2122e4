"""`ascl serve`, added to the `ascl` command through the `ascl.commands` entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="run the API, dispatcher, local Ray and the MLflow UI")
    serve.add_argument("--host", default=None, help="the API's address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="the API's port (default 8000; 0: any free port)")
    serve.add_argument(
        "--data-dir", type=Path, default=None, help="SQLite DB, MLflow store, checkpoints (default .ascl)"
    )
    serve.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://user@host/db")
    serve.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")
    serve.add_argument("--mlflow-uri", default=None, help="use this tracking server instead of starting one")
    serve.add_argument(
        "--access-log", action="store_true", default=None, help="log every request (default: count them in /metrics)"
    )
    serve.add_argument("--demo", action="store_true", help="submit a digits ASCL job and follow it")
    serve.add_argument("--exit-after-demo", action="store_true", help="stop once the demo job has finished")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from control.children import ChildDidNotStart
    from control.ports import CannotListen
    from control.serve import serve
    from service.settings import ServiceSettings

    given = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "database_url": args.database_url,
        "ray_address": args.ray_address,
        "mlflow_tracking_uri": args.mlflow_uri,
        "access_log": args.access_log,
    }
    settings = ServiceSettings(**{k: v for k, v in given.items() if v is not None})
    try:
        return serve(settings, demo=args.demo, exit_after_demo=args.exit_after_demo)
    except CannotListen as error:  # `ascl` prints a ValueError as "error: ..." and exits with 2
        raise ValueError(str(error)) from error
    except ChildDidNotStart as error:  # Ray's head, MLflow's server: not a usage error; its log has the rest
        sys.stderr.write(f"error: {error}\n")
        return 1
