"""Checkpoint storage: a path or file:// URI that every Ray node mounts; anything else stops the
service at start instead of failing every attempt later."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ServiceSettings


def test_checkpoints_default_to_the_data_dir(tmp_path):
    assert ServiceSettings(data_dir=tmp_path).checkpoint_root == tmp_path.resolve() / "checkpoints"


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("file:///mnt/ascl/checkpoints", "/mnt/ascl/checkpoints"),
        ("file://localhost/mnt/shared%20disk/ck", "/mnt/shared disk/ck"),
        ("/srv/nfs/ascl", "/srv/nfs/ascl"),
    ],
)
def test_a_shared_path_is_given_by_uri_or_path(uri, path):
    assert ServiceSettings(checkpoint_uri=uri).checkpoint_root == Path(path)


def test_the_environment_sets_it(monkeypatch):
    monkeypatch.setenv("ASCL_CHECKPOINT_URI", "file:///data/checkpoints")
    assert ServiceSettings().checkpoint_root == Path("/data/checkpoints")


@pytest.mark.parametrize(
    "uri", ["s3://bucket/checkpoints", "file://nfs-server/export", "relative/dir", "gs://b/c", "file:relative"]
)
def test_storage_workers_cannot_open_as_files_is_refused_at_start(uri):
    with pytest.raises(ValidationError, match="every Ray node mounts"):
        ServiceSettings(checkpoint_uri=uri)
