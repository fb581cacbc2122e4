"""`ascl sweeps create|list|get|trials|cancel|set`: hyperparameter searches whose trials are jobs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ascl.config import parse_override
from ascl.metric_names import validation_counterpart
from service.cli.common import call, connection_options, print_json
from service.cli.render import age, table, visible


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = commands.add_parser("sweeps", help="hyperparameter sweeps over the REST API").add_subparsers(
        dest="verb", required=True
    )
    common = connection_options()
    create = verbs.add_parser("create", parents=[common], help="start a sweep (its trials are jobs)")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a JSON sweep body (see POST /api/v1/sweeps), used as it is")
    source.add_argument("--preset", help="the base job's preset (with --space, and --set for fixed overrides)")
    create.add_argument("--space", action="append", default=[], metavar="KEY=V1,V2|LOW:HIGH", help=SPACE_HELP)
    create.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="base override"
    )
    create.add_argument("--name", help="the sweep's name (default: sweep)")
    create.add_argument("--algorithm", choices=["grid", "random", "tpe", "nsga2"], help="the sampler (default: tpe)")
    create.add_argument("--seed", type=int, help="the search's seed (same seed, same trials; default 0)")
    create.add_argument("--objective", action="append", default=[], metavar="METRIC[:min]", help=OBJECTIVE_HELP)
    create.add_argument("--max-trials", type=int, help="trials in all (default 20)")
    create.add_argument("--max-concurrency", type=int, help="trials at once (default 4)")
    create.add_argument("--max-failed-trials", type=int, help="stop after this many failures (default 3)")
    create.add_argument("--early-stopping", choices=["median", "successive_halving"], help="prune hopeless trials")
    create.add_argument(
        "--early-stopping-metric",
        metavar="METRIC",
        help="the per-epoch figure pruning compares (val.* or train.*; default: the objective or its val.* twin)",
    )
    create.add_argument("--grace-epochs", type=int, help="epochs before a trial may be pruned (default 2)")
    create.add_argument("--cpus", type=float, help="CPUs per trial (default 1)")
    create.add_argument("--gpus", type=float, help="GPUs per trial (default 0)")
    create.add_argument("--queue", help="the trials' queue (default: default)")
    create.add_argument("--dry-run", action="store_true", help="show the first trials' specs, start nothing")
    create.set_defaults(handler=_create)
    listing = verbs.add_parser("list", parents=[common], help="a table of sweeps, newest first")
    listing.add_argument("--status", action="append", type=str.upper, help="only sweeps in this state (repeatable)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)
    for verb, handler, text in (
        ("get", _get, "a sweep: trials by state, the best trial or Pareto front, GPU-seconds"),
        ("trials", _trials, "a sweep's trials: parameters, state and objective values"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("sweep_id", help="the sweep's id, or the start of it that `sweeps list` shows")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.set_defaults(handler=handler)
    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a sweep's queued trials and end it")
    cancel.add_argument("sweep_id", help="the sweep's id, or the start of it that `sweeps list` shows")
    cancel.add_argument("--finish-running", action="store_true", help="let running trials finish (default: stop)")
    cancel.set_defaults(handler=_cancel)
    change = verbs.add_parser("set", parents=[common], help="change a running sweep's limits")
    change.add_argument("sweep_id", help="the sweep's id, or the start of it that `sweeps list` shows")
    change.add_argument("--max-trials", type=int, help="trials in all")
    change.add_argument("--max-concurrency", type=int, help="trials at once")
    change.add_argument("--max-failed-trials", type=int, help="failures before it stops")
    change.set_defaults(handler=_change)


SET_HELP = "a fixed override of the base job, e.g. train.epochs=3 (repeatable)"
SPACE_HELP = "a searched field: choices (objective.temperature=0.1,0.2) or a range (optim.lr=0.001:0.1:log)"
# each option that writes a field of the body (which --file holds whole)
BODY_OPTIONS = {
    "--space": "space",
    "--set": "overrides",
    "--objective": "objective",
    "--early-stopping": "early_stopping",
    "--early-stopping-metric": "early_stopping_metric",
    "--grace-epochs": "grace_epochs",
    "--name": "name",
    "--algorithm": "algorithm",
    "--seed": "seed",
    "--max-trials": "max_trials",
    "--max-concurrency": "max_concurrency",
    "--max-failed-trials": "max_failed_trials",
    "--cpus": "cpus",
    "--gpus": "gpus",
    "--queue": "queue",
}
OBJECTIVE_HELP = (
    "what to optimise: val.*, train.* or test.* (default val.robust_acc, maximised); METRIC:min minimises; "
    "give two for nsga2"
)


def dimension(text: str) -> tuple[str, dict[str, Any]]:
    """'k=0.1,0.2' → choices; 'k=0.001:0.1' (':log', ':int') → a range."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ValueError(f"--space: expected KEY=V1,V2 or KEY=LOW:HIGH (got {text!r})")
    if ":" in raw:
        low, high, *flags = raw.split(":")
        bounds: dict[str, Any] = {"low": float(low), "high": float(high)}
        unknown = [flag for flag in flags if flag not in ("log", "int")]
        if unknown:
            raise ValueError(f"--space {key}: a range's flags are 'log' and 'int' (got {unknown[0][:50]!r})")
        return key, bounds | dict.fromkeys(flags, True)
    return key, {"values": [parse_override(f"v={item}")[1] for item in raw.split(",")]}


def _create(args: argparse.Namespace) -> int:
    body = sweep_body(args)
    return call(args, lambda c: c.create_sweep(body, dry_run=args.dry_run))


def sweep_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body `ascl sweeps create` sends: what was given, the service's defaults for the
    rest; options that cannot mean anything together are a ValueError (`ascl` prints it, status 2)."""
    pruning = {"--early-stopping-metric": args.early_stopping_metric, "--grace-epochs": args.grace_epochs}
    alone = [option for option, value in pruning.items() if value is not None and not args.early_stopping]
    if alone:
        raise ValueError(f"{alone[0]} needs --early-stopping (median or successive_halving)")
    if args.file:
        given = [option for option, attribute in BODY_OPTIONS.items() if getattr(args, attribute) not in (None, [])]
        if given:
            raise ValueError(f"--file is the whole sweep body: what {given[0]} says goes into the file")
        body: dict[str, Any] = json.loads(args.file.read_text())
        return body
    resources = _given({"cpus": args.cpus, "gpus": args.gpus})
    base = {"preset": args.preset, "overrides": dict(parse_override(item) for item in args.overrides)}
    body = {
        "base": base | _given({"queue": args.queue}) | ({"resources": resources} if resources else {}),
        "space": dict(dimension(item) for item in args.space),
        "objective": [_objective(o) for o in args.objective or ["val.robust_acc"]],
    }
    body |= _given(
        {
            "name": args.name,
            "algorithm": args.algorithm,
            "seed": args.seed,
            "max_trials": args.max_trials,
            "max_concurrency": args.max_concurrency,
            "max_failed_trials": args.max_failed_trials,
        }
    )
    if args.early_stopping:
        pruning = {"rule": args.early_stopping}
        pruning["metric"] = args.early_stopping_metric or _per_epoch(body["objective"][0]["metric"])
        body["early_stopping"] = pruning | _given({"grace_epochs": args.grace_epochs})
    return body


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _objective(given: str) -> dict[str, str]:
    metric, sep, mode = given.partition(":")
    if sep and mode not in ("min", "max"):
        raise ValueError(f"--objective: METRIC, METRIC:min or METRIC:max (got {given[:100]!r})")
    return {"metric": metric, "mode": mode or "max"}


def _per_epoch(metric: str) -> str:
    """The objective, or for a final figure (test.*) its validation counterpart: pruning compares
    figures reported per epoch."""
    scope, _, key = metric.partition(".")
    return f"val.{validation_counterpart(key)}" if scope == "test" else metric


def _list(args: argparse.Namespace) -> int:
    def show(page: dict[str, Any]) -> None:
        rows = [
            [
                s["id"][:8],
                s["name"],
                s["status"],
                s["algorithm"],
                _trial_counts(s["trials"]),
                _best(s),
                age(s["created_at"]),
            ]
            for s in page["items"]
        ]
        print(table(["id", "name", "status", "algorithm", "trials", "best", "age"], rows))

    return call(args, lambda c: c.sweeps(status=args.status), print_json if args.json else show)


def _get(args: argparse.Namespace) -> int:
    def show(s: dict[str, Any]) -> None:
        print(visible(f"{s['name']}  (sweep {s['id']}, owner {s['owner']})"))
        print(f"status     {s['status']}{'  ' + visible(s['reason']) if s['reason'] else ''}")
        objective = ", ".join(f"{o['mode']} {o['metric']}" for o in s["objective"])
        print(f"search     {s['algorithm']}, {objective}; {s['max_trials']} trials, {s['max_concurrency']} at once")
        print(f"trials     {_trial_counts(s['trials'])}; {s['gpu_seconds']:.0f} GPU-seconds")
        print(f"best       {_best(s)}")
        if s.get("mlflow_run_url"):
            print(f"mlflow     {s['mlflow_run_url']}")

    return call(args, lambda c: c.sweep(c.full_id(args.sweep_id, sweep=True)), print_json if args.json else show)


def _trials(args: argparse.Namespace) -> int:
    def show(trials: list[dict[str, Any]]) -> None:
        keys = list(trials[0]["params"]) if trials else []
        rows = [
            [t["number"], t["job_id"][:8], t["status"], *(t["params"][k] for k in keys), *t["values"], t["epochs"]]
            for t in trials
        ]
        values = [f"value{i}" for i in range(len(trials[0]["values"]))] if trials else []
        print(table(["trial", "job", "status", *keys, *values, "epochs"], rows))

    return call(args, lambda c: c.sweep_trials(c.full_id(args.sweep_id, sweep=True)), print_json if args.json else show)


def _cancel(args: argparse.Namespace) -> int:
    running = "finish" if args.finish_running else "stop"
    return call(args, lambda c: c.cancel_sweep(c.full_id(args.sweep_id, sweep=True), running=running))


def _change(args: argparse.Namespace) -> int:
    limits = {k: v for k in ("max_trials", "max_concurrency", "max_failed_trials") if (v := getattr(args, k))}
    return call(args, lambda c: c.change_sweep(c.full_id(args.sweep_id, sweep=True), **limits))


def _trial_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items())) or "none yet"


def _best(sweep: dict[str, Any]) -> str:
    best = sweep.get("best") or {}
    if "best_trial" in best:
        trial = best["best_trial"]
        return f"#{trial['trial']} {', '.join(f'{v:.4f}' for v in trial['values'])}"
    if "pareto_front" in best:
        return f"{len(best['pareto_front'])} trials on the Pareto front"
    return ""
