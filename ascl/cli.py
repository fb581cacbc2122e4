"""The `ascl` command: train and evaluate locally; other packages add commands (`serve`, `jobs`)
through the `ascl.commands` entry-point group, so the library never imports them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ascl.config import ExperimentConfig, parse_override
from ascl.errors import AsclError, ConfigError
from ascl.presets import PRESETS, get_preset


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is handled below and not at exit
        return status
    except BrokenPipeError:  # `ascl ... | head`: the reader has gone; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (AsclError, ValueError, OSError) as error:  # OSError: a run or output path that cannot be written
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ascl", description="Adversarial Supervised Contrastive Learning")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train locally and print the result as JSON")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help=f"a named recipe, one of: {', '.join(sorted(PRESETS))}")
    source.add_argument("--config", type=Path, help="a JSON experiment config file (see `ascl presets NAME`)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field, e.g. --set train.epochs=3 or --set cpu_threads=2 (repeatable; values are JSON)",
    )
    train.add_argument("--run-dir", type=Path, help="checkpoints and reports (default runs/<name>); resumes if present")
    train.add_argument("--resume-from", type=Path, help="start from this checkpoint instead of the run directory's")
    train.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (epochs, eval attacks): bars in a terminal, lines otherwise",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint on its test split")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="a best.pt or last.pt written by ascl train")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override e.g. eval.pgd_steps=50, eval.autoattack=standard, data.data_dir=...",
    )
    evaluate.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    evaluate.add_argument("--out", type=Path, help="write report.json (and eps_sweep.png) here")
    evaluate.add_argument("--flags", action="store_true", help="include per-example robust flags in the output")
    evaluate.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress of the attacks on stderr",
    )
    evaluate.set_defaults(handler=_eval)

    presets = commands.add_parser("presets", help="list presets, or print one as JSON")
    presets.add_argument("name", nargs="?", help="print this preset's full config as JSON")
    presets.set_defaults(handler=_presets)

    for plugin in entry_points(group="ascl.commands"):
        plugin.load()(commands)
    return parser


def resolve_config(preset: str | None, config_file: Path | None, overrides: list[str]) -> ExperimentConfig:
    """A preset or a JSON file, then `key=value` overrides; every problem is a ConfigError."""
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError("--config", f"cannot read {config_file}: {error}") from None
        return ExperimentConfig.from_spec(data, dict(parse_override(item) for item in overrides))
    return get_preset(preset or "").with_overrides(dict(parse_override(item) for item in overrides))


def _train(args: argparse.Namespace) -> int:
    from ascl.experiment import run_experiment

    config = resolve_config(args.preset, args.config, args.overrides)
    run_dir = args.run_dir or _default_run_dir(config.name)
    completed = _completed_epochs(run_dir, config)
    if completed >= config.train.epochs:
        print(
            f"{run_dir}: {completed} epochs trained already (train.epochs={config.train.epochs}): nothing to train",
            file=sys.stderr,
        )
    epochs = None if args.no_progress else _epoch_bar(config.train.epochs, completed)
    attacks = None if args.no_progress else _attack_bar()
    try:
        result = run_experiment(
            config, run_dir=run_dir, reporter=epochs, resume_from=args.resume_from, eval_progress=attacks
        )
    finally:
        for bar in (epochs, attacks):
            if bar is not None:
                bar.close()
    _print_json(result.as_dict())
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ascl.experiment import evaluate_checkpoint

    overrides = dict(parse_override(item) for item in args.overrides)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)  # now, not after an evaluation that may take hours
    attacks = None if args.no_progress else _attack_bar()
    try:
        report = evaluate_checkpoint(
            args.checkpoint, out_dir=args.out, device=args.device, overrides=overrides, progress=attacks
        )
    finally:
        if attacks is not None:
            attacks.close()
    _print_json(report.as_dict() if args.flags else report.summary())
    return 0


def _presets(args: argparse.Namespace) -> int:
    if args.name:
        print(get_preset(args.name).to_json())
    else:
        for name in sorted(PRESETS):
            cfg = PRESETS[name]
            print(
                f"{name:32s} {cfg.data.dataset:9s} {cfg.model.arch:16s} {cfg.objective.kind:8s} "
                f"eps={cfg.attack.eps:g} epochs={cfg.train.epochs}"
            )
    return 0


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2))


def _default_run_dir(name: str) -> Path:
    """runs/<name>, where the name must be one directory's name."""
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ConfigError("name", f"{name!r} cannot name a directory under runs/: change it or pass --run-dir")
    return Path("runs") / name


def _completed_epochs(run_dir: Path, config: ExperimentConfig) -> int:
    """Epochs the run directory's checkpoint has trained, refusing one of a different experiment."""
    from ascl.run_files import LAST
    from ascl.training.state import read_resumable

    checkpoint = read_resumable(run_dir / LAST, config)
    return 0 if checkpoint is None else int(checkpoint["epoch"])


def _epoch_bar(epochs: int, completed: int) -> Any:
    from ascl.training.progress import ProgressBarReporter, ProgressLines

    return (
        ProgressBarReporter(epochs=epochs, completed=completed) if sys.stderr.isatty() else ProgressLines(epochs=epochs)
    )


def _attack_bar() -> Any:
    from ascl.training.progress import AttackProgressBar, AttackProgressLines

    return AttackProgressBar() if sys.stderr.isatty() else AttackProgressLines()


if __name__ == "__main__":
    raise SystemExit(main())
