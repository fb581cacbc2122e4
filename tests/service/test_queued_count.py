"""The per-user queued-jobs limit's count (SQLite and PostgreSQL): a group commit's batch reads every
owner's count in one statement, counts the jobs it added itself, and reads again after a flush."""

from __future__ import annotations

from sqlalchemy import event

from service.db import session_scope
from service.db.group_commit import BATCH_HINTS
from service.jobs import queueing, store


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


def test_a_batch_counts_its_owners_queued_jobs_in_one_statement(sessions):
    with session_scope(sessions) as session:
        for owner in ("alice", "alice", "bob"):
            store.add_job(session, new_job(owner), idempotency_key=None, body_hash="h")
    counts: list[str] = []
    engine = sessions.kw["bind"]

    def seen(_conn, _cursor, statement, *_):
        if "count(" in statement.lower():
            counts.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with session_scope(sessions) as session, session.no_autoflush:
            session.info[BATCH_HINTS] = [{"owner": name} for name in ("alice", "bob", "carol")]
            assert [queueing.queued_count(session, o) for o in ("alice", "bob", "carol")] == [2, 1, 0]
            assert len(counts) == 1
            store.add_job(session, new_job("bob"), idempotency_key=None, body_hash="h")
            assert queueing.queued_count(session, "bob") == 2  # the batch's own, not yet flushed
            assert len(counts) == 1
            session.flush()
            assert queueing.queued_count(session, "bob") == 2  # flushed: read again, not counted twice
            assert queueing.queued_count(session, "dave") == 0  # not hinted: read when asked
            assert len(counts) == 3
    finally:
        event.remove(engine, "before_cursor_execute", seen)
