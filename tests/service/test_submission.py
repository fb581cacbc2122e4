"""What is knowable at submission is checked at submission, against a real MLflow registry (a local
store) and real databases: an eval job's stored spec is exactly the config that runs (the trained
model's own config plus the overrides), a missing model or dataset is a 422 naming the field, and
every request field reaches the job (mlflow_experiment was once dropped)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from ascl.presets import get_preset
from control.tracking import Tracker
from service.api.app import create_app
from service.cluster import StaticCluster
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token

TRAINED = get_preset("digits-ascl").with_overrides({"train.epochs": 2, "eval.pgd_steps": 7, "attack.eps": 0.15})


@pytest.fixture
def tracker(tmp_path, new_mlflow_store):
    tracker = Tracker(new_mlflow_store(tmp_path), artifact_root=(tmp_path / "artifacts").as_uri())
    _, run_id = tracker.ensure_run(experiment="ascl", job_id="j" * 32, run_name="trained", tags={})
    client = MlflowClient(tracker.tracking_uri)
    client.log_text(run_id, TRAINED.to_json(), "config.json")
    client.create_registered_model("digits-robust")
    client.create_model_version("digits-robust", f"runs:/{run_id}/model", run_id=run_id)
    client.create_model_version("digits-robust", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("digits-robust", "champion", "1")
    tracker.run_id = run_id  # type: ignore[attr-defined]
    return tracker


@pytest.fixture
def api(sessions, tracker, tmp_path):
    settings = ServiceSettings(data_dir=tmp_path, data_root=tmp_path / "datasets")
    (tmp_path / "datasets").mkdir()
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}), registry=tracker)
    with TestClient(app, headers=bearer(make_token(sessions))) as client:
        yield client


def submit(api, body):
    return api.post("/api/v1/jobs", json=body)


def test_eval_by_version_stores_the_trained_config_with_the_overrides(api, tracker):
    response = submit(api, {"kind": "eval", "model": "models:/digits-robust/2", "overrides": {"eval.pgd_steps": 3}})
    assert response.status_code == 201, response.text
    job = api.get(f"/api/v1/jobs/{response.json()['id']}").json()
    expected = TRAINED.with_overrides({"eval.pgd_steps": 3}).to_dict()
    assert job["spec"] == expected  # the digits model's config, not the default cifar10/resnet18 experiment
    assert job["target"] == {
        "requested": "models:/digits-robust/2",
        "model_name": "digits-robust",
        "model_version": "2",
        "run_id": tracker.run_id,
        "job_id": None,
    }


def test_eval_by_alias_is_pinned_to_the_version_the_alias_names_at_submission(api):
    job = submit(api, {"kind": "eval", "model": "models:/digits-robust@champion"}).json()
    assert job["target"]["model_version"] == "1"
    assert job["target"]["requested"] == "models:/digits-robust@champion"
    assert job["spec"] == TRAINED.to_dict()


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("models:/no-such-model/1", "not in the model registry"),
        ("models:/digits-robust/9", "not in the model registry"),
        ("models:/digits-robust@nobody", "not in the model registry"),
        ("models:/it's/1", "expected models:/NAME/VERSION"),
        ("digits-robust", "use models:/NAME/VERSION, models:/NAME@ALIAS"),
    ],
)
def test_a_model_that_cannot_be_evaluated_is_refused_at_submission(api, model, fragment):
    response = submit(api, {"kind": "eval", "model": model})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "model"
    assert fragment in response.json()["detail"]
    assert api.get("/api/v1/jobs").json()["items"] == []


def test_eval_overrides_are_validated_against_the_trained_config(api):
    response = submit(api, {"kind": "eval", "model": "models:/digits-robust/1", "overrides": {"eval.pgd_step": 3}})
    assert (response.status_code, response.json()["field"]) == (422, "overrides.eval.pgd_step")
    assert "did you mean 'pgd_steps'" in response.json()["detail"]
    same = submit(api, {"kind": "eval", "model": "models:/digits-robust/1", "overrides": {"model.arch": "cnn8"}})
    assert same.status_code == 201, same.text  # the trained model's own value
    other = submit(api, {"kind": "eval", "model": "models:/digits-robust/1", "overrides": {"model.arch": "resnet18"}})
    assert (other.status_code, other.json()["field"]) == (422, "overrides.model.arch")
    assert "the trained model has 'cnn8'; evaluation cannot change it" in other.json()["detail"]


def test_a_dataset_missing_under_the_data_root_is_refused_with_the_fix(api, tmp_path):
    response = submit(api, {"preset": "paper-cifar10-resnet18-ascl", "force_queue": True})
    assert (response.status_code, response.json()["field"]) == (422, "data.data_dir")
    detail = response.json()["detail"]
    assert str(tmp_path / "datasets" / "data") in detail
    assert "cifar-10-batches-py" in detail
    assert "data.download=true" in detail
    (tmp_path / "datasets" / "data" / "cifar-10-batches-py").mkdir(parents=True)
    accepted = submit(api, {"preset": "paper-cifar10-resnet18-ascl", "force_queue": True})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["spec"]["data"]["data_dir"] == str(tmp_path / "datasets" / "data")  # what runs


def test_an_eval_jobs_default_name_fits_however_long_its_model_name(api, tracker):
    """'eval models:/<name>/1' is longer than a job name may be when the model's name is at its own
    limit (PostgreSQL refused it with a server error)."""
    name = "m" * 200
    client = MlflowClient(tracker.tracking_uri)
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{tracker.run_id}/model", run_id=tracker.run_id)
    response = submit(api, {"kind": "eval", "model": f"models:/{name}/1"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == f"eval models:/{name}/1"[:200]


def test_a_data_dir_in_the_home_of_no_user_is_422(api):
    body = {"preset": "paper-cifar10-resnet18-ascl", "overrides": {"data.data_dir": "~nosuchuser12345/x"}}
    response = submit(api, body)
    assert (response.status_code, response.json()["field"]) == (422, "data.data_dir"), response.text
    assert "names no home directory" in response.json()["detail"]


@pytest.mark.parametrize(
    ("experiment", "overrides", "answer"),
    [
        # a spec that holds only with its overrides is checked whole, with them
        ({"data": {"dataset": "synthetic", "synthetic_size": 512}}, {"data.val_size": 100}, (201, None)),
        ({"data": {"dataset": "digits", "train_subset": 64}}, {"train.batch_size": 32}, (201, None)),
        ({"data": {"dataset": "synthetic", "synthetic_size": 512}}, {}, (422, "experiment.data.val_size")),
        ({"data": {"dataset": "digits"}}, {"train.batch_size": 4096}, (422, "overrides.train.batch_size")),
        ({"trian": {"epochs": 3}}, {}, (422, "experiment.trian")),
        ({"seed": {}}, {}, (422, "experiment.seed")),  # a field is not split as a section
        ({"data.val_size": 100}, {}, (422, "experiment.data.val_size")),  # a spec nests, overrides are dotted
        ({}, {"trian.epochs": 1}, (422, "overrides.trian")),  # named where it was given
    ],
)
def test_a_full_spec_is_checked_with_its_overrides_as_one_config(api, experiment, overrides, answer):
    response = submit(api, {"experiment": experiment, "overrides": overrides})
    assert (response.status_code, response.json().get("field")) == answer, response.text


def test_every_request_field_reaches_the_job_and_its_retry(api):
    body = {
        "preset": "digits-ascl",
        "mlflow_experiment": "robustness sweeps",
        "queue": "gpu",
        "priority": 7,
        "tags": ["a", "b"],
        "model_name": "mine",
        "max_runtime_s": 600,
        "max_infra_retries": 1,
        "resources": {"cpus": 2},
    }
    api.put("/api/v1/queues/gpu", json={"max_gpus": 8})
    job = submit(api, body).json()
    stored = api.get(f"/api/v1/jobs/{job['id']}").json()
    for key in ("mlflow_experiment", "queue", "priority", "tags", "model_name", "max_runtime_s", "max_infra_retries"):
        assert stored[key] == job[key] == body[key], key
    assert stored["resources"]["cpus"] == 2
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    retried = api.post(f"/api/v1/jobs/{job['id']}/retry", json={"overrides": {"train.epochs": 1}}).json()
    assert retried["mlflow_experiment"] == "robustness sweeps"
    shown = (retried["queue"], retried["priority"], retried["tags"], retried["model_name"])
    assert shown == ("gpu", 7, ["a", "b"], "mine")
    assert (retried["max_runtime_s"], retried["max_infra_retries"], retried["resources"]) == (
        600,
        1,
        stored["resources"],
    )
    assert retried["spec"]["train"]["epochs"] == 1


def test_timestamps_are_rfc3339_with_an_offset_everywhere(api):
    job = submit(api, {"preset": "digits-ascl"}).json()
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    shown = [
        api.get(f"/api/v1/jobs/{job['id']}").json()["created_at"],
        api.get(f"/api/v1/jobs/{job['id']}").json()["finished_at"],
        api.get("/api/v1/jobs").json()["items"][0]["created_at"],
        *(event["at"] for event in api.get(f"/api/v1/jobs/{job['id']}/events").json()),
    ]
    for text in shown:
        assert text.endswith("+00:00"), text
        assert datetime.fromisoformat(text).utcoffset() is not None


def test_the_experiment_schema_in_openapi_is_generated_from_the_config(api):
    schema = api.get("/openapi.json").json()
    create = schema["components"]["schemas"]["JobCreate"]["properties"]
    overrides = create["overrides"]["properties"]
    assert overrides["train.epochs"]["minimum"] == 1
    assert overrides["objective.neg_type"]["enum"] == ["all", "hard", "soft", "merge", "leaked"]
    assert overrides["attack.eps"]["default"] == 0.031
    assert create["overrides"]["additionalProperties"] is False
    experiment = json.dumps(create["experiment"])
    assert '"temperature"' in experiment
    assert '"exclusiveMinimum": 0' in experiment
