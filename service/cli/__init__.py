"""`ascl jobs`, `ascl tokens` (and the other API commands), added to the `ascl` command through the
`ascl.commands` entry point: clients of the REST API, needing only httpx."""

from __future__ import annotations

import argparse

from service.cli import jobs, models, sweeps, tokens


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    jobs.register(commands)
    models.register(commands)
    sweeps.register(commands)
    tokens.register(commands)
