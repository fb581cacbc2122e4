"""How every bench script reports a figure: one JSON line on stdout, appended to --out too."""

from __future__ import annotations

import json


def emit(row: dict[str, object], out: str | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with open(out, "a") as handle:
            handle.write(line + "\n")
