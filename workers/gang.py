"""A data-parallel attempt (`workers` > 1) through Ray Train's TorchTrainer: one placement group
holds the gang (`workers` bundles of the per-worker resources the dispatcher counted, packed on as
few nodes as fit), Ray Train starts the workers and the process group (NCCL on GPUs, gloo on CPUs),
and each worker runs the library (ascl.training.workers splits the batch and averages gradients).

Rank 0 is the attempt as the service knows it: it alone reads the fencing token and runs
`run_attempt` exactly as a single worker does (the MLflow run, heartbeats with progress and
cancellation, checkpoints, the model, the outcome). The other ranks train and write nothing.
This process, the Ray job's entrypoint, is only the trainer's driver: it reserves nothing, never
calls the API, and exits 1 when the gang failed. Any worker's failure ends the whole gang (Ray
Train stops every worker and removes the placement group): when rank 0 raised, it has reported the
failure; otherwise the attempt ends without an outcome and the control plane retries it as lost,
from the latest checkpoint. Stopping the Ray job (a cancellation) ends the driver, and Ray ends the
job's actors and placement group with it.

Ray Train's own storage (`RunConfig.storage_path`) is under the job's checkpoint directory; the
library's checkpoints stay where a single worker writes them (rank 0's run directory), so a retry
resumes the same way. On several nodes that directory must be storage every node shares."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray.train
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from service.contracts import AttemptSpec, WorkerResources
from workers.api_client import ApiClient
from workers.entrypoint import identity_from_environment, run_attempt
from workers.runs import follow

logger = logging.getLogger(__name__)
RAY_TRAIN_DIR = "ray-train"  # Ray Train's run storage, inside the job's checkpoint directory
WORKER_GROUP_START_TIMEOUT_S = 300  # Ray Train's default, 60 s, is short for starting torch on a busy node


class GangFailed(Exception):
    """Rank 0 ended the attempt with a failure (already reported): the other workers stop too."""


def run_gang(job: AttemptSpec) -> int:
    # the workers keep this process's working directory, as a single worker would (a relative
    # data.data_dir means the same directory)
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    # the dispatcher admitted the gang, but Ray may still be releasing the previous job's resources
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(WORKER_GROUP_START_TIMEOUT_S))
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"attempt": job.model_dump(mode="json")},
        torch_config=TorchConfig(backend="nccl" if job.per_worker.gpus else "gloo"),
        scaling_config=scaling(job.workers, job.per_worker),
        run_config=RunConfig(
            name=f"attempt-{job.attempt}",
            storage_path=str(Path(job.checkpoint_dir) / RAY_TRAIN_DIR),
            failure_config=FailureConfig(max_failures=0),  # retries are the control plane's, with resume
        ),
    )
    logger.info("gang.start job_id=%s workers=%d per_worker=%s", job.job_id, job.workers, job.per_worker)
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as error:
        logger.error("gang.failed job_id=%s %s", job.job_id, error)
        return 1
    logger.info("gang.end job_id=%s", job.job_id)
    return 0


def scaling(workers: int, per_worker: WorkerResources) -> ScalingConfig:
    """`workers` bundles of exactly what the dispatcher counted for each worker."""
    resources: dict[str, float] = {"CPU": per_worker.cpus}
    if per_worker.gpus:
        resources["GPU"] = per_worker.gpus
    if per_worker.memory_gb:
        resources["memory"] = per_worker.memory_gb * 2**30
    return ScalingConfig(
        num_workers=workers, use_gpu=per_worker.gpus > 0, resources_per_worker=resources, placement_strategy="PACK"
    )


def train_worker(config: dict[str, Any]) -> None:
    """Run on every worker by Ray Train, with the process group initialised."""
    job = AttemptSpec.model_validate(config["attempt"])
    rank = ray.train.get_context().get_world_rank()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s rank{rank} %(name)s %(message)s")
    logger.info("gang.worker rank=%d CUDA_VISIBLE_DEVICES=%r", rank, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if rank != 0:
        follow(job)
    elif run_attempt(ApiClient(identity_from_environment()), job) != 0:
        raise GangFailed(f"rank 0 reported the failure of attempt {job.attempt} of job {job.job_id}")
