"""The attempt runner: the process Ray starts for one attempt of one job. It fetches its spec from
the API, runs ascl, logs to the job's MLflow run and reports its outcome, all over HTTP."""
