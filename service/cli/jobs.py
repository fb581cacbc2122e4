"""`ascl jobs submit|list|get|cancel|hold|release|retry|events|logs`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ascl.config import parse_override
from service.cli.common import call, client, connection_options, print_json
from service.cli.render import JOB_COLUMNS, job_rows, job_summary, table, visible
from service.client import ApiError, ApiUnreachable, AsclClient
from service.jobs.status import JobStatus


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = commands.add_parser("jobs", help="submit and follow jobs over the REST API").add_subparsers(
        dest="verb", required=True
    )
    common = connection_options()
    _submit_parser(verbs, common)
    listing = verbs.add_parser("list", parents=[common], help="a table of jobs, newest first")
    listing.add_argument(
        "--status",
        action="append",
        type=str.upper,
        choices=list(JobStatus),
        help="only jobs in this state, any case (repeatable)",
    )
    listing.add_argument("--tag", help="only jobs with this tag")
    listing.add_argument("--queue", help="only jobs of this queue")
    listing.add_argument("--owner", help="only this user's jobs")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20, at most 200)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    listing.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS", help="refresh every N s")
    listing.set_defaults(handler=_list)
    get = verbs.add_parser("get", parents=[common], help="a job's status, progress, results and links")
    get.add_argument("job_id", help="the job's id, or the start of it that `jobs list` shows")
    get.add_argument("--json", action="store_true", help="print the API's JSON instead of a summary")
    get.set_defaults(handler=_get)
    for verb, handler, text in (
        ("cancel", _cancel, "cancel a job (a running one stops at its next step)"),
        ("hold", _hold, "keep a queued job's place but do not start it"),
        ("release", _release, "let a held job start"),
        ("events", _events, "every state change of a job: when, from, to, by whom, why"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("job_id", help="the job's id, or the start of it that `jobs list` shows")
        parser.set_defaults(handler=handler)
    retry = verbs.add_parser("retry", parents=[common], help="a new job from a finished one")
    retry.add_argument("job_id", help="the finished job's id (or the start of it)")
    retry.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    retry.add_argument("--resume", action="store_true", help="resume from the job's latest checkpoint")
    retry.set_defaults(handler=_retry)
    logs = verbs.add_parser("logs", parents=[common], help="a job's log (its current attempt)")
    logs.add_argument("job_id", help="the job's id, or the start of it that `jobs list` shows")
    logs.add_argument("--follow", "-f", action="store_true", help="stream new lines until the job ends")
    logs.set_defaults(handler=_logs)


SET_HELP = "override a config field, e.g. --set train.epochs=5 (repeatable; values are JSON)"


def _submit_parser(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    submit = verbs.add_parser("submit", parents=[common], help="submit a train or eval job")
    source = submit.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a named recipe (`ascl presets` lists them)")
    source.add_argument("--config", type=Path, help="a JSON experiment config file")
    source.add_argument(
        "--eval", dest="model", help="evaluate a model: models:/NAME/VERSION, models:/NAME@ALIAS or a train job's id"
    )
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    submit.add_argument("--name", help="the job's name (default: the experiment's)")
    submit.add_argument("--model-name", help="register the trained model under this name")
    submit.add_argument("--model-group", help="a group of yours that may also add versions of a new model name")
    submit.add_argument("--experiment", dest="mlflow_experiment", help="the MLflow experiment (default 'ascl')")
    submit.add_argument("--queue", default="default", help="the queue (default 'default')")
    submit.add_argument("--priority", type=int, help="higher runs sooner (default: the queue's, else 0)")
    submit.add_argument("--gpus", type=float, default=0.0, help="GPUs per worker (default 0)")
    submit.add_argument("--cpus", type=float, default=1.0, help="CPUs per worker (default 1)")
    submit.add_argument("--memory-gb", type=float, help="memory per worker in GiB")
    submit.add_argument("--workers", type=int, default=1, help="data-parallel workers (default 1)")
    submit.add_argument("--max-runtime", type=int, dest="max_runtime_s", help="stop after this many seconds")
    submit.add_argument("--tag", dest="tags", action="append", default=[], help="a tag (repeatable)")
    submit.add_argument("--depends-on", action="append", default=[], metavar="JOB[:any]", help=DEPENDS_HELP)
    submit.add_argument("--idempotency-key", help="submitting again with the same key returns the same job")
    submit.add_argument("--force-queue", action="store_true", help="queue even if no node can hold it today")
    submit.add_argument("--hold", action="store_true", help="queue it held: it starts after `ascl jobs release`")
    submit.add_argument(
        "--no-auto-eval", action="store_true", help="train: skip the standard evaluation of the registered version"
    )
    submit.add_argument("--dry-run", action="store_true", help="validate and show the resolved job, enqueue nothing")
    submit.set_defaults(handler=_submit)


DEPENDS_HELP = "start only after this job succeeded (JOB:any: after it ended, however); repeatable"


def submission_body(args: argparse.Namespace) -> dict[str, Any]:
    if not (args.preset or args.config or args.model):
        raise ValueError("give --preset, --config or --eval")
    resources: dict[str, Any] = {"gpus": args.gpus, "cpus": args.cpus, "workers": args.workers}
    if args.memory_gb:
        resources["memory_gb"] = args.memory_gb
    body: dict[str, Any] = {
        "kind": "eval" if args.model else "train",
        "queue": args.queue,
        "tags": args.tags,
        "resources": resources,
        "overrides": dict(parse_override(item) for item in args.overrides),
        "force_queue": args.force_queue,
        "hold": args.hold,
    }
    if args.no_auto_eval and not args.model:
        body["auto_evaluate"] = False
    if args.priority is not None:  # else the queue's default priority applies
        body["priority"] = args.priority
    if args.model:
        body["model"] = args.model
    elif args.config:
        body["experiment"] = json.loads(args.config.read_text())
    else:
        body["preset"] = args.preset
    for key in ("name", "model_name", "model_group", "mlflow_experiment", "max_runtime_s"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    if args.depends_on:
        body["depends_on"] = [_dependency(item) for item in args.depends_on]
    return body


def _dependency(text: str) -> dict[str, str]:
    job, _, condition = text.partition(":")
    return {"job": job, "on": condition or "success"}


def _submit(args: argparse.Namespace) -> int:
    body = submission_body(args)
    return call(
        args, lambda c: c.submit(_whole_ids(c, body), idempotency_key=args.idempotency_key, dry_run=args.dry_run)
    )


def _whole_ids(api: AsclClient, body: dict[str, Any]) -> dict[str, Any]:
    """The jobs a submission names (--eval JOB, --depends-on JOB) as lists show them, made whole."""
    named = dict(body)
    if "model" in named:
        named["model"] = api.full_id(named["model"])
    if "depends_on" in named:
        named["depends_on"] = [
            {**dependency, "job": api.full_id(dependency["job"])} for dependency in body["depends_on"]
        ]
    return named


def _list(args: argparse.Namespace) -> int:
    filters = {"status": args.status, "tag": args.tag, "queue": args.queue, "owner": args.owner, "limit": args.limit}

    def show(page: dict[str, Any]) -> None:
        if args.json:
            print_json(page)
        else:
            print(table(JOB_COLUMNS, job_rows(page["items"])))

    if args.watch is None:
        return call(args, lambda c: c.list(**filters), show)
    api = client(args)
    try:
        while True:
            page = api.list(**filters)
            print("\x1b[2J\x1b[H", end="")  # clear the terminal, cursor home
            print(f"every {args.watch:g} s, Ctrl-C stops   {time.strftime('%H:%M:%S')}\n")
            show(page)
            sys.stdout.flush()
            time.sleep(args.watch)
    except (ApiUnreachable, ApiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _get(args: argparse.Namespace) -> int:
    return call(
        args, lambda c: c.get(c.full_id(args.job_id)), print_json if args.json else lambda job: print(job_summary(job))
    )


def _cancel(args: argparse.Namespace) -> int:
    return call(args, lambda c: c.cancel(c.full_id(args.job_id)))


def _hold(args: argparse.Namespace) -> int:
    return call(args, lambda c: c.hold(c.full_id(args.job_id)))


def _release(args: argparse.Namespace) -> int:
    return call(args, lambda c: c.release(c.full_id(args.job_id)))


def _events(args: argparse.Namespace) -> int:
    def show(events: list[dict[str, Any]]) -> None:
        rows = [[e["at"], e["from_status"] or "", e["to_status"], e["actor"], e["reason"]] for e in events]
        print(table(["at", "from", "to", "by", "why"], rows))

    return call(args, lambda c: c.events(c.full_id(args.job_id)), show)


def _retry(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(item) for item in args.overrides)
    return call(args, lambda c: c.retry(c.full_id(args.job_id), overrides=overrides, resume=args.resume))


def _logs(args: argparse.Namespace) -> int:
    def show(api: Any) -> None:
        job_id = api.full_id(args.job_id)
        if args.follow:
            for line in api.follow_logs(job_id):
                print(visible(line, lines=True), flush=True)
        else:
            print(visible(api.logs(job_id), lines=True), end="")

    return call(args, show)
