"""The servers under test, each a real process on a free port, with its own namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import httpx
import redis
import yaml

from event_jobs.pipeline import RELAY_JOB
from shared_models.names import Names

# Every controller the benchmarks report as, with its bearer token.
CONTROLLER_TOKENS = {
    "gcp-nodepool-controller": "bench-gcp-token",
    "aws-nodepool-controller": "bench-aws-token",
    "azure-nodepool-controller": "bench-azure-token",
    # The simulated controllers read the API with their own token (each needs one).
    "gcp-cluster-controller": "bench-gcp-cluster-token",
    "aws-cluster-controller": "bench-aws-cluster-token",
    "azure-cluster-controller": "bench-azure-cluster-token",
}


def controller_tokens_env() -> str:
    return ",".join(f"{name}={token}" for name, token in CONTROLLER_TOKENS.items())


def registry_file(path: Path, optional: list[str]) -> Path:
    """A registry of controllers (CLS_CONTROLLERS_FILE) at ``path``: the six simulated ones, as
    by default, and ``optional`` controllers of GCP nodepools. Only a registered controller's
    report is stored, and a scenario that reports as a new controller each round (so that every
    report is applied, not a duplicate) registers those, and gets their broker users."""
    entries = [
        {"name": f"{p}-{k}-controller", "kinds": [k], "platforms": [p], "required": True}
        for p in ("gcp", "aws", "azure")
        for k in ("nodepool", "cluster")
    ]
    entries += [
        {"name": name, "kinds": ["nodepool"], "platforms": ["gcp"], "required": False}
        for name in optional
    ]
    path.write_text(yaml.safe_dump({"controllers": entries}))
    broker_users(path)
    return path


def broker_users(controllers_file: Path) -> None:
    """Create the broker users of the registry at ``controllers_file`` (a report is applied only
    when published as its controller's user), as `make bench` does for the default registry."""
    env = {**os.environ, "CLS_CONTROLLERS_FILE": str(controllers_file)}
    script = Path(__file__).resolve().parent.parent / "scripts" / "broker_users.py"
    subprocess.run([sys.executable, str(script)], env=env, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def peak_rss_mb(pid: int) -> float:
    """The highest resident set size a process has had so far (VmHWM), from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Server:
    """``python -m <module>`` with CLS_ settings in the environment; stopped on exit."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        log_dir: Path,
        health_path: str | None = "/health",
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.module = module
        self.port = free_port()
        self.env = {
            **os.environ,
            "CLS_HOST": "127.0.0.1",
            "CLS_PORT": str(self.port),
            "CLS_CONTROLLER_TOKENS": controller_tokens_env(),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.log_path = log_dir / f"{module}-{self.port}.log"
        self.health_path = health_path
        self.ready = ready  # for processes without HTTP: answers whether the process is ready
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, stdout=log, stderr=log
            )
        self._wait_healthy(30.0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited:\n{self.log_tail()}")
            if self._is_ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.module} not healthy within {timeout}s:\n{self.log_tail()}")

    def _is_ready(self) -> bool:
        if self.ready is not None and not self.ready():
            return False
        if self.health_path is None:
            return True
        try:
            return httpx.get(self.url + self.health_path, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def api_server(namespace: str, log_dir: Path, **settings: str) -> Server:
    """The API as deployed: ``python -m api_service`` without in-process event jobs (extra CLS_
    settings by lower-case name); ``deployed_api`` adds the process that runs them."""
    env = {
        "CLS_NAMESPACE": namespace,
        "CLS_EVENT_JOBS": "separate",
        **{f"CLS_{k.upper()}": v for k, v in settings.items()},
    }
    return Server("api_service", env, log_dir)


def events_server(namespace: str, log_dir: Path, redis_url: str, **settings: str) -> Server:
    """``python -m event_jobs`` (outbox relay, reconcile loop); ready once it leads the
    relay, read in Redis at ``redis_url``."""
    env = {"CLS_NAMESPACE": namespace, **{f"CLS_{k.upper()}": v for k, v in settings.items()}}
    server = Server("event_jobs", env, log_dir, health_path=None)
    lock = Names(namespace).lock(RELAY_JOB)

    def leads() -> bool:
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            token = client.get(lock)
        return token is not None and str(token).split(":")[1] == str(server.pid)

    server.ready = leads
    return server


@contextlib.contextmanager
def deployed_api(
    namespace: str, log_dir: Path, redis_url: str, **settings: str
) -> Iterator[Server]:
    """The API as deployed: ``api_server`` and one ``events_server`` with the same settings."""
    with (
        api_server(namespace, log_dir, **settings) as api,
        events_server(namespace, log_dir, redis_url, **settings),
    ):
        yield api


def baseline_server(namespace: str, log_dir: Path) -> Server:
    return Server("bench.baseline_app", {"CLS_NAMESPACE": namespace}, log_dir)


def worker(
    module: str,
    namespace: str,
    log_dir: Path,
    ready: Callable[[], bool] | None = None,
    **settings: str,
) -> Server:
    """A process without HTTP (ingester, stub, baseline consumer); ``ready`` tells when it runs."""
    env = {"CLS_NAMESPACE": namespace, **{f"CLS_{k.upper()}": v for k, v in settings.items()}}
    return Server(module, env, log_dir, health_path=None, ready=ready)
