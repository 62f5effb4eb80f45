"""Launching the system locally, for the tests and the benchmarks alike.

Not part of the image: it starts the processes of ``make run`` on free loopback ports,
each run with queues and Redis keys of its own.
"""

from devstack.faults import TcpProxy, kill_clients
from devstack.observe import backend_calls, eventually, metric
from devstack.processes import (
    ROOT,
    SQS_DIR,
    Proc,
    free_port,
    port_open,
    spawn,
    start_backend,
    start_emulator,
    start_redis,
    wait_http,
)
from devstack.stack import Stack, new_stack_env

__all__ = [
    "ROOT",
    "SQS_DIR",
    "Proc",
    "Stack",
    "TcpProxy",
    "backend_calls",
    "eventually",
    "free_port",
    "kill_clients",
    "metric",
    "new_stack_env",
    "port_open",
    "spawn",
    "start_backend",
    "start_emulator",
    "start_redis",
    "wait_http",
]
