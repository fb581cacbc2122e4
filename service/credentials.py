"""Where local clients find a token: `ascl serve` records, per API URL, the file that holds its admin
token in the user's client config (mode 0600), so `ascl jobs ...` and `AsclClient` on the same
machine authenticate without a flag. Standard library only: the client needs nothing else."""

from __future__ import annotations

import json
import os
from pathlib import Path

CREDENTIALS = "credentials.json"


def default_config_dir() -> Path:
    return Path(os.environ.get("ASCL_CONFIG_DIR") or Path.home() / ".config" / "ascl")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read or write (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(staging, 0o600)
    os.replace(staging, path)


def remember_token_file(config_dir: Path, api_url: str, token_file: Path) -> Path:
    """Record that the service at `api_url` keeps its admin token in `token_file`."""
    path = config_dir / CREDENTIALS
    known = _read(path)
    known[api_url.rstrip("/")] = str(token_file.resolve())
    write_private(path, json.dumps(known, indent=2))
    return path


def token_for(config_dir: Path, api_url: str) -> str | None:
    """The admin token a local `ascl serve` recorded for `api_url`, if there is one."""
    token_file = _read(config_dir / CREDENTIALS).get(api_url.rstrip("/"))
    if token_file is None:
        return None
    try:
        return Path(token_file).read_text().strip() or None
    except OSError:
        return None


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def find_token(api_url: str) -> str | None:
    """ASCL_TOKEN, else what a local `ascl serve` recorded for `api_url`."""
    return os.environ.get("ASCL_TOKEN") or token_for(default_config_dir(), api_url)
