"""Run the services as real processes (``python -m <package>``), as end-to-end tests need."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from cls_runtime.settings import Settings
from tests.support.redis_server import free_port


class ServiceProcess:
    """One service process with its own environment; output goes to a log file for failures."""

    def __init__(self, package: str, env: dict[str, str], log_dir: Path) -> None:
        self.package = package
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_dir / f"{package}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.package],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as a crash would be."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def wait(self, timeout: float) -> int | None:
        return None if self.process is None else self.process.wait(timeout)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_http_ok(url: str, timeout: float = 20.0, service: ServiceProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and not service.alive:
            raise RuntimeError(f"{service.package} exited:\n{service.log_tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    tail = service.log_tail() if service is not None else ""
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s\n{tail}")


def api_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    """The environment of ``python -m api_service`` in the test's namespace, on ``port``."""
    return {
        "CLS_NAMESPACE": settings.namespace,
        "CLS_REDIS_URL": settings.redis_url,
        "CLS_AMQP_URL": settings.amqp_url,
        "CLS_CONTROLLER_TOKENS": settings.controller_tokens,
        "CLS_HOST": "127.0.0.1",
        "CLS_PORT": str(port),
        **extra,
    }


def events_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of ``python -m event_jobs`` in the test's namespace."""
    return {
        "CLS_NAMESPACE": settings.namespace,
        "CLS_REDIS_URL": settings.redis_url,
        "CLS_AMQP_URL": settings.amqp_url,
        **extra,
    }


@contextlib.contextmanager
def api_process(settings: Settings, log_dir: Path, **extra: str) -> Iterator[ServiceProcess]:
    """``python -m api_service`` on a free port, once it answers /health; stopped after.
    Its URL is ``base_url(service)``."""
    port = free_port()
    service = ServiceProcess("api_service", api_env(settings, port, **extra), log_dir).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", service=service)
        yield service
    finally:
        service.stop()


def base_url(service: ServiceProcess) -> str:
    """The URL an API process started by ``api_process`` serves on."""
    return f"http://127.0.0.1:{service.env['CLS_PORT']}"
