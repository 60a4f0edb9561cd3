"""Benchmark: what one round trip costs on this machine, the floor under every booking.

    python tests/bench_roundtrip.py [mysql+aiomysql://root:@127.0.0.1:3306/test]

Prints the CPU of a loopback TCP round trip between two asyncio streams of one process (both
ends' sends and reads), and the client CPU of a bare `SELECT 1` through aiomysql (no
SQLAlchemy). A booking is about eleven statements in one transaction, its HTTP request and
answer, a Redis claim and a publish: where a round trip costs 0.17-0.27 ms of the client's
CPU (this project's CI machine, 2026-12-02), its statements alone cost 2-3 ms. Not collected
by pytest: speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import asyncio
import sys
import time

from sqlalchemy.engine import make_url

ROUNDS = 3000


async def loopback() -> float:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data[:1])
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.process_time()
    for _ in range(ROUNDS):
        writer.write(b"x" * 200)
        await reader.read(16)
    spent = time.process_time() - began
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return spent / ROUNDS


async def select_one(database_url: str) -> float:
    import aiomysql

    url = make_url(database_url)
    connection = await aiomysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        db=url.database or "test",
    )
    try:
        cursor = await connection.cursor()
        began = time.process_time()
        for _ in range(ROUNDS):
            await cursor.execute("SELECT 1")
            await cursor.fetchall()
        return (time.process_time() - began) / ROUNDS
    finally:
        connection.close()


async def main(database_url: str) -> None:
    print(f"loopback TCP round trip (both ends, one process): {await loopback() * 1e3:.3f} ms CPU")
    try:
        query = await select_one(database_url)
    except OSError as exc:
        print(f"aiomysql SELECT 1: no MySQL at {database_url} ({exc})")
        return
    print(f"aiomysql SELECT 1 round trip: {query * 1e3:.3f} ms of the client's CPU")


if __name__ == "__main__":
    asyncio.run(
        main(sys.argv[1] if len(sys.argv) > 1 else "mysql+aiomysql://root:@127.0.0.1:3306/test")
    )
