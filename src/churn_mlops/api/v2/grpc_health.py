"""`grpc.health.v1.Health/Check`, the RPC Kubernetes' native `grpc:` probes call.

grpcio's own servicer lives in `grpcio-health-checking`, which this project does not depend on;
the protocol is two one-field messages, so they are encoded here by hand:
`HealthCheckRequest { string service = 1; }` and
`HealthCheckResponse { ServingStatus status = 1; }` (UNKNOWN 0, SERVING 1, NOT_SERVING 2).

Services a probe may name:
- `""` or `inference.GRPCInferenceService`: readiness, SERVING once the model is loaded and
  until shutdown starts (the same answer as `/health/ready` and `ServerReady`);
- `liveness`: SERVING whenever the process answers at all;
- anything else: NOT_FOUND, as the health protocol specifies.
`Watch` is not served (UNIMPLEMENTED): probes only call `Check`.
"""

from __future__ import annotations

from typing import NoReturn, Protocol

import grpc

from churn_mlops.lifecycle.served import ModelSlot


class Context(Protocol):
    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


HEALTH_SERVICE = "grpc.health.v1.Health"
INFERENCE_SERVICE = "inference.GRPCInferenceService"
LIVENESS_SERVICE = "liveness"
SERVING = 1
NOT_SERVING = 2
_FIELD_1_VARINT = 0x08
_FIELD_1_BYTES = 0x0A


class HealthServicer:
    """Answers `Check` from the served model's slot."""

    def __init__(self, model: ModelSlot) -> None:
        self.model = model

    async def check(self, service: str, context: Context) -> int:
        if service == LIVENESS_SERVICE:
            return SERVING
        if service in ("", INFERENCE_SERVICE):
            return SERVING if self.model.current is not None else NOT_SERVING
        await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")


def add_health_servicer(servicer: HealthServicer, server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.check,
        request_deserializer=decode_check_request,
        response_serializer=encode_check_response,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(HEALTH_SERVICE, {"Check": handler}),)
    )


def decode_check_request(message: bytes) -> str:
    """The `service` field of a serialised HealthCheckRequest (other fields are skipped)."""
    service = ""
    position = 0
    while position < len(message):
        tag, position = _varint(message, position)
        wire_type = tag & 7
        if wire_type == 0:
            _, position = _varint(message, position)
        elif wire_type == 2:
            length, position = _varint(message, position)
            if tag == _FIELD_1_BYTES:
                service = message[position : position + length].decode("utf-8")
            position += length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
    return service


def encode_check_response(status: int) -> bytes:
    return bytes((_FIELD_1_VARINT, status))


def _varint(message: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(message):
            raise ValueError("truncated protobuf varint")
        byte = message[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
