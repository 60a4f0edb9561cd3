"""`serve --workers N`: uvicorn's supervisor with one listening socket per worker.

With one shared listening socket, whichever worker wakes first accepts a whole burst of new
connections (asyncio accepts up to the backlog per wake-up), so a storm of viewers or a load
balancer opening its pool lands mostly on one worker: measured 81% / 19% of the CPU of two
workers under the booking load. Here every worker listens on its own socket of one
SO_REUSEPORT group, and the kernel spreads new connections over them by their addresses
(measured 50% / 44%). uvicorn still runs the workers: signals, health checks, restarts; a
worker that is replaced takes over the socket of the one it replaces, so no socket is left
listening with nobody accepting on it.
"""

from __future__ import annotations

import logging
import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port in the port's SO_REUSEPORT group (listened on by the
    worker that serves it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class Workers(Multiprocess):
    def __init__(self, config: Config) -> None:
        first = listening_socket(config.host, config.port)
        port = first.getsockname()[1]  # the port the first one got, if 0 was asked for
        others = [listening_socket(config.host, port) for _ in range(config.workers - 1)]
        self.own = [first, *others]
        logger.info("Uvicorn running on http://%s:%d, %d workers", config.host, port, len(self.own))
        super().__init__(config, sockets=[])

    def spawn(self, index: int) -> Process:
        process = Process(self.config, [self.own[index]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self.spawn(index) for index in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        # As uvicorn's, with the replacement given the socket of the worker it replaces.
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping.", process.pid)
                self.should_exit.set()
                return
            logger.info("Child process [%s] died", process.pid)
            self.processes[index] = self.spawn(index)

    def restart_all(self) -> None:
        # SIGHUP: each worker replaced in turn, the new one serving before the old one leaves.
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self.spawn(index)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                logger.error("Child process [%s] was not ready in time; restart aborted", new.pid)
                return
            old.terminate()
            old.join()
            self.processes[index] = new
