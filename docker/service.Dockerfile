# The API process: FastAPI + SQLAlchemy + the job store + the model registry client. No torch:
# ascl.config validates specs alone.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ascl ascl
COPY service service
COPY control control
COPY workers workers
RUN pip install --no-cache-dir ".[service]"
EXPOSE 8000
CMD ["uvicorn", "--factory", "control.asgi:create_app_from_env", "--host", "0.0.0.0", "--port", "8000"]
