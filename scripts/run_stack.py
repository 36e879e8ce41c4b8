"""Run the CLS services together and interleave their output (``make run``).

Starts ``python -m <service>`` for each service in ``CLS_STACK_SERVICES`` (space separated,
default ``api_service event_jobs status_ingester reconciler_stub``: the stack as
deployed, the event jobs in a process of their own) with this interpreter and environment,
prefixes every line of their stdout/stderr with the service name, forwards Ctrl-C / SIGTERM to
all of them as SIGTERM (SIGKILL after 15 s, or at once on a second Ctrl-C), and if one of them
exits on its own, stops the others and exits with that service's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TextIO

EVENTS_SERVICE = "event_jobs"
DEFAULT_SERVICES = ("api_service", EVENTS_SERVICE, "status_ingester", "reconciler_stub")
# Development credentials for controllers that report over HTTP (the simulated ones use AMQP).
DEV_CONTROLLER_TOKENS = ",".join(
    f"{platform}-{kind}-controller=dev-{platform}-{kind}-token"
    for platform in ("gcp", "aws", "azure")
    for kind in ("nodepool", "cluster")
)
# The cluster the user guide's examples refer to, created for its owner on `make run` so that
# the guide's curl commands work as printed (CLS_DEMO_CLUSTER=false to skip).
DEMO_OWNER = "user@example.com"
DEMO_CLUSTER = {
    "id": "550e8400-e29b-41d4-a716-446655440000",
    "name": "demo",
    "spec": {
        "platform": {"type": "gcp", "gcp": {"projectID": "demo-project", "region": "us-central1"}}
    },
}
STOP_TIMEOUT = 15.0
# After a child exits, how long to wait for the rest of its output (a grandchild could hold
# the pipe open forever).
DRAIN_TIMEOUT = 2.0
CHUNK = 64 * 1024
MAX_LINE = 256 * 1024
COLOURS = ("36", "33", "35", "32", "34", "31")  # cyan, yellow, magenta, green, blue, red


@dataclass
class Output:
    """Writes prefixed lines to one text stream, coloured only on a terminal."""

    stream: TextIO
    width: int
    colour: bool
    broken: bool = False

    def prefix(self, name: str, sgr: str) -> str:
        label = f"{name:<{self.width}} |"
        return f"\x1b[{sgr}m{label}\x1b[0m " if self.colour else f"{label} "

    def line(self, name: str, index: int, text: str) -> None:
        self.write(self.prefix(name, COLOURS[index % len(COLOURS)]) + text + "\n")

    def note(self, text: str) -> None:
        self.write(self.prefix("run_stack", "1") + text + "\n")  # bold, uncoloured

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # Our reader went away (e.g. `| head`): keep supervising, stop printing.
            self.broken = True


@dataclass
class Service:
    name: str
    index: int
    process: asyncio.subprocess.Process
    readers: list[asyncio.Task[None]] = field(default_factory=list)


async def pump(stream: asyncio.StreamReader, service: Service, out: Output) -> None:
    """Copy ``stream`` to ``out`` line by line, each line prefixed with the service name."""
    pending = b""
    while True:
        chunk = await stream.read(CHUNK)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            out.line(service.name, service.index, _decode(raw))
        if len(pending) > MAX_LINE:  # an endless line: print what we have
            out.line(service.name, service.index, _decode(pending))
            pending = b""
    if pending:
        out.line(service.name, service.index, _decode(pending))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def exit_code(returncode: int) -> int:
    """A child's return code as a shell would report it (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def signal_group(service: Service, sig: signal.Signals) -> None:
    """Send ``sig`` to the child's process group (the child and anything it spawned)."""
    if service.process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(service.process.pid, sig)


class Supervisor:
    def __init__(self, names: list[str], out: Output) -> None:
        self.names = names
        self.out = out
        self.services: list[Service] = []
        self.stop_requested = asyncio.Event()
        self.signals_received = 0

    def on_signal(self, sig: signal.Signals) -> None:
        self.signals_received += 1
        if self.signals_received == 1:
            self.out.note(f"{sig.name} received: stopping all services (again to force)")
            self.stop_requested.set()
        else:
            self.out.note(f"{sig.name} received again: killing all services")
            for service in self.services:
                signal_group(service, signal.SIGKILL)

    async def start(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")  # children write into pipes: no block buffering
        env.setdefault("CLS_CONTROLLER_TOKENS", DEV_CONTROLLER_TOKENS)
        env.setdefault("CLS_LOG_FORMAT", "text")  # read by people: JSON lines are for pipelines
        # The simulated controllers re-read a resource from this API when an event claims a
        # generation they have not seen (so a forged one cannot freeze it).
        env.setdefault("CLS_STUB_API_URL", f"http://127.0.0.1:{env.get('CLS_PORT', '8080')}")
        if EVENTS_SERVICE in self.names:
            # The events process relays: the API need not. Without it, the API keeps its
            # default (in-process) so that nothing is left in the outbox.
            env.setdefault("CLS_EVENT_JOBS", "separate")
        for index, name in enumerate(self.names):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                name,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                # Own process group: a terminal's Ctrl-C reaches only us, and we decide what
                # the children get (one SIGTERM each, to their whole group).
                process_group=0,
            )
            service = Service(name, index, process)
            assert process.stdout is not None and process.stderr is not None
            service.readers = [
                asyncio.create_task(pump(process.stdout, service, self.out)),
                asyncio.create_task(pump(process.stderr, service, self.out)),
            ]
            self.services.append(service)
            self.out.note(f"started {name} (pid {process.pid})")

    async def run(self) -> int:
        """Supervise until a stop is requested or a child exits. Returns our exit code."""
        waits = {asyncio.create_task(s.process.wait()): s for s in self.services}
        stop = asyncio.create_task(self.stop_requested.wait())
        done, _ = await asyncio.wait([*waits, stop], return_when=asyncio.FIRST_COMPLETED)

        code = 0
        if not stop.done():
            # A child exited on its own: that is a failure of the stack, whatever its code.
            exited = next(waits[task] for task in done)
            rc = exited.process.returncode
            assert rc is not None
            code = exit_code(rc)
            self.out.note(f"{exited.name} exited unexpectedly with code {rc}: stopping the rest")
        stop.cancel()

        await self.stop_all()
        for task in waits:
            task.cancel()
        await self.drain()
        return code

    async def stop_all(self) -> None:
        running = [s for s in self.services if s.process.returncode is None]
        for service in running:
            signal_group(service, signal.SIGTERM)
        if not running:
            return
        _, stragglers = await asyncio.wait(
            [asyncio.create_task(s.process.wait()) for s in running], timeout=STOP_TIMEOUT
        )
        for service in running:
            if service.process.returncode is None:
                self.out.note(f"{service.name} still running after {STOP_TIMEOUT:.0f}s: SIGKILL")
                signal_group(service, signal.SIGKILL)
        if stragglers:
            await asyncio.wait(stragglers, timeout=5)
        for service in running:
            if service.process.returncode is not None:
                self.out.note(f"{service.name} stopped (code {service.process.returncode})")

    async def drain(self) -> None:
        readers = [reader for s in self.services for reader in s.readers]
        if not readers:
            return
        _, pending = await asyncio.wait(readers, timeout=DRAIN_TIMEOUT)
        for reader in pending:
            reader.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _post_demo_cluster(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/v1/clusters",
        data=json.dumps(DEMO_CLUSTER).encode(),
        headers={"Content-Type": "application/json", "X-User-Email": DEMO_OWNER},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return f"created demo cluster {DEMO_CLUSTER['id']} (HTTP {response.status})"
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise
        if b"not available" in error.read():
            return (
                f"demo cluster {DEMO_CLUSTER['id']} was deleted earlier in this namespace, and "
                "cluster ids are never reused: start with another CLS_NAMESPACE to get it back"
            )
        return f"demo cluster {DEMO_CLUSTER['id']} already exists"


async def create_demo_cluster(port: str, out: Output) -> None:
    """Wait for the API, then make sure the user guide's cluster exists for its owner."""
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            message = await asyncio.to_thread(_post_demo_cluster, base)
        except (OSError, urllib.error.URLError):
            await asyncio.sleep(0.2)
            continue
        out.note(f"{message} for {DEMO_OWNER}: the user guide's curl examples work as printed")
        return
    out.note("API did not answer within 60 s: demo cluster not created")


def service_names() -> list[str]:
    raw = os.environ.get("CLS_STACK_SERVICES", "")
    return raw.split() or list(DEFAULT_SERVICES)


async def main() -> int:
    names = service_names()
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    out = Output(sys.stdout, width=max(len(n) for n in [*names, "run_stack"]), colour=colour)
    supervisor = Supervisor(names, out)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.on_signal, sig)

    if "api_service" in names:
        port = os.environ.get("CLS_PORT", "8080")
        out.note(f"API listening on http://localhost:{port} (CLS_HOST/CLS_PORT to change)")
        out.note(f"try: curl http://localhost:{port}/health")
    out.note(f"starting: {' '.join(names)} — Ctrl-C stops everything")

    try:
        await supervisor.start()
    except BaseException:
        await supervisor.stop_all()
        await supervisor.drain()
        raise
    demo: asyncio.Task[None] | None = None
    if "api_service" in names and os.environ.get("CLS_DEMO_CLUSTER", "true") != "false":
        demo = asyncio.create_task(create_demo_cluster(os.environ.get("CLS_PORT", "8080"), out))
    code = await supervisor.run()
    if demo is not None:
        demo.cancel()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
