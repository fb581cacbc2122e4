"""End to end: a digits train job registers a version, its standard evaluation runs by itself on
Ray and tags the version, and the model endpoints then show and promote it."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN = {
    "kind": "train",
    "preset": "digits-ascl",
    "model_name": "digits-models",
    "overrides": {"train.epochs": 1, "data.train_subset": 128, "eval.pgd_steps": 2, "eval.val_steps": 1},
}


def test_a_registered_version_is_evaluated_by_itself_and_tagged(embedded):
    service = embedded
    client = service.client
    trained = client.wait(client.submit(TRAIN)["id"], timeout_s=300)
    assert trained["status"] == "SUCCEEDED", trained["error_message"]
    evals = wait_for(lambda: client.list(kind="eval")["items"], timeout_s=30, what="the standard eval job")
    assert [job["target"]["model_version"] for job in evals] == ["1"]
    evaluated = client.wait(evals[0]["id"], timeout_s=300)
    assert evaluated["status"] == "SUCCEEDED", evaluated["error_message"]

    (version,) = client.model("digits-models")["versions"]
    assert version["evaluation"] == "evaluated"
    figures = version["robustness"]
    assert figures["examples"] == 32
    assert figures["autoattack_acc"] is not None
    assert figures["threat_model"]["epsilon"] == pytest.approx(trained["spec"]["attack"]["eps"])
    assert figures["eval_job_id"] == evaluated["id"]
    tags = MlflowClient(service.stack.tracker.tracking_uri).get_model_version("digits-models", "1").tags
    assert float(tags["robustness.clean_acc"]) == pytest.approx(figures["clean_acc"])
    assert tags["robustness.plot"] == f"runs:/{evaluated['mlflow_run_id']}/eps_sweep.png"

    promoted = client.promote("digits-models", "1")
    assert promoted["promoted"], promoted["reason"]
    champions = {model["name"]: model["champion"] for model in client.models()["models"]}
    assert champions["digits-models"]["version"] == "1"
    assert client.comparison_png("digits-models").startswith(b"\x89PNG")
