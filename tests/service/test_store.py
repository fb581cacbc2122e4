"""The job store on real SQLite and PostgreSQL: transitions, claims, fencing, pagination."""

import threading

import pytest
from sqlalchemy import select

from service.contracts import Heartbeat, Progress
from service.db import session_scope
from service.db.models import Job, JobEvent
from service.jobs import attempts, store
from service.jobs.errors import IdempotencyConflict, InvalidTransition, StaleAttempt
from service.jobs.status import TERMINAL, TRANSITIONS, JobStatus


def new_job(**changes):
    values = {
        "kind": "train",
        "name": "t",
        "owner": "alice",
        "queue": "default",
        "priority": 0,
        "tags": [],
        "spec": {"x": 1},
        "target": None,
        "resources": {"gpus": 0, "cpus": 1},
        "max_runtime_s": None,
        "max_infra_retries": 2,
        "model_name": "m",
    }
    return store.NewJob(**{**values, **changes})


def add(sessions, **changes):
    with session_scope(sessions) as session:
        job, _ = store.add_job(session, new_job(**changes), idempotency_key=None, body_hash="h")
        return job.id


def test_transition_table_is_exhaustive_and_terminal_states_are_final():
    assert set(TRANSITIONS) == set(JobStatus)
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()


def test_transition_records_an_event_and_refuses_illegal_moves(sessions):
    job_id = add(sessions)
    with session_scope(sessions) as session:
        assert store.transition(session, job_id, JobStatus.RUNNING, actor="x", reason="skip") is None
        assert store.transition(session, job_id, JobStatus.CANCELLED, actor="bob", reason="why") == JobStatus.QUEUED
        assert store.transition(session, job_id, JobStatus.QUEUED, actor="x", reason="back") is None
    with session_scope(sessions) as session:
        events = store.events(session, job_id)
        assert [(e.from_status, e.to_status, e.actor) for e in events] == [
            (None, "QUEUED", "alice"),
            ("QUEUED", "CANCELLED", "bob"),
        ]
        assert store.get_job(session, job_id).finished_at is not None


def test_idempotent_submission_same_body_same_job_different_body_conflict(sessions):
    with session_scope(sessions) as session:
        first, created = store.add_job(session, new_job(), idempotency_key="k1", body_hash="a")
        again, created_again = store.add_job(session, new_job(), idempotency_key="k1", body_hash="a")
        assert (created, created_again, again.id) == (True, False, first.id)
        with pytest.raises(IdempotencyConflict):
            store.add_job(session, new_job(), idempotency_key="k1", body_hash="b")
        _, created = store.add_job(session, new_job(owner="bob"), idempotency_key="k1", body_hash="b")
        assert created


def test_concurrent_submissions_with_one_key_make_one_job(sessions):
    ids, errors = [], []
    barrier = threading.Barrier(8)

    def submit():
        barrier.wait()
        try:
            with session_scope(sessions) as session:
                job, _ = store.add_job(session, new_job(), idempotency_key="same", body_hash="h")
                ids.append(job.id)
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 1
    assert len(ids) == 8


def test_cursor_pagination_walks_every_job_once_newest_first(sessions):
    created = [add(sessions, tags=["even"] if i % 2 == 0 else ["odd"]) for i in range(23)]
    seen, cursor = [], None
    with session_scope(sessions) as session:
        while True:
            page, cursor = store.list_jobs(session, store.JobFilter(), limit=5, cursor=cursor)
            seen += [j.id for j in page]
            if cursor is None:
                break
        even, _ = store.list_jobs(session, store.JobFilter(tag="even"), limit=100, cursor=None)
    assert seen == list(reversed(created))
    assert len(even) == 12


def test_cancel_queued_is_immediate_running_goes_through_cancelling(sessions):
    queued, running = add(sessions), add(sessions)
    with session_scope(sessions) as session:
        job = store.get_job(session, running)
        attempts.claim(session, job, dispatcher="d", checkpoint_dir="/tmp/c")
        assert store.cancel(session, queued, actor="u", reason="r").status == JobStatus.CANCELLED
        assert store.cancel(session, running, actor="u", reason="r").status == JobStatus.CANCELLING
        assert store.cancel(session, running, actor="u", reason="again").status == JobStatus.CANCELLING
        with pytest.raises(InvalidTransition):
            store.cancel(session, queued, actor="u", reason="r")


def test_two_dispatchers_never_claim_the_same_job(sessions):
    for _ in range(12):
        add(sessions)
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def dispatcher(name):
        barrier.wait()
        for _ in range(12):
            with session_scope(sessions) as session:
                queued = select(Job).where(Job.status == "QUEUED").order_by(Job.created_at).limit(3)
                for job in session.execute(queued).scalars():
                    if attempts.claim(session, job, dispatcher=name, checkpoint_dir="/tmp") is not None:
                        with lock:
                            claimed.append(job.id)

    threads = [threading.Thread(target=dispatcher, args=(f"d{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 12
    assert len(set(claimed)) == 12
    with session_scope(sessions) as session:
        claims = session.query(JobEvent).filter(JobEvent.to_status == "CLAIMED").count()
    assert claims == 12


def test_heartbeat_is_fenced_to_the_current_attempt(sessions):
    job_id = add(sessions)
    with session_scope(sessions) as session:
        first = attempts.claim(session, store.get_job(session, job_id), dispatcher="d", checkpoint_dir="/c")
        store.transition(session, job_id, JobStatus.SUBMITTED, actor="d", reason="submitted")
        stale_token = first.fencing_token
    with session_scope(sessions) as session:
        action = attempts.record_heartbeat(session, job_id, 1, stale_token, Heartbeat(progress=Progress(step=1)))
        assert action == "continue"
        assert store.get_job(session, job_id).status == JobStatus.RUNNING
        store.transition(session, job_id, JobStatus.QUEUED, actor="monitor", reason="infra lost")
        second = attempts.claim(session, store.get_job(session, job_id), dispatcher="d", checkpoint_dir="/c")
        assert second.attempt_no == 2
        assert second.ray_submission_id == f"ascl-{job_id}-a2"
    with session_scope(sessions) as session, pytest.raises(StaleAttempt):
        attempts.record_heartbeat(session, job_id, 1, stale_token, Heartbeat())
    with session_scope(sessions) as session, pytest.raises(StaleAttempt):
        attempts.record_heartbeat(session, job_id, 2, stale_token, Heartbeat())
