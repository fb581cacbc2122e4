"""Group commit: units of work from many concurrent requests share one transaction.

One thread owns these writes. It takes every unit of work waiting, runs them in one transaction
and commits once, then answers each caller. Under load a commit carries dozens of submissions, so
the per-request cost of a pooled connection, the database round trips of BEGIN/COMMIT and the
commit's flush to disk shrinks by as much; a lone caller still gets a transaction of its own.
A caller is answered only after the commit, so an accepted request is a committed one.

Units of work run without autoflush, so the batch's new rows go to the database together at commit
(one multi-row INSERT per table) instead of one flush per request; what a unit must know of rows
added earlier in the same batch it finds in `session.new`.

A unit of work may reject its request by raising one of the `rejections` types: it must do so
before it writes anything. Any other failure (a constraint, a lost connection, a bug) rolls the
shared transaction back, and each unit of work is then run again alone, so that one bad request
fails by itself instead of failing its batch. Alone, a unit that meets a unique constraint (a
concurrent twin committed first) runs once more: it now sees the twin."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from service.db import session_scope

T = TypeVar("T")


BATCH_HINTS = "group_commit.hints"  # session.info: the hints of the batch's units of work, in order
V = TypeVar("V")


def batch_read(
    session: Session, slot: str, key: str, *, hint: str, read: Callable[[list[str]], Mapping[str, V]]
) -> V | None:
    """`read(keys)[key]`, read once for every key the batch's units were hinted with under `hint`
    (one query for the batch instead of one per unit) and kept in `session.info[slot]` until the
    outer transaction ends (savepoints keep it): the rows are held there, as the session holds its
    rows only weakly (a unit's `session.get` of a row the previous unit dropped went to the database
    again). None: no row. A unit that adds a row under a key says so with `batch_added`."""
    known: dict[str, V | None] = session.info.setdefault(_BATCH_SLOTS, {}).setdefault(slot, {})
    if key not in known:
        hinted = {h[hint] for h in session.info.get(BATCH_HINTS, ()) if hint in h}
        keys = sorted({key, *hinted} - known.keys())
        found = read(keys)  # merged only once read: a failed read leaves nothing cached as absent
        known |= dict.fromkeys(keys)
        known |= found
    return known[key]


def batch_added(session: Session, slot: str, key: str, row: object) -> None:
    """A row this transaction added under `key`: later `batch_read`s of the slot see it."""
    known = session.info.get(_BATCH_SLOTS, {}).get(slot)
    if known is not None:
        known[key] = row


_BATCH_SLOTS = "group_commit.slots"  # session.info: slot -> what batch_read read under it


@event.listens_for(Session, "after_transaction_end")
def _forget_at_the_end(session: Session, transaction: SessionTransaction) -> None:
    """Registered once for every session (a listener per session cost a fifth of a lone
    submission's transaction): what a transaction read is forgotten when it ends."""
    if transaction.parent is None:  # the outer transaction (also on close), not a savepoint
        session.info.pop(_BATCH_SLOTS, None)


@dataclass(frozen=True, slots=True)
class _Request(Generic[T]):
    work: Callable[[Session], T]
    future: asyncio.Future[T]
    hint: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class GroupCommit:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        rejections: tuple[type[Exception], ...] = (),
        max_batch: int = 128,
    ) -> None:
        self._sessions = sessions
        self._rejections = rejections
        self._max_batch = max_batch
        self._waiting: queue.SimpleQueue[_Request[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, work: Callable[[Session], T], *, hint: Mapping[str, str] | None = None) -> T:
        """Run `work(session)` in the next shared transaction; its value once committed. The batch's
        hints (such as whose request it is) are in `session.info[BATCH_HINTS]`, so that a unit
        of work may read for the whole batch at once what each unit would otherwise read alone."""
        self._start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.put(_Request(work, future, hint))
        return await future

    def close(self) -> None:
        """Finish what is waiting, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._waiting.put(None)
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="group-commit", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    following = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stopping = True
                    break
                batch.append(following)
            for request, outcome in zip(batch, self._commit(batch), strict=True):
                with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody is waiting
                    request.future.get_loop().call_soon_threadsafe(_settle, request.future, outcome)

    def _commit(self, batch: list[_Request[Any]], *, again: bool = True) -> list[_Outcome]:
        try:
            return self._transaction(batch)
        except Exception as error:  # the caller's request fails with it, not the thread
            if len(batch) == 1:
                if again and isinstance(error, IntegrityError):
                    return self._commit(batch, again=False)
                return [_Outcome(error=error)]
        return [self._commit([request])[0] for request in batch]

    def _transaction(self, batch: list[_Request[Any]]) -> list[_Outcome]:
        outcomes = []
        with session_scope(self._sessions) as session, session.no_autoflush:
            session.info[BATCH_HINTS] = [request.hint for request in batch if request.hint is not None]
            for request in batch:
                try:
                    outcomes.append(_Outcome(value=request.work(session)))
                except self._rejections as rejection:
                    outcomes.append(_Outcome(error=rejection))
        return outcomes


def _settle(future: asyncio.Future[Any], outcome: _Outcome) -> None:
    if future.done():  # the caller went away (client disconnected); the work stands
        return
    if outcome.error is not None:
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome.value)
