"""`ascl models list|get|promote|compare`: registered models, their versions' robustness side by
side, `@champion` moved by the service's rules, and the clean-versus-robust comparison plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from service.cli.common import call, connection_options, print_json
from service.cli.render import table, visible

SORT_KEYS = ("version", "clean_acc", "pgd_acc", "autoattack_acc", "created_at")
VERSION_COLUMNS = ("version", "aliases", "evaluation", "threat model", "clean", "pgd", "autoattack", "examples", "job")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verbs = commands.add_parser("models", help="registered models and their robustness").add_subparsers(
        dest="verb", required=True
    )
    common = connection_options()
    listing = verbs.add_parser("list", parents=[common], help="the models you may read, with their champion")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)
    get = verbs.add_parser("get", parents=[common], help="a model's versions with their figures, side by side")
    get.add_argument("name", help="the registered model's name")
    get.add_argument("--sort", choices=SORT_KEYS, default="version", help="sort versions by (default: version)")
    get.add_argument("--asc", action="store_true", help="ascending (default: descending)")
    get.add_argument("--limit", type=int, default=200, help="show the first N versions as sorted (default 200)")
    get.add_argument("--json", action="store_true", help="print JSON instead of a table")
    get.set_defaults(handler=_get)
    promote = verbs.add_parser("promote", parents=[common], help="move @champion to a version, if the rules allow")
    promote.add_argument("name", help="the registered model's name")
    promote.add_argument("version", help="the version to promote")
    promote.add_argument(
        "--max-clean-drop", type=float, default=0.01, help="largest clean-accuracy drop allowed (default 0.01)"
    )
    promote.add_argument("--json", action="store_true", help="print JSON instead of a sentence")
    promote.set_defaults(handler=_promote)
    compare = verbs.add_parser("compare", parents=[common], help="write the clean-vs-robust comparison plot (PNG)")
    compare.add_argument("name", help="the registered model's name")
    compare.add_argument("-o", "--output", type=Path, required=True, help="the PNG file to write")
    compare.set_defaults(handler=_compare)


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def version_row(version: dict[str, Any]) -> list[str]:
    figures = version.get("robustness") or {}
    threat = figures.get("threat_model")
    return [
        version["version"],
        ",".join("@" + alias for alias in version["aliases"]),
        version["evaluation"],
        f"{threat['norm']} {threat['epsilon']:.4g}" if threat else "",
        percent(figures.get("clean_acc")),
        percent(figures.get("pgd_acc")),
        percent(figures.get("autoattack_acc")),
        str(figures.get("examples") or ""),
        version.get("job_id") or "",
    ]


def models_table(listing: dict[str, Any]) -> str:
    rows = []
    for model in listing["models"]:
        champion = model.get("champion") or {}
        figures = champion.get("robustness") or {}
        rows.append(
            [
                model["name"],
                model["owner"],
                str(model["versions"]),
                model["latest_version"] or "",
                champion.get("version", ""),
                percent(figures.get("clean_acc")),
                percent(figures.get("autoattack_acc") or figures.get("pgd_acc")),
            ]
        )
    return table(("name", "owner", "versions", "latest", "champion", "clean", "robust"), rows)


def detail_text(detail: dict[str, Any]) -> str:
    lines = [
        f"{detail['name']} (owner {detail['owner']})",
        table(VERSION_COLUMNS, [version_row(v) for v in detail["versions"]]),
    ]
    if detail["total_versions"] > len(detail["versions"]):
        lines.append(f"(the first {len(detail['versions'])} of {detail['total_versions']} versions, as sorted)")
    moves = detail.get("alias_moves") or []
    if moves:
        lines.append("\nalias moves:")
        lines += [
            f"  {m['at']}  @{m['alias']} → {m['version']} (was {m['previous_version'] or 'none'}) by {m['actor']}"
            for m in moves
        ]
    return visible("\n".join(lines), lines=True)  # owners and actors come from an identity provider


def _list(args: argparse.Namespace) -> int:
    return call(args, lambda c: c.models(), None if args.json else lambda found: print(models_table(found)))


def _get(args: argparse.Namespace) -> int:
    order = "asc" if args.asc else "desc"
    show = None if args.json else lambda found: print(detail_text(found))
    return call(args, lambda c: c.model(args.name, sort=args.sort, order=order, limit=args.limit), show)


def _promote(args: argparse.Namespace) -> int:
    outcome: dict[str, Any] = {}

    def show(result: dict[str, Any]) -> None:
        outcome.update(result)
        verdict = f"promoted {args.name} version {args.version} to @champion" if result["promoted"] else "refused"
        print(f"{verdict}: {result['reason']}")

    def keep(result: dict[str, Any]) -> None:
        outcome.update(result)
        print_json(result)

    code = call(
        args,
        lambda c: c.promote(args.name, args.version, max_clean_drop=args.max_clean_drop),
        keep if args.json else show,
    )
    return code if code or outcome.get("promoted") else 1  # a refusal is a failure for scripts


def _compare(args: argparse.Namespace) -> int:
    def write(png: bytes) -> None:
        args.output.write_bytes(png)
        print(f"wrote {args.output} ({len(png)} bytes)", file=sys.stderr)

    return call(args, lambda c: c.comparison_png(args.name), write)
