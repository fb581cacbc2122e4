"""The files of a run directory, named once for the library, the CLI and the service (torch-free).

config.json    the resolved experiment config
last.pt        the last complete epoch (written atomically every epoch; resume reads it)
best.pt        the epoch with the best validation robust accuracy
report.json    the robustness report of the evaluated checkpoint
eps_sweep.png  robust accuracy against epsilon, when a sweep was asked for
result.json    the finished run's result; re-running a finished run returns it
"""

from __future__ import annotations

CONFIG = "config.json"
LAST = "last.pt"
BEST = "best.pt"
REPORT = "report.json"
PLOT = "eps_sweep.png"
RESULT = "result.json"
