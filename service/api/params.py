"""Path, query and header parameters shared by the routes, each bounded to a safe alphabet."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

JobId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
