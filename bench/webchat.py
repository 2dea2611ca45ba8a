"""Turns per second through the real server and the widget's WebSocket.

Starts ``python -m bot run`` (uvicorn, httptools, uvloop) on a free port with a
temporary SQLite database (or ``DATABASE_URL`` if set, which must be migrated),
then measures the time from sending a customer message to its ack (which
follows every reply of the turn): one customer in sequence, then many at once.

    .venv/bin/python bench/webchat.py [--turns 300] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
TEXTS = (
    "здравствуйте",
    "как оплатить",
    "какой тариф на отопление",
    "телефон горячей линии",
    "спасибо",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def customer(url: str, turns: int, latencies: list[float]) -> None:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": None}))
        await ws.recv()  # session
        await ws.recv()  # history
        for i in range(turns):
            cid = uuid.uuid4().hex
            started = time.perf_counter()
            await ws.send(
                json.dumps({"type": "message", "text": TEXTS[i % len(TEXTS)], "client_id": cid})
            )
            replies = 0
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message":
                    replies += 1
                elif frame.get("client_id") == cid:
                    if frame["type"] != "ack":
                        raise RuntimeError(f"turn failed: {frame}")
                    break
            if replies == 0:
                raise RuntimeError("an ack came before the turn's replies")
            latencies.append(time.perf_counter() - started)


async def measure(url: str, clients: int, turns: int) -> str:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(customer(url, turns, latencies) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return (
        f"clients={clients:<3} turns={len(latencies):<5} {len(latencies) / elapsed:7.1f} turns/s"
        f"  p50={q[49] * 1000:6.1f} ms  p95={q[94] * 1000:6.1f} ms  p99={q[98] * 1000:6.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="turns of the single customer")
    parser.add_argument("--clients", type=int, default=20, help="customers at once")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}")
        env.update(PORT=str(port), HOST="127.0.0.1", LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
        # One customer sending as fast as it can is what the widget's rate
        # limits refuse: lift them (unless set) to measure the turns themselves.
        for name in ("WIDGET_MESSAGE", "WIDGET_IP_MESSAGE"):
            env.setdefault(f"{name}_RATE_PER_SECOND", "100000")
            env.setdefault(f"{name}_BURST", "100000")
        server = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            url = f"ws://127.0.0.1:{port}/widget/ws"
            backend = env["DATABASE_URL"].split(":", 1)[0]
            print(f"webchat over WebSocket, {backend}, load average {os.getloadavg()[0]:.2f}")
            print(asyncio.run(measure(url, 1, 20)).replace("clients=1  ", "warm-up    "))
            print(asyncio.run(measure(url, 1, args.turns)))
            print(asyncio.run(measure(url, args.clients, max(args.turns // args.clients, 5))))
        finally:
            server.terminate()
            server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
