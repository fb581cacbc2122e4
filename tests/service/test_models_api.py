"""The model endpoints against a real MLflow registry (a local store) and real databases: versions
with their figures side by side, `@champion` moved only by the rules (each refusal says why, each
move is recorded), the comparison plot, and the evaluation cache (an identical eval request links
to the existing job instead of running again)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import mlflow.store.model_registry.sqlalchemy_store as sql_store
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from ascl.presets import get_preset
from control.tracking import Tracker
from service.api.app import create_app
from service.auth import models
from service.auth.principal import Principal, Role
from service.cluster import StaticCluster
from service.db import session_scope
from service.models.evaluation import StandardEval, standard_overrides
from service.models.figures import Figures
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token

NAME = "digits-robust"
TRAINED = get_preset("digits-ascl").with_overrides({"train.epochs": 1, "attack.eps": 0.2})


def figures(clean: float, robust: float, *, eps: float = 0.2) -> Figures:
    return Figures(
        norm="linf",
        epsilon=eps,
        clean_acc=clean,
        pgd_acc=robust + 0.02,
        pgd_steps=20,
        autoattack_acc=robust,
        autoattack_version="standard",
        examples=300,
        eval_job_id=None,
        eval_run_id=None,
    )


# version → its figures (None: not evaluated): 1 the first champion, then each rule's case
VERSIONS: list[Figures | None] = [
    figures(0.90, 0.40),
    None,
    figures(0.92, 0.35),  # robust accuracy not better
    figures(0.91, 0.50, eps=0.1),  # another threat model
    figures(0.80, 0.45),  # clean accuracy drops by 0.10
    figures(0.895, 0.45),  # better, and within the clean margin
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one costs seconds); each test gets its own model."""
    root = tmp_path_factory.mktemp("mlflow")
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "artifacts").as_uri())
    _, run_id = tracker.ensure_run(experiment="ascl", job_id="j" * 32, run_name="trained", tags={})
    MlflowClient(tracker.tracking_uri).log_text(run_id, TRAINED.to_json(), "config.json")
    return tracker, run_id, itertools.count()


def register_versions(tracker: Tracker, run_id: str, counter: Iterator[int]) -> str:
    """A new model with VERSIONS as its versions (and their figures as tags); returns its name."""
    name = f"{NAME}-{next(counter)}"
    client = MlflowClient(tracker.tracking_uri)
    client.create_registered_model(name)
    for shown in VERSIONS:
        tags = {"ascl.job_id": "j" * 32} | ({} if shown is None else shown.to_tags())
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    return name


@pytest.fixture
def name(store):
    return register_versions(*store)


@pytest.fixture
def tracker(store):
    return store[0]


@pytest.fixture
def api(sessions, tracker, name, tmp_path):
    settings = ServiceSettings(data_dir=tmp_path, auto_eval_autoattack="none", auto_eval_examples=100)
    with session_scope(sessions) as session:
        models.claim(session, name, Principal(subject="alice", role=Role.USER), group=None)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}), registry=tracker)
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as client:
        yield client


def promote(api, name: str, version: str, **extra):
    response = api.post(f"/api/v1/models/{name}/promote", json={"version": version, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_champion_moves_only_by_the_rules_and_every_move_is_recorded(api, tracker, name):
    refused = promote(api, name, "2")
    assert (refused["promoted"], refused["reason"]) == (False, "version 2 has not been evaluated yet")
    first = promote(api, name, "1")
    assert first["promoted"], first
    assert first["move"]["previous_version"] is None
    assert first["move"]["actor"] == "alice"
    for version, reason in (
        ("3", "robust accuracy not better: 0.3500 against the champion's 0.4000"),
        ("4", "different threat model: version 4 was evaluated at linf eps=0.1"),
        ("5", "clean accuracy drops by 0.1000"),
        ("1", "already holds the alias"),
    ):
        answer = promote(api, name, version)
        assert answer["promoted"] is False
        assert reason in answer["reason"]
    assert promote(api, name, "5", max_clean_drop=0.2)["promoted"] is True  # a wider margin, asked for explicitly
    better = promote(api, name, "6", max_clean_drop=0.2)
    assert better["promoted"] is False  # 0.45 does not beat version 5's 0.45
    assert [v.aliases for v in tracker.versions(name) if v.aliases] == [["champion"]]
    detail = api.get(f"/api/v1/models/{name}").json()
    moves = detail["alias_moves"]
    assert [(m["version"], m["previous_version"]) for m in moves] == [("5", "1"), ("1", None)]  # newest first
    assert moves[0]["figures"]["candidate_robust_acc"] == pytest.approx(0.45)
    assert moves[0]["figures"]["champion_robust_acc"] == pytest.approx(0.40)
    assert next(v for v in detail["versions"] if v["version"] == "5")["aliases"] == ["champion"]


def test_only_the_owner_or_an_admin_moves_aliases(api, sessions, name):
    other = {"Authorization": f"Bearer {make_token(sessions, 'bob', 'user')}"}
    response = api.post(f"/api/v1/models/{name}/promote", json={"version": "1"}, headers=other)
    assert response.status_code == 403
    assert "only its owner" in response.json()["detail"]
    admin = {"Authorization": f"Bearer {make_token(sessions, 'root', 'admin')}"}
    answer = api.post(f"/api/v1/models/{name}/promote", json={"version": "1"}, headers=admin).json()
    assert answer["move"]["actor"] == "root"


def test_versions_side_by_side_sorted_with_the_unevaluated_last(api, name):
    detail = api.get(f"/api/v1/models/{name}", params={"sort": "autoattack_acc", "order": "desc"}).json()
    assert [v["version"] for v in detail["versions"]] == ["4", "5", "6", "1", "3", "2"]
    assert detail["versions"][-1]["evaluation"] == "none"
    four = detail["versions"][0]
    assert four["robustness"]["threat_model"] == {"norm": "linf", "epsilon": 0.1}
    assert four["robustness"]["clean_acc"] == pytest.approx(0.91)
    assert four["robustness"]["examples"] == 300
    ascending = api.get(f"/api/v1/models/{name}", params={"sort": "clean_acc", "order": "asc"}).json()
    assert [v["version"] for v in ascending["versions"]][:2] == ["5", "6"]
    promote(api, name, "1")
    listing = api.get("/api/v1/models").json()["models"]
    assert [(m["name"], m["versions"], m["latest_version"]) for m in listing] == [(name, 6, "6")]
    assert listing[0]["champion"]["version"] == "1"
    png = api.get(f"/api/v1/models/{name}/comparison.png")
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


def test_the_model_list_reads_every_version_again_only_once_versions_were_added_or_deleted(
    api, store, tracker, name, monkeypatch
):
    listings = []  # searches for every version (the newest alone is one result)
    search = tracker.client.search_model_versions

    def watched(*args, **kwargs):
        listings.extend([args] if kwargs.get("max_results") != 1 else [])
        return search(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "search_model_versions", watched)

    def listed():
        (model,) = api.get("/api/v1/models").json()["models"]
        return model["versions"], model["latest_version"], (model["champion"] or {}).get("version")

    assert listed() == (6, "6", None)
    promote(api, name, "1")
    assert listed() == (6, "6", "1")
    read = len(listings)
    assert listed() == (6, "6", "1")
    assert len(listings) == read  # the dashboard asks every two seconds: a model of thousands is read once
    client = MlflowClient(tracker.tracking_uri)
    with monkeypatch.context() as frozen:  # two versions within one millisecond: the time stays
        frozen.setattr(sql_store, "get_current_time_millis", lambda: 1_900_000_000_000)
        client.create_model_version(name, f"runs:/{store[1]}/model", run_id=store[1])
        assert listed() == (7, "7", "1")
        client.create_model_version(name, f"runs:/{store[1]}/model", run_id=store[1])
        assert listed() == (8, "8", "1")
    client.delete_model_version(name, "3")
    assert listed() == (7, "8", "1")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/models/it's", 422),
        ("GET", '/api/v1/models/a"b', 422),
        ("GET", "/api/v1/models/no-such-model", 404),
        ("GET", "/api/v1/models/no-such-model/comparison.png", 404),
        ("POST", "/api/v1/models/{name}/promote", 404),
    ],
)
def test_unknown_or_hostile_names_are_refused_without_a_server_error(api, name, method, path, status):
    """Names outside the registry's alphabet never reach it; an unknown version is a 404."""
    response = api.request(method, path.format(name=name), json={"version": "99"})
    assert response.status_code == status, response.text


def test_an_identical_evaluation_request_links_to_the_existing_job(api, name):
    trained = get_preset("digits-ascl").with_overrides({"train.epochs": 1, "attack.eps": 0.2})
    standard = standard_overrides(trained, StandardEval(pgd_steps=20, autoattack="none", examples=100))
    body = {"kind": "eval", "model": f"models:/{name}/2", "overrides": standard}
    first = api.post("/api/v1/jobs", json=body)
    assert first.status_code == 201, first.text
    again = api.post("/api/v1/jobs", json=body)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    other = api.post("/api/v1/jobs", json={**body, "overrides": {**standard, "eval.pgd_steps": 5}})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    racing = {**body, "overrides": {**standard, "eval.pgd_steps": 7}}
    with ThreadPoolExecutor(4) as pool:  # twins in one group commit, or in transactions that race
        answers = list(pool.map(lambda _: api.post("/api/v1/jobs", json=racing), range(4)))
    assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert len(api.get("/api/v1/jobs", params={"kind": "eval"}).json()["items"]) == 3
    version_two = next(v for v in api.get(f"/api/v1/models/{name}").json()["versions"] if v["version"] == "2")
    assert version_two["evaluation"] == "pending"  # the standard request counts as the standard evaluation


def test_a_cancelled_evaluation_is_run_again_on_request_and_its_retry_counts_as_the_standard_one(api, name):
    trained = get_preset("digits-ascl").with_overrides({"train.epochs": 1, "attack.eps": 0.2})
    standard = standard_overrides(trained, StandardEval(pgd_steps=20, autoattack="none", examples=100))
    body = {"kind": "eval", "model": f"models:/{name}/2", "overrides": standard}

    def evaluation_of_version_two() -> str:
        versions = api.get(f"/api/v1/models/{name}").json()["versions"]
        return next(v for v in versions if v["version"] == "2")["evaluation"]

    first = api.post("/api/v1/jobs", json=body).json()
    assert api.post(f"/api/v1/jobs/{first['id']}/cancel").status_code == 200
    assert evaluation_of_version_two() == "failed"
    again = api.post("/api/v1/jobs", json=body)
    assert again.status_code == 201, again.text  # not a link to the cancelled job
    assert again.json()["id"] != first["id"]
    assert evaluation_of_version_two() == "pending"
    assert api.post(f"/api/v1/jobs/{again.json()['id']}/cancel").status_code == 200
    retried = api.post(f"/api/v1/jobs/{again.json()['id']}/retry", json={})
    assert retried.status_code == 201, retried.text
    assert evaluation_of_version_two() == "pending"  # the retry is the version's standard evaluation now
    linked = api.post("/api/v1/jobs", json=body)
    assert (linked.status_code, linked.json()["id"]) == (200, retried.json()["id"])


def test_promotions_at_once_decide_one_after_another(api, tracker, name):
    promote(api, name, "1")
    with ThreadPoolExecutor(4) as pool:  # versions 5 and 6 both beat 1, and neither beats the other
        answers = list(pool.map(lambda v: promote(api, name, v, max_clean_drop=0.2), ["5", "6", "5", "6"]))
    winners = [answer["move"]["version"] for answer in answers if answer["promoted"]]
    assert len(winners) == 1, answers
    holder = next(v.version for v in tracker.versions(name) if "champion" in v.aliases)
    moves = api.get(f"/api/v1/models/{name}").json()["alias_moves"]
    assert [(m["version"], m["previous_version"]) for m in moves] == [(holder, "1"), ("1", None)]


@pytest.mark.parametrize(("subject", "role"), [("bob", "user"), ("vera", "viewer")])
def test_who_may_not_evaluate_a_model_learns_nothing_of_its_versions(api, sessions, name, subject, role):
    headers = bearer(make_token(sessions, subject, role))
    answers = {
        version: api.post("/api/v1/jobs", json={"kind": "eval", "model": f"models:/{name}/{version}"}, headers=headers)
        for version in ("1", "99")
    }
    assert [answer.status_code for answer in answers.values()] == [403, 403], {v: a.text for v, a in answers.items()}


def test_figures_tags_edited_in_mlflow_into_nonsense_count_as_no_figures(api, tracker, name):
    MlflowClient(tracker.tracking_uri).set_model_version_tag(name, "1", "robustness.norm", "$\\frac{$")  # mathtext
    png = api.get(f"/api/v1/models/{name}/comparison.png")
    assert png.status_code == 200, png.text
    version_one = next(v for v in api.get(f"/api/v1/models/{name}").json()["versions"] if v["version"] == "1")
    assert version_one["robustness"] is None


def test_a_model_no_job_here_trained_is_evaluated_by_admins_only(api, sessions, store):
    unclaimed = register_versions(*store)  # registered in MLflow by other means
    body = {"kind": "eval", "model": f"models:/{unclaimed}/1"}
    refused = api.post("/api/v1/jobs", json=body)
    assert refused.status_code == 403, refused.text
    assert "not trained on this service" in refused.json()["detail"]
    admin = api.post("/api/v1/jobs", json=body, headers=bearer(make_token(sessions, "root", "admin")))
    assert admin.status_code == 201, admin.text


def test_every_version_is_read_page_by_page(api, tracker, name, monkeypatch):
    import control.tracking

    monkeypatch.setattr(control.tracking, "VERSION_PAGE", 2)  # six versions: three pages
    assert [v.version for v in tracker.versions(name)] == ["1", "2", "3", "4", "5", "6"]
    MlflowClient(tracker.tracking_uri).set_model_version_tag(name, "1", "ascl.job_id", "k" * 32)
    assert tracker.register(model_uri="runs:/x/model", name=name, job_id="k" * 32, tags={}) == "1"  # found, not made
    assert len(api.get(f"/api/v1/models/{name}").json()["versions"]) == 6


def test_model_pages_hold_no_database_connection_while_the_registry_answers(sessions, tracker, name, tmp_path):
    engine = sessions.kw["bind"]
    held: list[int] = []

    class Watched:  # the real registry, noting the connections checked out whenever it is asked
        def __getattr__(self, attribute):
            return getattr(tracker, attribute)

        def versions(self, model):
            held.append(engine.pool.checkedout())
            return tracker.versions(model)

        def summary(self, model, alias):
            held.append(engine.pool.checkedout())
            return tracker.summary(model, alias)

    with session_scope(sessions) as session:
        models.claim(session, name, Principal(subject="alice", role=Role.USER), group=None)
    app = create_app(sessions, settings=ServiceSettings(data_dir=tmp_path), cluster=StaticCluster(), registry=Watched())
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as client:
        for path in ("/api/v1/models", f"/api/v1/models/{name}", f"/api/v1/models/{name}/comparison.png"):
            assert client.get(path).status_code == 200
    assert held == [0, 0, 0]  # a slow registry would hold one per request, out of everyone's pool


def test_a_model_page_shows_the_first_versions_as_sorted_and_how_many_there_are(api, name):
    top = api.get(f"/api/v1/models/{name}", params={"sort": "clean_acc", "order": "asc", "limit": 2}).json()
    assert ([v["version"] for v in top["versions"]], top["total_versions"]) == (["5", "6"], 6)
    for limit in (0, 1001):
        assert api.get(f"/api/v1/models/{name}", params={"limit": limit}).status_code == 422


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_promotions_from_several_api_processes_decide_one_after_another(api, sessions, tracker, name):
    """The per-process lock left out, as between two API processes: the owner row's lock orders them."""
    from service.api import models as model_routes
    from service.api.model_schemas import PromoteRequest

    promote(api, name, "1")
    alice = Principal(subject="alice", role=Role.USER)

    def promote_unlocked(version: str) -> bool:
        body = PromoteRequest(version=version, max_clean_drop=0.2)
        return model_routes._promote(name, body, tracker, sessions, alice).promoted

    with ThreadPoolExecutor(4) as pool:
        promoted = list(pool.map(promote_unlocked, ["5", "6", "5", "6"]))
    assert promoted.count(True) == 1, promoted
