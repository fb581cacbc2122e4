"""The job service: REST API, database job store, and the control plane that drives Ray and MLflow."""
