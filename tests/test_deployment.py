"""The compose file and images are validated here (no Docker engine runs on CI machines)."""

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


def test_the_api_image_needs_no_torch():
    runs = [
        line for line in (ROOT / "docker" / "service.Dockerfile").read_text().splitlines() if line.startswith("RUN")
    ]
    assert any(".[service]" in line for line in runs)
    assert not any("torch" in line for line in runs)
