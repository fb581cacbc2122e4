"""Ray, seen by the control plane: capacity, idempotent job submission, status, stop and logs.

Dispatch uses the Ray Jobs API with a deterministic submission id per attempt, so an execution
outlives a dispatcher restart and is adopted by id, never started twice. Resources are reserved
on the entrypoint (entrypoint_num_gpus/cpus/memory) when training runs in the entrypoint process;
a data-parallel job's entrypoint reserves nothing, and Ray Train's placement group reserves its
workers' gang (`workers` bundles of the per-worker resources: what the dispatcher counted).

The control plane never joins the cluster as a driver (`ray.init`): a driver process aborts when
its GCS goes away, so a head restart would take the whole service down with it (measured with Ray
2.60: the process died within a second of its next `ray.nodes()`). It reads capacity from the GCS
with a standalone client and talks to the job server over HTTP; both raise while the head is down
and work again once it is back, at the same address."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ray._private.ray_constants import KV_NAMESPACE_DASHBOARD
from ray._raylet import GcsClient  # type: ignore[attr-defined]  # compiled, no stub
from ray.autoscaler.v2.sdk import get_cluster_status
from ray.job_submission import JobSubmissionClient

from control.job_server import JobServerReads

logger = logging.getLogger(__name__)

LARGEST_NODE_TTL_S = 5.0  # nodes join and leave on a scale of minutes
GCS_TIMEOUT_S = 5  # asked of every GCS call; a GCS that is away can still hold one longer (see largest_node)
KEYS = ("GPU", "CPU", "memory")


class RayCluster:
    def __init__(self, *, address: str, dashboard_url: str | None = None, wait_for_capacity: bool = True) -> None:
        """The cluster whose GCS is at `address` (host:port, e.g. head:6379); its job server is
        `dashboard_url`, else the dashboard that cluster reports (never an assumed 127.0.0.1:8265).
        Nothing here needs the cluster up when `dashboard_url` is given and `wait_for_capacity` is
        False (an API process starting before the Ray head): capacity is read in the background."""
        if "://" in address:
            raise ValueError(
                f"ray_address {address!r}: give the head's GCS address (host:port, e.g. head:6379); "
                "the service talks to the GCS and the job server directly, not through Ray Client"
            )
        self.address = address
        if dashboard_url is None:
            reported = GcsClient(address=address).internal_kv_get(
                b"webui:url", namespace=KV_NAMESPACE_DASHBOARD, timeout=GCS_TIMEOUT_S
            )
            if not reported:
                raise RuntimeError(f"the Ray cluster at {address} reports no dashboard; set ASCL_RAY_DASHBOARD_URL")
            dashboard_url = reported.decode()
        self.dashboard_url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        self._client: JobSubmissionClient | None = None
        self.reads = JobServerReads(self.dashboard_url)  # what API requests ask: timed and bounded
        self._largest: tuple[float, dict[str, float] | None] = (float("-inf"), None)
        self._refreshing = threading.Lock()  # one background refresh at a time
        self._refreshing.acquire()
        if wait_for_capacity:
            self._refresh_largest()  # the first submissions are checked too (the cluster answers at start)
        else:
            threading.Thread(target=self._refresh_largest, name="ray-capacity", daemon=True).start()

    @property
    def client(self) -> JobSubmissionClient:
        """Ray's job client, made at first use: making it connects to the job server."""
        if self._client is None:
            self._client = JobSubmissionClient(self.dashboard_url)
        return self._client

    # capacity -----------------------------------------------------------------------------------
    def largest_node(self) -> dict[str, float] | None:
        """Checked on every submission, so it never waits on the GCS: a view up to LARGEST_NODE_TTL_S
        old, refreshed in the background. A GCS that is away holds a call for tens of seconds (Ray
        2.60's client retries its connection), and a submission must not wait for it; meanwhile the
        last view stands (None, before any: the check is skipped, not failed)."""
        read_at, largest = self._largest
        if time.monotonic() - read_at > LARGEST_NODE_TTL_S and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_largest, name="ray-capacity", daemon=True).start()
        return largest

    def _refresh_largest(self) -> None:
        """Runs holding `_refreshing`, which it releases."""
        try:
            totals = [total for _, total in self.nodes()]
            largest = max(totals, key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0))) if totals else None
        except Exception as error:  # the head is away: the last view stands until it is back
            logger.warning("ray.capacity_unknown address=%s error=%s", self.address, str(error)[:200])
            largest = self._largest[1]
        self._largest = (time.monotonic(), largest)
        self._refreshing.release()

    def nodes(self) -> list[tuple[dict[str, float], dict[str, float]]]:
        """(free, total) of each live node, in GPU, CPU and memory (bytes)."""
        status = get_cluster_status(self.address, timeout=GCS_TIMEOUT_S)
        found = []
        for node in [*status.active_nodes, *status.idle_nodes]:
            usage = {
                u.resource_name: (u.used, u.total) for u in (node.resource_usage.usage if node.resource_usage else [])
            }
            used = {key: float(usage.get(key, (0.0, 0.0))[0]) for key in KEYS}
            total = {key: float(usage.get(key, (0.0, 0.0))[1]) for key in KEYS}
            found.append(({key: total[key] - used[key] for key in KEYS}, total))
        return found

    def ready(self) -> bool:
        return self.reads.ready()

    # executions ---------------------------------------------------------------------------------
    def submit(
        self,
        submission_id: str,
        *,
        entrypoint: str,
        env: dict[str, str],
        resources: dict[str, Any],
        metadata: dict[str, str],
    ) -> str:
        """Submit once: if Ray already knows the id (a restarted dispatcher), adopt it."""
        if self.status(submission_id) is not None:
            logger.info("ray.adopted submission_id=%s", submission_id)
            return submission_id
        try:
            return self.client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env={"env_vars": env},
                metadata=metadata,
                **entrypoint_reservation(resources),
            )
        except RuntimeError:
            if self.status(submission_id) is not None:  # lost a race with another submitter: adopt
                return submission_id
            raise

    def status(self, submission_id: str) -> str | None:
        """PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED; None when Ray has no record of it."""
        try:
            return str(self.client.get_job_status(submission_id).value)
        except RuntimeError as error:
            if "does not exist" in str(error) or "404" in str(error):
                return None
            raise

    def details(self, submission_id: str) -> dict[str, Any]:
        info = self.client.get_job_info(submission_id)
        node = getattr(info, "driver_node_id", None)
        return {
            "message": info.message,
            "driver_exit_code": getattr(info, "driver_exit_code", None),
            "error_type": getattr(info, "error_type", None),
            "node_gone": node if node and self._gone(node) else None,  # the node the attempt ran on, if it left
        }

    def _gone(self, node_id: str) -> bool:
        """Whether the node is no longer a live member of the cluster (False when that cannot be
        known): Ray's own message for an attempt lost with its node varies ("failed to get job
        supervisor", "node died", ...)."""
        try:
            status = get_cluster_status(self.address, timeout=GCS_TIMEOUT_S)
        except Exception:  # the head is away: say nothing rather than guess
            return False
        return node_id not in {node.node_id for node in [*status.active_nodes, *status.idle_nodes]}

    def stop(self, submission_id: str) -> None:
        try:
            self.client.stop_job(submission_id)
        except RuntimeError as error:
            logger.warning("ray.stop_failed submission_id=%s error=%s", submission_id, error)

    def delete(self, submission_id: str) -> None:
        """Forget an ended execution (its record and logs): Ray keeps every job it ran otherwise."""
        try:
            self.client.delete_job(submission_id)
        except RuntimeError as error:
            logger.warning("ray.delete_failed submission_id=%s error=%s", submission_id, error)

    def list_ours(self) -> list[tuple[str, str]]:
        """(submission id, status) of every Ray job this service submitted (metadata service=ascl)."""
        return [
            (job.submission_id, str(job.status.value))
            for job in self.client.list_jobs()
            if (job.metadata or {}).get("service") == "ascl" and job.submission_id
        ]

    def logs(self, submission_id: str) -> str | None:
        """For API requests (GET /logs, streams): bounded in time and in number."""
        return self.reads.log_for_request(submission_id)

    def final_log(self, submission_id: str) -> str | None:
        """For the control plane, once an attempt has ended: bounded in time only."""
        return self.reads.log(submission_id)


def entrypoint_reservation(resources: dict[str, Any]) -> dict[str, Any]:
    """What the Ray job's entrypoint reserves: the one worker's resources, or nothing for a gang
    (its driver only waits on the trainer, whose workers hold the reservation)."""
    if int(resources.get("workers") or 1) > 1:
        return {"entrypoint_num_cpus": 0}
    memory = resources.get("memory_gb")
    return {
        "entrypoint_num_cpus": resources.get("cpus", 1),
        "entrypoint_num_gpus": resources.get("gpus", 0) or None,
        "entrypoint_memory": int(memory * 2**30) if memory else None,
    }
