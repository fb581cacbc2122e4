# Ray nodes (head and GPU workers) and the dispatcher: CUDA, torch, ray, mlflow and the ascl library.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv && \
    rm -rf /var/lib/apt/lists/* && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ascl ascl
COPY service service
COPY control control
COPY workers workers
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 && pip install --no-cache-dir ".[worker,service]"
CMD ["python", "-m", "control"]
