from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from hub.__main__ import WEBSOCKET_OPTIONS
from hub.app import create_app
from hub.config import Settings
from hub.listener import Listener


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn serving the hub in a thread of this process; yields its base URL."""
    with serve_in_thread(settings) as (url, _server):
        yield url


@contextmanager
def serve_in_thread(settings: Settings, **options: Any) -> Iterator[tuple[str, uvicorn.Server]]:
    """Like run_server, with the WebSocket options `python -m hub serve` sets (`options`
    override them) and the server itself, so a test can stop it."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http=Listener,
        **{**WEBSOCKET_OPTIONS, **options},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the hub did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def hub_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The environment of a `python -m hub serve` process on these settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    assert settings.redis_url is not None
    return {
        **environ,
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_REDIS_URL": settings.redis_url,
        "HUB_REDIS_CLUSTER": "true" if settings.redis_cluster else "false",
        "HUB_SECRET_KEY": settings.secret_key,
        "HUB_DATA_DIR": str(data_dir),
        "HUB_ARGON2_TIME_COST": "1",
        "HUB_ARGON2_MEMORY_KIB": "1024",
        "HUB_APPROVE_DOCTORS": "false",
        "HUB_LOG_LEVEL": "warning",
        "HUB_REGISTRATIONS": str(settings.registrations),
        "HUB_MAX_ADDRESS_HOLDS": str(settings.max_address_holds),
        "HUB_OFFER_TTL": str(settings.offer_ttl),
        "HUB_DRAIN_SECONDS": str(settings.drain_seconds),
        **({"HUB_SMTP_URL": settings.smtp_url} if settings.smtp_url else {}),
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a hub process (kill it if it does not stop within 15 s) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@contextmanager
def hub_processes(
    settings: Settings, tmp: Path, count: int
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """`count` real `python -m hub serve` processes; yields (base URL, process) once each
    answers, and stops them all after."""
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for n in range(count):
            port = free_port()
            log = tmp / f"hub{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "hub", "serve", "--port", str(port)],
                    env=hub_env(settings, tmp / f"hub{n}"),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append((f"http://127.0.0.1:{port}", process, log))
        with httpx.Client(timeout=2) as client:
            for url, process, log in started:
                deadline = time.monotonic() + 30
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"hub exited early:\n{log.read_text()[-3000:]}")
                    try:
                        if client.get(f"{url}/specializations/").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"hub did not answer:\n{log.read_text()[-3000:]}")
                    time.sleep(0.05)
        yield [(url, process) for url, process, _ in started]
    finally:
        for _, process, _ in started:
            stop(process)


def serve_process(
    settings: Settings, backend: str, tmp: Path, log: Path, **environ: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m hub serve` on these settings (the embedded backend too), its output to
    `log`, with `environ` on top; the process and its URL once it answers."""
    port = free_port()
    if backend == "embedded":
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env = {**inherited, "HUB_DATABASE_URL": settings.database_url, "HUB_DATA_DIR": str(tmp)}
        env |= {"HUB_ARGON2_TIME_COST": "1", "HUB_ARGON2_MEMORY_KIB": "1024"}
        env |= {"HUB_APPROVE_DOCTORS": "false"}
    else:
        env = hub_env(settings, tmp)
    env |= {"HUB_PORT": str(port), **environ}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/specializations/", timeout=2)
            return process, f"http://127.0.0.1:{port}"
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
