"""Hyperparameter sweeps: the search space, the objectives read from finished trials, and the
Optuna study that holds the search state (in the service's own database). Trials are jobs."""
