"""The evaluation cache's replacement of an evaluation that ended unsuccessfully, on SQLite and
PostgreSQL: twin requests in one group commit make one new job."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from service.db import session_scope
from service.db.models import EvalCache, Job
from service.jobs.store import now
from service.models import evaluation

KEY = {"name": "m", "version": "1", "spec_hash": "h"}


def job(status: str) -> Job:
    return Job(
        id=uuid.uuid4().hex,
        kind="eval",
        name="e",
        owner="u",
        spec={},
        resources={},
        status=status,
        created_at=now(),
        metrics_history=[],
        attempts_made=0,
        infra_failures=0,
        gpu_seconds=0.0,
        version=0,
    )


def submit(session) -> tuple[str, str]:
    """What POST /jobs does with the cache: link to the key's job, or make one and remember it."""
    cached = evaluation.cached_job(session, **KEY)
    if cached is not None:
        return "linked", cached.id
    made = job("QUEUED")
    session.add(made)
    evaluation.remember(session, job_id=made.id, standard=True, **KEY)
    return "created", made.id


@pytest.fixture
def failed(sessions) -> str:
    with session_scope(sessions) as session:
        ended = job("FAILED")
        session.add(ended)
        evaluation.remember(session, job_id=ended.id, standard=True, **KEY)
        return ended.id


def test_twins_in_one_group_commit_after_a_failed_evaluation_make_one_job(sessions, failed):
    with session_scope(sessions) as session, session.no_autoflush:  # as the group commit runs its units
        first, second = submit(session), submit(session)
    assert (first[0], second) == ("created", ("linked", first[1]))
    with session_scope(sessions) as session:
        assert session.execute(select(EvalCache.job_id)).scalars().all() == [first[1]]
