"""`ascl jobs ...` and `ascl sweeps ...` over real HTTP take an id as their lists show it: its first 8
characters, or any start of it that names one job (or sweep) alone."""

from __future__ import annotations

import json
import uuid

from ascl.cli import main
from service.api.app import create_app
from service.cluster import StaticCluster
from service.settings import ServiceSettings
from tests.conftest import make_token, serving


def test_a_job_or_a_sweep_is_named_by_the_start_of_its_id(sessions, tmp_path, capsys, monkeypatch):
    made = iter([uuid.UUID("abcd1111" + "0" * 24), uuid.UUID("abcd2222" + "0" * 24)])
    real = uuid.uuid4
    monkeypatch.setattr(uuid, "uuid4", lambda: next(made, None) or real())  # two jobs' ids share "abcd"
    app = create_app(sessions, settings=ServiceSettings(data_dir=tmp_path), cluster=StaticCluster({"CPU": 8.0}))
    with serving(app) as port:
        connection = ["--api", f"http://127.0.0.1:{port}", "--token", make_token(sessions, "alice", "user")]
        for key in ("first", "second"):
            assert main(["jobs", "submit", "--preset", "digits-ascl", "--idempotency-key", key, *connection]) == 0
        capsys.readouterr()
        assert main(["jobs", "get", "abcd1111", *connection]) == 0
        assert f"job abcd1111{'0' * 24}" in capsys.readouterr().out
        assert main(["jobs", "cancel", "abcd2", *connection]) == 0
        assert '"status": "CANCELLED"' in capsys.readouterr().out
        assert main(["jobs", "get", "abcd", *connection]) == 2
        assert "more than one job id starts with abcd: give more of it" in capsys.readouterr().err
        assert main(["jobs", "events", "ffff", *connection]) == 2
        assert "no job id starts with ffff" in capsys.readouterr().err
        # the jobs a submission names, too
        assert main(["jobs", "submit", "--preset", "digits-ascl", "--depends-on", "abcd1:any", *connection]) == 0
        depends_on = json.loads(capsys.readouterr().out)["depends_on"]
        assert depends_on == [f"abcd1111{'0' * 24}"]
        assert main(["jobs", "submit", "--eval", "abcd1111", *connection]) == 2
        assert f"abcd1111{'0' * 24}" in capsys.readouterr().err  # named whole: found, and not evaluable yet

        space = ["--space", "optim.lr=0.01,0.02"]
        assert main(["sweeps", "create", "--preset", "digits-ascl", *space, *connection]) == 0
        sweep_id = json.loads(capsys.readouterr().out)["id"]
        assert main(["sweeps", "get", sweep_id[:8], "--json", *connection]) == 0
        assert sweep_id in capsys.readouterr().out
