"""The README's first command (after its install step): `ascl serve --demo` on the embedded defaults."""

import json
import subprocess
import sys

import pytest

from control.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_serve_demo_goes_from_rest_submission_to_a_registered_model(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ascl.cli",
            "serve",
            "--demo",
            "--exit-after-demo",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "API:" in run.stdout
    assert "MLflow UI:  http://127.0.0.1:" in run.stdout
    summary = json.loads(run.stdout[run.stdout.index("{") : run.stdout.rindex("}") + 1])
    assert summary["status"] == "SUCCEEDED"
    assert summary["registered_model"] == "models:/digits-ascl-demo/1"
    assert summary["pgd_acc"] > 0.1
    assert (tmp_path / "d" / "jobs.db").exists()
    assert (tmp_path / "d" / "mlflow.db").exists()
