"""The search space of a sweep: each key a config field (validated like an override), each value a
choice (`values`) or a range (`low`/`high`, optionally `log` and `int`), as Optuna distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ascl.config import ExperimentConfig
from ascl.errors import ConfigError
from service.jobs.data_root import resolve_data_dir
from service.jobs.errors import InvalidSpec
from service.jobs.spec_limits import SpecLimits

Scalar = Annotated[str, Field(max_length=200)] | int | float | bool | None
MAX_DIMENSIONS = 20
# an integer range's ends: a float (as JSON reads them) holds every whole number up to this exactly,
# and Optuna samples them as int64 (a range past -2**63 made every TPE ask fail)
MAX_INTEGER_END = 2**53
# Optuna's grid sampler lists the whole grid at every trial it asks for, in the dispatcher's thread
# (a grid of 10 million points took 17 s and 1.1 GB a pass): a grid is bounded at submission.
MAX_GRID_POINTS = 10_000


class Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    values: list[Scalar] | None = Field(None, min_length=1, max_length=100, description="a choice among these")
    low: float | None = Field(None, description="a range from low ...")
    high: float | None = Field(None, description="... to high")
    log: bool = Field(False, description="sample the range on a log scale")
    integer: bool = Field(False, alias="int", description="integers only")

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        if (self.values is None) == (self.low is None or self.high is None):
            raise ValueError("give either 'values' or both 'low' and 'high'")
        if self.values is None and self.low is not None and self.high is not None:
            if not self.low < self.high:
                raise ValueError(f"low {self.low:g} must be below high {self.high:g}")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
        return self

    @property
    def is_choice(self) -> bool:
        return self.values is not None

    def distribution(self) -> BaseDistribution:
        if self.values is not None:
            return CategoricalDistribution(self.values)
        assert self.low is not None
        assert self.high is not None
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def samples(self) -> list[Any]:
        """Values that probe the field's type and bounds: every choice, or both ends of the range."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None
        assert self.high is not None
        ends = [self.low, self.high]
        return [int(v) for v in ends] if self.integer else ends


# a config field's dotted path, as overrides name it (checked against the config's fields at submission)
FieldPath = Annotated[str, Field(max_length=100, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")]
# bounded as it is read, before anything (a grid's size) is computed from it
Space = Annotated[dict[FieldPath, Dimension], Field(max_length=MAX_DIMENSIONS)]


def validate(space: Space, base: ExperimentConfig, limits: SpecLimits, data_root: Path | None) -> None:
    """Every key a field of the config and every value one it accepts, within the operator's limits
    and with its data where a job's must be (a range's ends are among its samples); errors name
    `space.<key>`."""
    if not space:
        raise InvalidSpec("space", "name at least one field to search")
    for key, dimension in space.items():
        # here, not in Dimension: a stored sweep's request is read back with Dimension's rules
        ends = [end for end in (dimension.low, dimension.high) if end is not None]
        if dimension.integer and not all(end.is_integer() and abs(end) <= MAX_INTEGER_END for end in ends):
            raise InvalidSpec(
                f"space.{key}", "an integer range ('int') takes whole numbers for low and high, at most 2**53 in size"
            )
        for value in dimension.samples():
            try:
                config = base.with_overrides({key: value})
            except ConfigError as error:
                raise InvalidSpec(f"space.{key}", error.problem if error.field == key else str(error)) from None
            try:
                limits.check(resolve_data_dir(config, data_root))
            except InvalidSpec as error:
                raise InvalidSpec(f"space.{key}", str(error)) from None


def distributions(space: Space) -> dict[str, BaseDistribution]:
    return {key: dimension.distribution() for key, dimension in space.items()}


def grid(space: Space) -> dict[str, list[Any]]:
    """The grid of a choices-only space; a range cannot be gridded."""
    ranges = [key for key, dimension in space.items() if not dimension.is_choice]
    if ranges:
        raise InvalidSpec(f"space.{ranges[0]}", "a grid search takes choices ('values') only, not ranges")
    return {key: list(dimension.values or []) for key, dimension in space.items()}


def grid_size(space: Space) -> int:
    size = 1
    for values in grid(space).values():
        size *= len(values)
    return size


def check_grid(space: Space) -> None:
    """At submission: a grid search's space is choices only, of at most MAX_GRID_POINTS points."""
    if (size := grid_size(space)) > MAX_GRID_POINTS:
        raise InvalidSpec("space", f"a grid of {size:,} points; at most {MAX_GRID_POINTS:,} (use 'random' or 'tpe')")
