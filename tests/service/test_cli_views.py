"""What the `ascl jobs` commands print: the jobs table, a waiting or running job's place and progress,
case-insensitive filters, and one clear line when no API answers."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from ascl.cli import build_parser, main
from control.ports import free_port
from service.cli.common import call
from service.cli.render import JOB_COLUMNS, job_rows, job_summary, table, visible
from service.client import ApiError


def job(**fields):
    return {
        "id": "0123456789abcdef",
        "name": "digits",
        "kind": "train",
        "status": "QUEUED",
        "queue": "default",
        "queue_position": None,
        "pending_reason": None,
        "progress": None,
        "created_at": (datetime.now(UTC) - timedelta(minutes=5, seconds=1)).isoformat(),
        **fields,
    }


def test_the_jobs_table_shows_place_reason_progress_and_age():
    waiting = job(queue_position=3, pending_reason="RESOURCES")
    running = job(
        id="fedcba9876543210", status="RUNNING", progress={"epoch": 1, "epochs": 5, "step": 2, "total_steps": 5}
    )
    long_name = job(name="x" * 60, status="SUCCEEDED")
    lines = table(JOB_COLUMNS, job_rows([waiting, running, long_name])).splitlines()
    assert lines[0].split() == ["ID", "NAME", "KIND", "STATUS", "QUEUE", "POSITION/REASON", "PROGRESS", "AGE"]
    assert lines[1].split() == ["01234567", "digits", "train", "QUEUED", "default", "#3", "RESOURCES", "5m"]
    assert "epoch 2/5 40%" in lines[2]
    assert "x" * 27 + "…" in lines[3]


def test_control_characters_from_the_service_are_shown_not_obeyed():
    """A name stored before names were checked, or an error message, must not clear the screen,
    retitle the window or overwrite a line on whoever lists it."""
    hostile = "ok\x1b[2J\x1b]0;owned\x07\rFAKE\nrow"
    lines = table(JOB_COLUMNS, job_rows([job(name=hostile[:28])])).splitlines()
    assert len(lines) == 2
    assert "\\x1b[2J" in lines[1]
    summary = job_summary(
        job(name=hostile, owner="bob", priority=0, resources={}, error_class="USER_ERROR", error_message="a\nb\x1b")
    )
    assert not any(c in summary for c in "\x1b\x07\r")
    assert summary.splitlines()[0].startswith("ok\\x1b[2J")
    assert summary.splitlines()[0].endswith("owner bob)")  # the name's newline did not start a line
    log = "2026-11-29 09:18:35,096\tINFO job_manager.py:581\x1b[2J\nnext\r"
    assert visible(log, lines=True) == "2026-11-29 09:18:35,096\tINFO job_manager.py:581\\x1b[2J\nnext\\r"
    assert visible("a\tb") == "a\\tb"  # one cell of a table: no tab to shift the columns
    assert "error      USER_ERROR: a\nb\\x1b" in summary  # an error message keeps its lines


def test_a_models_page_shows_names_owners_and_actors_with_control_characters_as_escapes():
    from service.cli.models import detail_text

    move = {
        "at": "2026-11-28",
        "alias": "champion",
        "version": "2",
        "previous_version": "1",
        "actor": "eve\x1b]0;x\x07",
    }
    shown = {"name": "m\x1b[2J", "owner": "bob\x1b[2J", "versions": [], "total_versions": 0, "alias_moves": [move]}
    text = detail_text(shown)
    assert text.splitlines()[0] == "m\\x1b[2J (owner bob\\x1b[2J)"  # an identity provider's subject, too
    assert text.splitlines()[-1].endswith("by eve\\x1b]0;x\\x07")


def test_status_filters_are_accepted_in_any_case():
    args = build_parser().parse_args(["jobs", "list", "--status", "running", "--status", "Queued"])
    assert args.status == ["RUNNING", "QUEUED"]


def test_no_api_is_one_line_naming_the_url_and_how_to_start_one(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["jobs", "list", "--api", url, "--token", "t"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert url in err
    assert "ascl serve" in err


def test_an_api_error_naming_back_what_was_sent_is_shown_not_obeyed(capsys):
    """An error's detail can quote a value a user sent (or, read from a stored job, another's)."""

    def refused(_client):
        raise ApiError(422, {"error": "InvalidSpec", "detail": "unknown field 'x\x1b[2J\x1b]0;owned\x07\u202e'"})

    args = argparse.Namespace(api=f"http://127.0.0.1:{free_port()}", token="t")
    assert call(args, refused) == 2
    err = capsys.readouterr().err
    assert not {"\x1b", "\x07", "\u202e"} & set(err)
    assert "unknown field 'x\\x1b[2J\\x1b]0;owned\\x07\\u202e'" in err


def test_a_jobs_summary_shows_its_attempts_and_an_ended_jobs_speed_without_a_gap():
    ended = job(
        status="SUCCEEDED",
        owner="alice",
        priority=0,
        resources={"cpus": 1},
        attempts=2,
        max_infra_retries=3,
        progress={"phase": "ended", "epoch": 5, "epochs": 6, "images_per_s": 1061.4},
    )
    lines = job_summary(ended).splitlines()
    assert "attempts   2 (infrastructure retries: up to 3)" in lines
    assert "progress   ended, 1061 img/s" in lines
