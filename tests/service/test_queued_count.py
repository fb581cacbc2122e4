"""What a group commit's batch reads once for all its submissions (SQLite and PostgreSQL): every
owner's queued-jobs count in one statement (the jobs it added itself counted, read again after a
flush), and the owners of the model names it trains under in one query."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from service.auth import models
from service.auth.principal import Principal, Role
from service.db import session_scope
from service.db.group_commit import BATCH_HINTS
from service.jobs import queueing, store
from service.jobs.errors import Forbidden


def new_job(owner: str) -> store.NewJob:
    return store.NewJob(
        kind="train",
        name="n",
        owner=owner,
        queue="default",
        priority=0,
        tags=[],
        spec={},
        target=None,
        resources={"cpus": 1},
        max_runtime_s=None,
        max_infra_retries=0,
        model_name=None,
    )


@pytest.fixture
def sql(sessions) -> Iterator[list[str]]:
    """Every statement sent to the database during the test, lower-cased."""
    sent: list[str] = []
    engine = sessions.kw["bind"]

    def record(_conn, _cursor, statement, *_):
        sent.append(statement.lower())

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def test_a_batch_counts_its_owners_queued_jobs_in_one_statement(sessions, sql):
    with session_scope(sessions) as session:
        for owner in ("alice", "alice", "bob"):
            store.add_job(session, new_job(owner), idempotency_key=None, body_hash="h")
    sql.clear()

    def counts() -> int:
        return sum("count(" in statement for statement in sql)

    with session_scope(sessions) as session, session.no_autoflush:
        session.info[BATCH_HINTS] = [{"owner": name} for name in ("alice", "bob", "carol")]
        assert [queueing.queued_count(session, o) for o in ("alice", "bob", "carol")] == [2, 1, 0]
        assert counts() == 1
        store.add_job(session, new_job("bob"), idempotency_key=None, body_hash="h")
        assert queueing.queued_count(session, "bob") == 2  # the batch's own, not yet flushed
        assert counts() == 1
        session.flush()
        assert queueing.queued_count(session, "bob") == 2  # flushed: read again, not counted twice
        assert queueing.queued_count(session, "dave") == 0  # not hinted: read when asked
        assert counts() == 3


def test_a_batch_reads_its_model_names_owners_in_one_query(sessions, sql):
    alice, bob = (Principal(subject=name, role=Role.USER) for name in ("alice", "bob"))
    with session_scope(sessions) as session:
        models.claim(session, "alice-net", alice, group=None)
    sql.clear()

    def reads() -> int:
        return sum("from model_owner" in statement for statement in sql)

    with session_scope(sessions) as session, session.no_autoflush:
        session.info[BATCH_HINTS] = [{"owner": "alice", "model_name": "alice-net"}, {"model_name": "bob-net"}]
        assert models.check_writable(session, "bob-net", bob, group=None) is True  # a new name
        assert models.check_writable(session, "alice-net", alice, group=None) is False
        with pytest.raises(Forbidden):
            models.check_writable(session, "alice-net", bob, group=None)
        assert reads() == 1
        models.claim(session, "bob-net", bob, group=None)
        assert models.check_writable(session, "bob-net", bob, group=None) is False  # claimed in this batch
        with pytest.raises(Forbidden):
            models.check_writable(session, "bob-net", alice, group=None)


def test_a_session_counts_again_after_it_was_closed(sessions):
    """close() ends the transaction without a commit or rollback event: the counts go with it."""
    session = sessions()
    try:
        assert queueing.queued_count(session, "alice") == 0
        session.close()
        with session_scope(sessions) as other:
            store.add_job(other, new_job("alice"), idempotency_key=None, body_hash="h")
        assert queueing.queued_count(session, "alice") == 1
    finally:
        session.close()
