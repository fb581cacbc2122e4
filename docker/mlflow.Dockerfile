# The MLflow tracking server with its basic-auth app (users and permissions) and PostgreSQL driver.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow[auth]==3.17.*" "psycopg[binary]==3.3.*"
EXPOSE 5000
CMD ["mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", "5000"]
