"""Group commit on SQLite and PostgreSQL: shared transactions, answers after the commit, and one bad
request failing alone."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import session_scope
from service.db.group_commit import GroupCommit
from service.db.models import JobEvent
from service.jobs.errors import InvalidSpec, JobError


def _event(session: Session, reason: str) -> Session:
    """Writes one row (a job event needs an existing job, so this also exercises the foreign key).
    Returns the session itself: held by the results, no two transactions can share an identity."""
    session.add(JobEvent(job_id="j0", to_status="QUEUED", actor="test", reason=reason, created_at=datetime.now(UTC)))
    return session


class _Gate:
    """A unit of work that holds the writer thread until opened: what is submitted meanwhile
    queues up behind it and becomes the next batch."""

    def __init__(self) -> None:
        self.entered, self.opened = threading.Event(), threading.Event()

    def __call__(self, session: Session) -> Session:
        self.entered.set()
        self.opened.wait(10)
        return _event(session, "first")

    async def hold(self, writer: GroupCommit) -> asyncio.Future[Session]:
        first = asyncio.ensure_future(writer.run(self))
        await asyncio.to_thread(self.entered.wait, 10)
        return first


@pytest.fixture
def writer(sessions):
    from service.db.models import Job

    with session_scope(sessions) as session:
        session.add(
            Job(id="j0", kind="train", name="t", spec={}, resources={}, status="QUEUED", created_at=datetime.now(UTC))
        )
    group = GroupCommit(sessions, rejections=(JobError,))
    yield group
    group.close()


def _reasons(sessions) -> list[str]:
    with session_scope(sessions) as session:
        return sorted(session.scalars(select(JobEvent.reason)))


def test_concurrent_requests_share_a_transaction_and_are_answered_after_commit(writer, sessions):
    gate = _Gate()

    async def scenario() -> list[Session]:
        first = await gate.hold(writer)
        rest = [asyncio.ensure_future(writer.run(lambda s, i=i: _event(s, f"r{i:02d}"))) for i in range(30)]
        await asyncio.sleep(0.1)  # all 30 are queued
        gate.opened.set()
        return [await first, *await asyncio.gather(*rest)]

    first, *rest = asyncio.run(scenario())
    assert all(session is rest[0] for session in rest)  # the 30 queued requests: one transaction
    assert first is not rest[0]
    assert _reasons(sessions) == sorted(["first", *(f"r{i:02d}" for i in range(30))])


def test_a_rejection_fails_its_request_only(writer, sessions):
    def reject(_: Session) -> int:
        raise InvalidSpec("preset", "unknown preset 'nope'")

    async def scenario() -> list[object]:
        return await asyncio.gather(
            writer.run(lambda s: _event(s, "a")),
            writer.run(reject),
            writer.run(lambda s: _event(s, "b")),
            return_exceptions=True,
        )

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[1], InvalidSpec)
    assert outcomes[1].field == "preset"
    assert _reasons(sessions) == ["a", "b"]


def test_a_failing_write_is_isolated_from_its_batch(writer, sessions):
    """A constraint violation fails the shared transaction; the others are committed on their own."""

    def orphan_event(session: Session) -> int:
        session.add(
            JobEvent(job_id="no-such-job", to_status="QUEUED", actor="t", reason="x", created_at=datetime.now(UTC))
        )
        session.flush()
        return 0

    gate = _Gate()

    async def scenario() -> list[object]:
        first = await gate.hold(writer)
        batch = [
            asyncio.ensure_future(writer.run(lambda s: _event(s, "before"))),
            asyncio.ensure_future(writer.run(orphan_event)),
            asyncio.ensure_future(writer.run(lambda s: _event(s, "after"))),
        ]
        await asyncio.sleep(0.1)
        gate.opened.set()
        return [await first, *await asyncio.gather(*batch, return_exceptions=True)]

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[2], IntegrityError)
    assert _reasons(sessions) == ["after", "before", "first"]


def test_close_finishes_what_is_waiting(writer, sessions):
    async def scenario() -> None:
        pending = [asyncio.ensure_future(writer.run(lambda s, i=i: _event(s, f"c{i}"))) for i in range(5)]
        await asyncio.sleep(0)  # all five are queued
        await asyncio.to_thread(writer.close)
        await asyncio.gather(*pending)

    asyncio.run(scenario())
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 5


def _keyed(key: str):
    from service.jobs import store
    from tests.service.test_store import new_job

    def work(session: Session) -> str:
        job, _ = store.add_job(session, new_job(), idempotency_key=key, body_hash="h")
        return job.id

    return work


def test_twins_with_one_key_in_one_batch_make_one_job(writer, sessions):
    gate = _Gate()

    async def scenario() -> list[str]:
        first = await gate.hold(writer)
        twins = [asyncio.ensure_future(writer.run(_keyed("same"))) for _ in range(5)]
        await asyncio.sleep(0.1)
        gate.opened.set()
        await first
        return await asyncio.gather(*twins)

    assert len(set(asyncio.run(scenario()))) == 1


def test_a_twin_committed_by_another_transaction_is_found_when_the_batch_runs_again(writer, sessions, database_url):
    """Another process commits the same key while this batch is open: the batch fails on the unique
    constraint, each request runs again alone, and the keyed one returns the other's job."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer: no rival commits while a batch's transaction is open")
    from service.jobs import store
    from tests.service.test_store import new_job

    def keyed_after_a_rival_commits(session: Session) -> str:
        job, _ = store.add_job(session, new_job(), idempotency_key="raced", body_hash="h")
        if job.id not in rival:  # the first run: the rival commits before this transaction does
            with session_scope(sessions) as other:
                rival.append(store.add_job(other, new_job(), idempotency_key="raced", body_hash="h")[0].id)
        return job.id

    rival: list[str] = []

    async def scenario() -> list[object]:
        return await asyncio.gather(writer.run(keyed_after_a_rival_commits), writer.run(lambda s: _event(s, "ok")))

    mine, _ = asyncio.run(scenario())
    assert mine == rival[0]
    assert _reasons(sessions) == ["ok", "submitted"]  # the batch's other request, and the rival's one job


def test_a_batch_of_submissions_is_one_insert_per_table(writer, sessions):
    from sqlalchemy import event

    statements: list[str] = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    gate = _Gate()

    async def scenario() -> None:
        first = await gate.hold(writer)
        keyed = [asyncio.ensure_future(writer.run(_keyed(f"k{i}"))) for i in range(10)]
        await asyncio.sleep(0.1)
        statements.clear()
        gate.opened.set()
        await first
        await asyncio.gather(*keyed)

    asyncio.run(scenario())
    inserts = [s for s in statements if s.startswith("INSERT INTO job ")]
    assert len(inserts) <= 2  # the gate's batch and the ten keyed submissions' (not one per request)


def test_a_batch_reads_its_units_idempotency_keys_and_queues_once(writer, sessions):
    """Units hinted with their (owner, key) and queue: one query each for the batch, the rows held for
    every unit (the session keeps rows weakly: each unit's own look-up went to the database), also
    across the savepoints units open (as claiming a model name does, flushing what came before), a
    key used before still answers with its job, and a twin later in the batch with its sibling's."""
    from sqlalchemy import event

    from service.jobs import queueing, store
    from tests.service.test_store import new_job

    with session_scope(sessions) as session:
        earlier, _ = store.add_job(session, new_job(owner="bob"), idempotency_key="k0", body_hash="h")

    def submit(owner: str, key: str):
        def work(session: Session) -> str:
            queueing.require_queue(session, "default")
            job_id = store.add_job(session, new_job(owner=owner), idempotency_key=key, body_hash="h")[0].id
            with session.begin_nested():
                session.flush()
            return job_id

        return writer.run(work, hint={"owner": owner, "owner_key": store.owner_key(owner, key), "queue": "default"})

    statements: list[str] = []
    event.listen(sessions.kw["bind"], "before_cursor_execute", lambda *args: statements.append(args[2]))
    gate = _Gate()

    async def scenario() -> list[str]:
        first = await gate.hold(writer)
        units = [asyncio.ensure_future(submit(("bob", "alice")[i % 2], f"k{i}")) for i in range(10)]
        units.append(asyncio.ensure_future(submit("bob", "k2")))  # bob's k2 again: a twin
        await asyncio.sleep(0.1)
        statements.clear()
        gate.opened.set()
        await first
        return await asyncio.gather(*units)

    ids = asyncio.run(scenario())
    assert ids[0] == earlier.id  # bob's k0 was his job already
    assert ids[10] == ids[2]
    assert len(set(ids)) == 10  # the rest are new
    key_reads = [s for s in statements if s.startswith("SELECT") and "idempotency_key IN" in s]
    queue_reads = [s for s in statements if s.startswith("SELECT") and "FROM queue" in s]
    assert (len(key_reads), len(queue_reads)) == (1, 1)


def test_what_a_batch_read_is_forgotten_when_its_transaction_ends(sessions):
    """A session used for two transactions reads a row again in the second (another writer may have
    changed it meanwhile), but not after a savepoint of the first ends."""
    from sqlalchemy import event

    from service.db.models import Queue
    from service.jobs import queueing

    reads: list[str] = []
    engine = sessions.kw["bind"]

    def record(_conn, _cursor, statement, *_):
        if "FROM queue" in statement and "IN (" in statement:  # the batch read, not a get by key
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    session = sessions()
    try:
        with session.begin():
            queueing.require_queue(session, "default")
            with session.begin_nested():
                session.flush()
            queueing.require_queue(session, "default")
            assert len(reads) == 1
        session.expunge_all()  # the identity map would hand back the same object after a new read
        with session_scope(sessions) as other:
            other.get(Queue, "default").default_priority = 7
        with session.begin():
            assert queueing.require_queue(session, "default").default_priority == 7
        assert len(reads) == 2
    finally:
        session.close()
        event.remove(engine, "before_cursor_execute", record)
