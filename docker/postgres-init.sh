#!/bin/sh
# MLflow gets its own database and user: a leaked MLflow credential does not open the job database.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE ascl FROM PUBLIC;
SQL
