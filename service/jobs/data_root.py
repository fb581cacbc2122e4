"""A job's data directory against the service's data root (`ASCL_DATA_ROOT`): a relative
data.data_dir names a directory under the root, and the stored spec names the directory that is read."""

from __future__ import annotations

from pathlib import Path

from ascl.config import ExperimentConfig
from ascl.dataset_files import REQUIRED_FILES, missing_files
from service.jobs.errors import InvalidSpec


def with_data_dir_resolved(config: ExperimentConfig, data_root: Path | None) -> ExperimentConfig:
    """data.data_dir made absolute against the data root (no root, or data that reads no files: as is)."""
    root = _applying_root(config, data_root)
    if root is None:
        return config
    try:
        data_dir = Path(config.data.data_dir).expanduser()
    except RuntimeError:  # '~name' of no user here
        raise InvalidSpec("data.data_dir", f"{config.data.data_dir!r} names no home directory") from None
    absolute = (root / data_dir).resolve()  # an absolute data_dir stays itself
    return config.with_overrides({"data.data_dir": str(absolute)})


def resolve_data_dir(config: ExperimentConfig, data_root: Path | None) -> ExperimentConfig:
    """The config with its data directory resolved, and a dataset missing there refused now, not at
    run time (unless it is to be downloaded, or lies outside the root, where only the workers may see it)."""
    config = with_data_dir_resolved(config, data_root)
    root = _applying_root(config, data_root)
    if root is None:
        return config
    absolute = Path(config.data.data_dir)
    if config.data.download or not absolute.is_relative_to(root):
        return config
    missing = missing_files(config.data.dataset, absolute)
    if missing:
        raise InvalidSpec(
            "data.data_dir",
            f"{config.data.dataset} is not in {absolute} (missing {', '.join(missing)}); put the files there, "
            "point data.data_dir at them, or set data.download=true",
        )
    return config


def _applying_root(config: ExperimentConfig, data_root: Path | None) -> Path | None:
    """The data root, resolved, where it applies: one is set and the dataset reads files."""
    return data_root.resolve() if data_root is not None and config.data.dataset in REQUIRED_FILES else None
