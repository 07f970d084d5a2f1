"""The Open Inference Protocol's gRPC server inside a uvicorn worker.

Each worker runs a `grpc.aio` server on `CHURN_GRPC_PORT` next to its HTTP server, on the same
event loop (uvloop) and the same Runtime: the same batcher, cache, prediction log, security
services and metrics answer both protocols, and nothing crosses a process or a thread. The
workers share the port as they share the HTTP one: grpcio binds with SO_REUSEPORT (on by
default on Linux, set here explicitly), so the kernel spreads connections over the workers.
A gRPC channel is one long-lived HTTP/2 connection, so one client's calls stay with one worker;
many clients (or a client opening several channels) use them all.

Lifecycle: the app's lifespan starts the server once the Runtime is open and stops it before
the Runtime closes. `stop(grace)` refuses new calls at once (UNAVAILABLE, so a client retries
elsewhere) and lets the calls in flight finish within `CHURN_GRACEFUL_SHUTDOWN_SECONDS`; only
then does the Runtime drain the batcher and write the prediction log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from churn_mlops.api.v2.grpc_health import HealthServicer, add_health_servicer
from churn_mlops.api.v2.grpc_service import InferenceServicer
from churn_mlops.api.v2.proto import grpc_predict_v2_pb2_grpc as predict_grpc
from churn_mlops.runtime import Runtime

logger = logging.getLogger("churn_mlops.api.grpc")

# A ModelInfer of CHURN_MAX_BATCH_ROWS rows is a few MB: grpcio's default limit (4 MB) would
# refuse a 10,000-row request with typed contents before it reaches the service.
_SERVER_OPTIONS_BASE = (
    ("grpc.so_reuseport", 1),
    # Keepalive pings from clients every 10 s are fine; a client does not get GOAWAY for them.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


def server_options(max_request_bytes: int) -> list[tuple[str, int]]:
    """The options of each worker's server: SO_REUSEPORT, and messages as large as the HTTP
    body limit (`CHURN_MAX_REQUEST_BYTES`) in and out."""
    return [
        *_SERVER_OPTIONS_BASE,
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.max_send_message_length", max_request_bytes),
    ]


@asynccontextmanager
async def serve_grpc(runtime: Runtime, port: int) -> AsyncIterator[grpc.aio.Server]:
    """Serve `inference.GRPCInferenceService` and `grpc.health.v1.Health` from `runtime` on
    `port` (of `CHURN_HOST`) until exit, then stop gracefully."""
    settings = runtime.settings
    server = grpc.aio.server(options=server_options(settings.max_request_bytes))
    servicer = InferenceServicer(runtime)
    predict_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    add_health_servicer(HealthServicer(runtime.model), server)
    address = f"{_host(settings.host)}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"gRPC could not listen on {address}")
    await server.start()
    logger.info("gRPC (Open Inference Protocol) listening on %s", address)
    try:
        yield server
    finally:
        # New calls get UNAVAILABLE at once; calls in flight finish within the grace period.
        await server.stop(settings.graceful_shutdown_seconds)
        logger.info("gRPC server stopped")


def _host(host: str) -> str:
    """An IPv6 literal in brackets, as a gRPC address needs it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
