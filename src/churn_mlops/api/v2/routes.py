"""The FastAPI routes of the Open Inference Protocol: they document the V2 REST routes in the
OpenAPI, and answer through the same `OpenInferenceService` as the raw endpoints that normally
serve these paths first (api/v2/rest.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from churn_mlops.api.deps import RuntimeDep
from churn_mlops.api.scopes import PredictAccess
from churn_mlops.api.v2 import schemas
from churn_mlops.api.v2.rest import (
    LIVE_PATH,
    MODEL_NAME,
    MODEL_TEMPLATE,
    READY_PATH,
    SERVER_PATH,
    VERSION_TEMPLATE,
    Answer,
    InferHeaders,
    OpenInferenceService,
    error_answer,
)
from churn_mlops.core.errors import ServiceError
from churn_mlops.security.limits import too_large

ModelName = Annotated[Literal["churn"], Path(description=f"The served model: `{MODEL_NAME}`.")]
ModelVersion = Annotated[
    str, Path(description="A served version: the champion's, or the canary challenger's.")
]


def _error(description: str) -> dict[str, Any]:
    return {"model": schemas.V2Error, "description": description}


_MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error("No such model or served version"),
    503: _error("The model is still loading"),
}
_INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    **_MODEL_ERRORS,
    400: _error("A missing, extra or malformed tensor; the tensor and row are named"),
    401: _error("Missing or invalid credentials (see WWW-Authenticate)"),
    403: _error("The credentials lack the predict scope"),
    413: _error("More rows than CHURN_MAX_BATCH_ROWS, or a body past CHURN_MAX_REQUEST_BYTES"),
    429: _error("Too many requests for these credentials: see Retry-After"),
}
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/InferRequest"},
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
            },
        },
    }
}


def _response(answer: Answer) -> Response:
    headers = {k.decode(): v.decode() for k, v in answer.headers if k != b"content-type"}
    media = dict(answer.headers).get(b"content-type", b"application/json").decode()
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=media)


async def _limited_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def build_v2_router() -> APIRouter:
    router = APIRouter(tags=["open inference protocol (v2)"])

    @router.get(SERVER_PATH, summary="Server metadata", response_model=schemas.ServerMetadata)
    async def server_metadata(runtime: RuntimeDep) -> Response:
        """The server's name, version and protocol extensions."""
        return _response(OpenInferenceService(runtime).server_metadata())

    @router.get(LIVE_PATH, summary="Server liveness", response_model=schemas.ServerLive)
    async def server_live(runtime: RuntimeDep) -> Response:
        """200 while the process answers."""
        return _response(OpenInferenceService(runtime).live())

    @router.get(
        READY_PATH,
        summary="Server readiness",
        response_model=schemas.ServerReady,
        responses={400: {"model": schemas.ServerReady, "description": "Not ready yet"}},
    )
    async def server_ready(runtime: RuntimeDep) -> Response:
        """200 once a model is served, 400 before (as Triton answers)."""
        return _response(OpenInferenceService(runtime).ready())

    _model_routes(router)
    _version_routes(router)
    return router


_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_INFER_ERRORS,
    200: {
        "description": "The outputs; binary ones follow the JSON header "
        "(Inference-Header-Content-Length)",
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    },
}
_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_MODEL_ERRORS,
    400: {"model": schemas.ModelReady, "description": "Not ready yet"},
}


async def _infer(
    runtime: Any, request: Request, model_name: str, model_version: str | None
) -> Response:
    service = OpenInferenceService(runtime)
    try:
        body = await _limited_body(request, service.max_bytes)
        headers = InferHeaders.of(request.scope["headers"])
        answer = await service.infer(model_name, model_version, body, headers)
    except ServiceError as error:
        answer = error_answer(error)
    return _response(answer)


def _model_routes(router: APIRouter) -> None:
    @router.get(
        MODEL_TEMPLATE,
        summary="Model metadata",
        response_model=schemas.ModelMetadata,
        responses=_MODEL_ERRORS,
    )
    async def model_metadata(runtime: RuntimeDep, model_name: ModelName) -> Response:
        """The model's input tensors (one per feature), outputs and served versions."""
        return _response(OpenInferenceService(runtime).model_metadata(model_name, None))

    @router.get(
        MODEL_TEMPLATE + "/ready",
        summary="Model readiness",
        response_model=schemas.ModelReady,
        responses=_READY_RESPONSES,
    )
    async def model_ready(runtime: RuntimeDep, model_name: ModelName) -> Response:
        """200 when the model is served, 400 while it loads."""
        return _response(OpenInferenceService(runtime).model_ready(model_name, None))

    @router.post(
        MODEL_TEMPLATE + "/infer",
        summary="Inference",
        response_model=schemas.InferResponse,
        responses=_INFER_RESPONSES,
        openapi_extra=_INFER_BODY,
    )
    async def infer(
        caller: PredictAccess, runtime: RuntimeDep, request: Request, model_name: ModelName
    ) -> Response:
        """Churn probability and decision of each row of the input tensors (JSON, or Triton's
        binary tensor extension; gzip or deflate)."""
        return await _infer(runtime, request, model_name, None)


def _version_routes(router: APIRouter) -> None:
    @router.get(
        VERSION_TEMPLATE,
        summary="Model metadata of one version",
        response_model=schemas.ModelMetadata,
        responses=_MODEL_ERRORS,
    )
    async def version_metadata(
        runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion
    ) -> Response:
        """The inputs and outputs of one served version."""
        service = OpenInferenceService(runtime)
        return _response(service.model_metadata(model_name, model_version))

    @router.get(
        VERSION_TEMPLATE + "/ready",
        summary="Readiness of one model version",
        response_model=schemas.ModelReady,
        responses=_READY_RESPONSES,
    )
    async def version_ready(
        runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion
    ) -> Response:
        """200 when this version is served, 404 when it is not."""
        return _response(OpenInferenceService(runtime).model_ready(model_name, model_version))

    @router.post(
        VERSION_TEMPLATE + "/infer",
        summary="Inference by one version",
        response_model=schemas.InferResponse,
        responses=_INFER_RESPONSES,
        openapi_extra=_INFER_BODY,
    )
    async def version_infer(
        caller: PredictAccess,
        runtime: RuntimeDep,
        request: Request,
        model_name: ModelName,
        model_version: ModelVersion,
    ) -> Response:
        """The rows scored by this version alone (no canary share)."""
        return await _infer(runtime, request, model_name, model_version)


def document_v2_errors(document: dict[str, Any]) -> None:
    """Declare the V2 routes' refusals as they are sent: `{"error": ...}` JSON (or the readiness
    document for a 400 of a ready route), not the problem documents of the other routes, and
    no 415 (these routes take binary bodies). Run after `document_problem_responses`."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}}
    for path, operations in document.get("paths", {}).items():
        if not path.startswith(SERVER_PATH):
            continue
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("415", None)
            for status, response in responses.items():
                if status[0] not in "45":
                    continue
                if status == "400" and path.endswith("/ready"):
                    model = "ServerReady" if path == READY_PATH else "ModelReady"
                    ref = {"$ref": f"#/components/schemas/{model}"}
                    response["content"] = {"application/json": {"schema": ref}}
                else:
                    response["content"] = error
