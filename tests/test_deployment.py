"""The compose file and images are validated here (no Docker engine runs on CI machines): they
start what exists, and nothing in them is reachable without authentication or has a default secret."""

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import yaml

from service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_builds_from_a_dockerfile_in_the_repository():
    for name, service in compose()["services"].items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        else:
            assert "image" in service, name


def test_start_order_is_gated_on_health_and_the_one_shot_migration():
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)
            if expected == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    assert services["migrate"]["command"] == ["python", "-m", "service.db.migrate"]


def test_gpu_workers_reserve_gpus_and_share_the_checkpoint_volume():
    services = compose()["services"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    for name in ("ray-head", "ray-worker", "dispatcher"):
        assert "checkpoints:/data/checkpoints" in services[name]["volumes"], name


def test_environment_names_are_settings_the_service_reads():
    known = {f"ASCL_{name.upper()}" for name in ServiceSettings.model_fields}
    for name, service in compose()["services"].items():
        for variable in service.get("environment") or {}:
            if variable.startswith("ASCL_"):
                assert variable in known, (name, variable)


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command the deployment runs: compose commands and image CMDs."""
    found = [(name, s["command"]) for name, s in compose()["services"].items() if isinstance(s.get("command"), list)]
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("CMD "):
                found.append((dockerfile.name, yaml.safe_load(line[4:])))
    return found


def test_every_python_module_the_deployment_starts_exists():
    started = []
    for where, argv in commands():
        if argv[:2] == ["python", "-m"]:
            started.append((where, argv[2]))
        if argv[0] == "uvicorn":
            module, _, factory = argv[argv.index("--factory") + 1].partition(":")
            started.append((where, module))
            assert hasattr(importlib.import_module(module), factory), (where, factory)
    assert {"service.db.migrate", "control", "control.asgi"} <= {module for _, module in started}
    for where, module in started:
        assert importlib.util.find_spec(module) is not None, (where, module)


def test_the_images_copy_every_package_they_run():
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        copied = {line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")}
        for source in copied:
            assert (ROOT / source).exists(), (dockerfile.name, source)
        if "pip install" in dockerfile.read_text() and '".[' in dockerfile.read_text():
            assert {"ascl", "service", "control"} <= copied, dockerfile.name


def test_no_secret_has_a_default_and_every_one_is_required():
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("ASCL_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "RAY_AUTH_TOKEN"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(use.startswith(":?") for use in uses), secret  # compose refuses to start when unset
    for name, service in compose()["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if "PASSWORD" in variable or "TOKEN" in variable:
                assert str(value).startswith("${"), (name, variable)  # from the operator, never a literal
    assert ":ascl@" not in text
    assert "mlflow:mlflow@" not in text


def test_mlflow_requires_a_login_and_has_its_own_database_user():
    mlflow = compose()["services"]["mlflow"]
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    store = command[command.index("--backend-store-uri") + 1]
    assert store.startswith("postgresql+psycopg://mlflow:")
    assert not compose()["x-service-env"]["ASCL_DATABASE_URL"].startswith("postgresql+psycopg://mlflow:")
    init = (ROOT / "docker" / "postgres-init.sh").read_text()
    assert "CREATE ROLE mlflow" in init
    assert "CREATE DATABASE mlflow OWNER mlflow" in init
    auth = (ROOT / "docker" / "mlflow-auth.ini").read_text()
    assert "admin_password" not in auth.replace("# ", "")  # it comes from the environment only
    assert "mlflow[auth]" in (ROOT / "docker" / "mlflow.Dockerfile").read_text()
    for name in ("dispatcher", "api", "ray-worker"):
        environment = compose()["services"][name]["environment"]
        assert environment["MLFLOW_TRACKING_USERNAME"] == "admin", name
        assert environment["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?"), name


def test_ray_uses_token_auth_everywhere_and_is_published_on_loopback_only():
    services = compose()["services"]
    for name in ("ray-head", "ray-worker", "dispatcher", "api"):
        environment = services[name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert environment["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name
    for name, service in services.items():
        for port in service.get("ports") or []:
            if name not in ("api", "mlflow"):  # the two with their own login
                assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_api_image_needs_no_torch():
    runs = [
        line for line in (ROOT / "docker" / "service.Dockerfile").read_text().splitlines() if line.startswith("RUN")
    ]
    assert any(".[service]" in line for line in runs)
    assert not any("torch" in line for line in runs)


def test_checkpoints_live_on_the_volume_every_ray_node_and_the_dispatcher_mount():
    services = compose()["services"]
    uri = services["dispatcher"]["environment"]["ASCL_CHECKPOINT_URI"]
    root = ServiceSettings(checkpoint_uri=uri).checkpoint_root
    for name in ("ray-head", "ray-worker", "dispatcher"):
        assert str(root) in [volume.split(":")[1] for volume in services[name]["volumes"]], name


def run_suites(pytest: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "run-suites"), *args],
        env={**os.environ, "PYTEST": pytest},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_suite_runner_exits_with_the_suites_status(tmp_path):
    """Both suites passing is exit 0 (a failing `kill` in its exit trap once made it 1), either failing
    is that failure's status, and "nothing collected" passes with a message."""
    assert run_suites("true").returncode == 0
    assert run_suites("false").returncode == 1
    assert run_suites("true", "tests/ascl").returncode == 0
    collects_nothing = tmp_path / "collects-nothing"
    collects_nothing.write_text("#!/bin/sh\nexit 5\n")
    collects_nothing.chmod(0o755)
    nothing = run_suites(str(collects_nothing), "-k", "no-such-test")
    assert nothing.returncode == 0
    assert "collected no tests" in nothing.stderr
