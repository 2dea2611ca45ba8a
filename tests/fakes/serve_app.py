"""Serve the app as ``python -m bot run`` does, with a short delivery lease.

For tests that run the app in a process of its own and kill it: a reply row
leased by a killed process is due again after ``--lease`` seconds instead of
the production minute. Settings come from the environment, as in production.
"""

from __future__ import annotations

import argparse

import uvicorn

from bot.app import create_app
from bot.container import Container
from bot.delivery import DeliveryPolicy
from config import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args()
    settings = load_settings()
    policy = DeliveryPolicy(
        lease_seconds=args.lease,
        sweep_interval_seconds=0.3,
        sweep_min_age_seconds=0.0,
        base_backoff_seconds=0.3,
        max_backoff_seconds=2.0,
    )
    app = create_app(settings, Container(settings, delivery_policy=policy))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
