"""`ascl serve`: the whole service in one process on the embedded defaults — migrations, a local Ray
head (with its job server), the MLflow tracking server and UI, the dispatcher/monitor in a
background thread, and the API under uvicorn. Only URLs change for production. The Ray head and
the MLflow server are children that die with this process, however it ends."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI

from control.dispatcher import Dispatcher
from control.heap import freeze_startup_heap
from control.local_ray import LocalRay, become_client, start_local_ray
from control.mlflow_server import MlflowServer, start_mlflow_server
from control.ports import listening_sockets
from control.ray_cluster import RayCluster
from control.tracking import Tracker
from control.wiring import ControlPlane, api_app, apply_queues_file, build_control_plane, tracker_for, ui_url
from service.auth.bootstrap import ensure_admin_token
from service.credentials import remember_token_file
from service.db.migrate import upgrade
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)


@dataclass
class Stack:
    """Everything `serve` starts, for the CLI and for end-to-end tests."""

    settings: ServiceSettings  # with the API's actual port
    plane: ControlPlane
    mlflow: MlflowServer
    admin_token: str
    listeners: list[socket.socket]  # the API's listening sockets, for the first server to serve on
    local_ray: LocalRay | None  # None: a Ray cluster we did not start
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def cluster(self) -> RayCluster:
        return self.plane.cluster

    @property
    def tracker(self) -> Tracker:
        return self.plane.tracker

    @property
    def dispatcher(self) -> Dispatcher:
        return self.plane.dispatcher

    def lost_child(self) -> str | None:
        """Which program this service started has exited (None: none has): without it no job runs."""
        if self.local_ray is not None and not self.local_ray.alive():
            return f"the local Ray head exited; see {self.local_ray.head.log}"
        if self.mlflow.process is not None and not self.mlflow.process.alive():
            return f"the MLflow server exited; see {self.mlflow.process.log}"
        return None

    def app(self) -> FastAPI:
        return api_app(
            self.settings,
            tracker=self.plane.tracker,
            cluster=self.plane.cluster,
            wake_dispatcher=self.wake.set,
            mlflow_ui_url=ui_url(self.settings, self.mlflow.url),
            dispatcher_metrics=self.plane.dispatcher.metrics,
        )


@contextmanager
def running_stack(settings: ServiceSettings) -> Iterator[Stack]:
    """Raises CannotListen at once, before anything starts, if the API cannot have its port."""
    with ExitStack() as cleanup:
        listeners = listening_sockets(settings.host, settings.port)
        for listener in listeners:
            cleanup.callback(listener.close)
        settings = settings.model_copy(update={"port": listeners[0].getsockname()[1]})  # port 0: the one bound
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.resolved_database_url)
        # the MLflow server and the local Ray head start side by side (seconds each)
        starting = cleanup.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-start"))
        mlflow_started = None
        if settings.mlflow_tracking_uri is None:
            abandoned = threading.Event()  # the head's start failed: no use waiting for the server's
            mlflow_started = starting.submit(start_mlflow_server, settings, abandoned=abandoned)
            cleanup.callback(_stop_once_started, mlflow_started, abandoned)
        address, dashboard_url = settings.ray_address, settings.ray_dashboard_url
        local = None
        if address is None:
            local = start_local_ray(
                num_cpus=settings.local_ray_num_cpus,
                num_gpus=settings.local_ray_num_gpus,
                log=settings.data_dir / "ray-head.log",
            )
            cleanup.callback(local.stop)
            address, dashboard_url = local.address, local.dashboard_url
        mlflow = mlflow_started.result() if mlflow_started else MlflowServer(str(settings.mlflow_tracking_uri), None)
        if local is not None:
            become_client(local)  # it changes this process's environment: not while the other thread starts MLflow
        plane = build_control_plane(
            settings, ray_address=address, tracker=tracker_for(settings, mlflow.url), dashboard_url=dashboard_url
        )
        apply_queues_file(settings, plane.sessions)
        admin_token = ensure_admin_token(plane.sessions, settings.admin_token_file)
        stack = Stack(settings, plane, mlflow, admin_token, listeners, local)
        if settings.dispatcher:
            stack.thread = threading.Thread(
                target=plane.dispatcher.run,
                args=(stack.stop, stack.wake),
                kwargs={"interval_s": settings.poll_interval_s},
                name="dispatcher",
                daemon=True,
            )
            stack.thread.start()
        try:
            yield stack
        finally:
            stack.stop.set()
            stack.wake.set()
            if stack.thread is not None:
                stack.thread.join(timeout=30)


def _stop_once_started(started: Future[MlflowServer], abandoned: threading.Event) -> None:
    """Stop the MLflow server: a start still under way is given up (it stops what it had begun, as
    a start that failed does), a server that started is stopped."""
    abandoned.set()
    if started.exception() is None:
        started.result().stop()


def dashboard_url(api_url: str, admin_token: str, *, terminal: bool | None = None) -> str:
    """The dashboard's address. On a terminal it carries the admin token in its fragment, which a
    browser never sends to a server; printed elsewhere (a log file, a journal) it does not."""
    terminal = sys.stdout.isatty() if terminal is None else terminal
    return f"{api_url}/ui/#token={admin_token}" if terminal else f"{api_url}/ui/ (sign in with the admin token)"


@contextmanager
def stopped_by_signals() -> Iterator[Callable[[], None]]:
    """SIGTERM (a service manager's stop) and SIGINT stop the service as Ctrl-C does: dispatcher,
    API, then its children, in order. SIGINT too because a script's background job starts with it
    ignored, and `kill -INT` would then do nothing. Once a stop has begun (by a signal, or by calling
    what this yields) further signals are ignored, so that it runs to its end (each of its steps is
    bounded). The handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stopping() -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)

    def stop(*_: object) -> None:
        stopping()
        raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, stop)
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: ServiceSettings, *, demo: bool = False, exit_after_demo: bool = False) -> int:
    with stopped_by_signals() as stopping, running_stack(settings) as stack:
        settings = stack.settings
        config = uvicorn.Config(stack.app(), log_level="info", access_log=settings.access_log)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": stack.listeners}, name="api", daemon=True)
        thread.start()
        try:
            return _serving(stack, server, thread, demo=demo, exit_after_demo=exit_after_demo)
        except KeyboardInterrupt:
            return 0
        finally:
            stopping()
            server.should_exit = True
            thread.join(timeout=10)


def _serving(
    stack: Stack, server: uvicorn.Server, thread: threading.Thread, *, demo: bool, exit_after_demo: bool
) -> int:
    """From the API's start to the service's stop: its exit status (the demo's, when it ran)."""
    settings = stack.settings
    while not server.started:
        if not thread.is_alive():
            return 1
        time.sleep(0.1)
    # Late (the dispatcher and the server run already): what is in flight then is kept for good,
    # a bounded, one-off cost; earlier, the server's own start-up objects would not be frozen.
    freeze_startup_heap()
    remember_token_file(settings.config_dir, settings.api_url, settings.admin_token_file)
    print(f"API:        {settings.api_url}/docs", flush=True)
    print(f"Dashboard:  {dashboard_url(settings.api_url, stack.admin_token)}", flush=True)
    print(f"Admin token: {settings.admin_token_file} (mode 0600; `ascl jobs` on this machine finds it)", flush=True)
    print(f"MLflow UI:  {stack.mlflow.url}", flush=True)
    print(f"Ray jobs:   {stack.cluster.dashboard_url}", flush=True)
    demo_status: list[int] = []
    demo_thread: threading.Thread | None = None
    if demo:
        from control.demo import run_demo

        def run() -> None:
            demo_status.append(run_demo(settings.api_url, stack.mlflow.url, token=stack.admin_token))

        demo_thread = threading.Thread(target=run, name="demo", daemon=True)
        demo_thread.start()
    try:
        # the API serves until stopped; the service stops too when a program it started has exited
        # (Ray's head or MLflow's server: jobs would wait for them forever), or after its demo if asked
        while thread.is_alive():
            if (lost := stack.lost_child()) is not None:
                print(f"ascl serve: {lost}; stopping", file=sys.stderr, flush=True)
                return 1
            if exit_after_demo and demo_thread is not None and not demo_thread.is_alive():
                return demo_status[0] if demo_status else 1
            thread.join(timeout=1)
        print("ascl serve: the API server stopped; stopping", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # stopped: with --exit-after-demo, before its demo had ended, a failure
        return demo_status[0] if demo_status else int(exit_after_demo)
