"""The API process leaves its start-up heap to no garbage collection (a full collection walked it all:
a ~300 ms stall of every request under load)."""

from __future__ import annotations

import os
import subprocess
import sys

APP_THEN_FROZEN = (
    "import gc; from control.asgi import create_app_from_env; create_app_from_env(); print(gc.get_freeze_count())"
)


def test_the_standalone_api_process_freezes_its_start_up_heap(tmp_path):
    env = {**os.environ, "ASCL_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}", "ASCL_DATA_DIR": str(tmp_path)}
    started = subprocess.run(
        [sys.executable, "-c", APP_THEN_FROZEN], env=env, capture_output=True, text=True, timeout=180, check=True
    )
    assert int(started.stdout.split()[-1]) > 100_000  # the imports' objects, not a handful
