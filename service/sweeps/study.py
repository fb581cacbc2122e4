"""The Optuna side of a sweep: its study, kept in the service's own database (Optuna's RDB storage on
the same URL), the sampler of each algorithm and the pruner of each early-stopping rule. Samplers
hold no state across processes: each ask seeds the sampler from (seed, trials so far), so a sweep
is reproducible from its seed and a restarted control plane continues it exactly."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, GridSampler, NSGAIISampler, RandomSampler, TPESampler
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from service.sweeps import space as search_space
from service.sweeps.objectives import METRIC_PATTERN

Algorithm = Literal["grid", "random", "tpe", "nsga2"]
T = TypeVar("T")
optuna.logging.set_verbosity(optuna.logging.WARNING)
logger = logging.getLogger(__name__)


class EarlyStopping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: Literal["median", "successive_halving"]
    metric: str = Field("val.robust_acc", pattern=METRIC_PATTERN)
    grace_epochs: int = Field(2, ge=0, le=10_000, description="epochs every trial runs before it may be stopped")
    min_trials: int = Field(2, ge=1, le=1000, description="median: trials that must have reported first")


def storage(url: str) -> optuna.storages.RDBStorage:
    return _storage(url)


@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    """One storage per database per process. On SQLite it waits for the write lock like the
    service's own engine does (busy timeout, write transactions taken up front)."""
    if not url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    created = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})

    @event.listens_for(created.engine, "connect")
    def _autocommit_driver(connection, _record):  # type: ignore[no-untyped-def]
        connection.isolation_level = None  # transactions are begun below, not by the driver

    @event.listens_for(created.engine, "begin")
    def _begin_immediate(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    created.engine.dispose()  # connections made before the listeners are not reused
    return created


def retrying(action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`action(*args, **kwargs)`; Optuna's own transactions can still meet a busy SQLite database,
    so a 'database is locked' is tried again a few times."""
    tries = 5
    for attempt in range(tries):
        try:
            return action(*args, **kwargs)
        except OperationalError as error:
            if "locked" not in str(error) or attempt == tries - 1:
                raise
            logger.warning("sweep.storage_busy try=%d", attempt + 1)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def sampler(algorithm: Algorithm, *, seed: int, trials_so_far: int, space: search_space.Space) -> BaseSampler:
    seeded = (seed * 1_000_003 + trials_so_far) % 2**32  # numpy's seeds are 32-bit
    if algorithm == "grid":
        return GridSampler(search_space.grid(space), seed=seed)  # it skips the grid points already asked
    if algorithm == "random":
        return RandomSampler(seed=seeded)
    if algorithm == "tpe":
        return TPESampler(seed=seeded, n_startup_trials=5)
    return NSGAIISampler(seed=seeded, population_size=max(4, min(50, trials_so_far or 4)))


def pruner(early_stopping: EarlyStopping | None) -> optuna.pruners.BasePruner:
    if early_stopping is None:
        return optuna.pruners.NopPruner()
    if early_stopping.rule == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=early_stopping.min_trials, n_warmup_steps=early_stopping.grace_epochs
        )
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(early_stopping.grace_epochs, 1))


def study(
    store: optuna.storages.BaseStorage,
    name: str,
    *,
    early_stopping: EarlyStopping | None,
) -> optuna.Study:
    """The sweep's study, for telling outcomes and reporting epochs. Its sampler is a neutral one:
    GridSampler's after_trial calls study.stop() once the grid is used up, which Optuna allows only
    inside optimize(); `ask` installs the algorithm's own sampler for each new trial."""
    return optuna.load_study(study_name=name, storage=store, pruner=pruner(early_stopping), sampler=RandomSampler())


def ask(loaded: optuna.Study, *, algorithm: Algorithm, seed: int, space: search_space.Space) -> optuna.trial.Trial:
    """One new trial, the sampler seeded for exactly this trial number."""
    trials = len(loaded.get_trials(deepcopy=False))
    loaded.sampler = sampler(algorithm, seed=seed, trials_so_far=trials, space=space)
    fixed: dict[str, BaseDistribution] = search_space.distributions(space)
    try:
        return loaded.ask(fixed_distributions=fixed)
    finally:
        loaded.sampler = RandomSampler()  # see `study`


def first_params(
    *,
    algorithm: Algorithm,
    seed: int,
    space: search_space.Space,
    directions: list[Literal["maximize", "minimize"]],
    count: int,
) -> list[dict[str, object]]:
    """What the first `count` trials would try, from a study in memory: the dry run's answer."""
    preview = optuna.create_study(directions=directions)
    return [dict(ask(preview, algorithm=algorithm, seed=seed, space=space).params) for _ in range(count)]
