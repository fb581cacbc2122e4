"""Path, query and header parameters shared by the routes, each bounded to a safe alphabet."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from service.contracts import JOB_ID_PATTERN

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN)]
