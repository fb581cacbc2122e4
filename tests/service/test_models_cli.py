"""`ascl models ...` over real HTTP (uvicorn on a local port) against a real MLflow store: the
tables, --json, a refused promotion's exit status and reason, and the comparison plot written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ascl.cli import main
from service.api.app import create_app
from service.auth import models
from service.auth.principal import Principal, Role
from service.cluster import StaticCluster
from service.db import session_scope
from service.settings import ServiceSettings
from tests.conftest import make_token, serving
from tests.service.test_models_api import VERSIONS, register_versions, store  # noqa: F401 (fixture)


@pytest.fixture
def cli(sessions, store, tmp_path) -> Iterator[tuple[list[str], str]]:  # noqa: F811 (the fixture, used)
    tracker, run_id, counter = store
    name = register_versions(tracker, run_id, counter)
    with session_scope(sessions) as session:
        models.claim(session, name, Principal(subject="alice", role=Role.USER), group=None)
    app = create_app(sessions, settings=ServiceSettings(data_dir=tmp_path), cluster=StaticCluster(), registry=tracker)
    with serving(app) as port:
        yield ["--api", f"http://127.0.0.1:{port}", "--token", make_token(sessions, "alice", "user")], name


def test_models_commands_print_tables_json_reasons_and_the_plot(cli, capsys, tmp_path):
    connection, name = cli
    assert main(["models", "promote", name, "2", *connection]) == 1  # refused: a failure for scripts
    assert "refused: version 2 has not been evaluated yet" in capsys.readouterr().out
    assert main(["models", "promote", name, "1", *connection]) == 0
    assert f"promoted {name} version 1 to @champion" in capsys.readouterr().out

    assert main(["models", "get", name, "--sort", "clean_acc", *connection]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["VERSION", "ALIASES", "EVALUATION", "THREAT", "MODEL", "CLEAN", "PGD", "AUTOATTACK",
                                "EXAMPLES", "JOB"]  # fmt: skip
    assert lines[2].split()[:7] == ["3", "evaluated", "linf", "0.2", "92.0%", "37.0%", "35.0%"]
    champion = next(line for line in lines if "@champion" in line)
    assert champion.split()[0] == "1"
    assert lines[-1].split()[-1] == "alice"  # the alias move, with its actor
    assert main(["models", "get", name, "--sort", "clean_acc", "--limit", "2", *connection]) == 0
    assert f"(the first 2 of {len(VERSIONS)} versions, as sorted)" in capsys.readouterr().out
    assert main(["models", "list", *connection]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split() == [name, "alice", str(len(VERSIONS)), str(len(VERSIONS)), "1", "90.0%", "40.0%"]
    assert main(["models", "list", "--json", *connection]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["champion"]["version"] == "1"

    plot = tmp_path / "compare.png"
    assert main(["models", "compare", name, "-o", str(plot), *connection]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")
