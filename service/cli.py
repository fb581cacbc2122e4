"""`ascl jobs ...`, added to the `ascl` command through the `ascl.commands` entry point: a client of the
REST API (needs only httpx)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ascl.config import parse_override


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    jobs = commands.add_parser("jobs", help="the job API over HTTP").add_subparsers(dest="verb", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default="http://127.0.0.1:8000")
    common.add_argument("--user", default=None)
    submit = jobs.add_parser("submit", parents=[common], help="submit a train or eval job")
    source = submit.add_mutually_exclusive_group()
    source.add_argument("--preset")
    source.add_argument("--config", type=Path, help="a JSON experiment config")
    submit.add_argument("--eval", dest="model", help="evaluate this model (models:/NAME/VERSION or a job id)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--name")
    submit.add_argument("--model-name")
    submit.add_argument("--queue", default="default")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--gpus", type=float, default=0.0)
    submit.add_argument("--cpus", type=float, default=1.0)
    submit.add_argument("--tag", dest="tags", action="append", default=[])
    submit.add_argument("--idempotency-key")
    submit.add_argument("--dry-run", action="store_true")
    submit.set_defaults(handler=_submit)
    listing = jobs.add_parser("list", parents=[common])
    listing.add_argument("--status", action="append")
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=_list)
    for verb, handler in (("get", _get), ("cancel", _cancel), ("events", _events)):
        parser = jobs.add_parser(verb, parents=[common])
        parser.add_argument("job_id")
        parser.set_defaults(handler=handler)
    retry = jobs.add_parser("retry", parents=[common])
    retry.add_argument("job_id")
    retry.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    retry.add_argument("--resume", action="store_true", help="resume from the job's latest checkpoint")
    retry.set_defaults(handler=_retry)
    logs = jobs.add_parser("logs", parents=[common])
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.set_defaults(handler=_logs)


def _client(args: argparse.Namespace) -> Any:
    from service.client import AsclClient

    return AsclClient(args.api, user=args.user)


def _call(args: argparse.Namespace, action: Any) -> int:
    from service.client import ApiError

    try:
        result = action(_client(args))
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "kind": "eval" if args.model else "train",
        "queue": args.queue,
        "priority": args.priority,
        "tags": args.tags,
        "resources": {"gpus": args.gpus, "cpus": args.cpus},
        "overrides": dict(parse_override(item) for item in args.overrides),
    }
    if args.model:
        body["model"] = args.model
    elif args.config:
        body["experiment"] = json.loads(args.config.read_text())
    else:
        body["preset"] = args.preset
    for key in ("name", "model_name"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    return _call(args, lambda c: c.submit(body, idempotency_key=args.idempotency_key, dry_run=args.dry_run))


def _list(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.list(status=args.status, tag=args.tag, limit=args.limit))


def _get(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.get(args.job_id))


def _cancel(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.cancel(args.job_id))


def _events(args: argparse.Namespace) -> int:
    return _call(args, lambda c: c.events(args.job_id))


def _retry(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(item) for item in args.overrides)
    return _call(args, lambda c: c.retry(args.job_id, overrides=overrides, resume=args.resume))


def _logs(args: argparse.Namespace) -> int:
    def show(client: Any) -> None:
        if args.follow:
            for line in client.follow_logs(args.job_id):
                print(line, flush=True)
        else:
            print(client.logs(args.job_id), end="")

    return _call(args, show)
