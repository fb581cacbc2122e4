"""Registered models: their standard robustness evaluation, its figures as version tags, alias
promotion by rules, and the comparison plot. Torch-free and MLflow-free (the registry is a seam)."""
