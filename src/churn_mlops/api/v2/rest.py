"""The Open Inference Protocol (KServe V2) over REST, answered as raw ASGI before FastAPI.

`/v2`, its health and model routes and `POST .../infer` are answered here, like `/predict`
(api/fastpath.py), after the same guard (credentials, `predict` scope, rate limit) for infer;
the FastAPI routes of the same templates (api/v2/routes.py) document them in the OpenAPI and
answer through the same `OpenInferenceService`. Errors are the protocol's `{"error": "..."}`
with its status codes, not problem documents: a V2 client reads that field.

The infer routes take their body as the protocol sends it: JSON, Triton's binary extension
(`application/octet-stream` or no media type), gzip or deflate, up to
`CHURN_MAX_REQUEST_BYTES` once inflated; the middleware chain's body limits leave these paths
to this module (security/limits.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from churn_mlops import __version__
from churn_mlops.api.errors import log_unexpected_error
from churn_mlops.api.fastpath import read_body, send_response
from churn_mlops.api.v2 import kernels
from churn_mlops.api.v2.explain import reasons_output, values_read, without_reasons
from churn_mlops.api.v2.inputs import ModelInputs, served_inputs
from churn_mlops.api.v2.outputs import encode_outputs, model_metadata, one_row_answer
from churn_mlops.api.v2.single_row import decode_rows, single_row_decoder
from churn_mlops.api.v2.tensors import DecodedInputs
from churn_mlops.api.v2.wire import (
    HEADER_LENGTH,
    InferRequest,
    compress,
    decompress,
    infer_response_body,
    parse_infer_request,
)
from churn_mlops.core.errors import ModelNotReady, NotFound, ServiceError
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import Runtime
from churn_mlops.security.guard import RequestGuard
from churn_mlops.security.limits import counting_receive, declared_length, too_large

MODEL_NAME = "churn"
SERVER_NAME = "churn-mlops"
EXTENSIONS = ("binary_tensor_data",)
PREFIX = "/v2"
SERVER_PATH = "/v2"
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
MODEL_TEMPLATE = "/v2/models/{model_name}"
VERSION_TEMPLATE = "/v2/models/{model_name}/versions/{model_version}"
_MODELS = "/v2/models/"
_JSON = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: list(_JSON))


def error_answer(error: ServiceError) -> Answer:
    """`{"error": detail}` with the error's status and headers (Retry-After, WWW-Authenticate)."""
    headers = list(_JSON)
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    return Answer(error.status, orjson.dumps({"error": error.detail}), headers)


def _not_ready() -> ModelNotReady:
    return ModelNotReady("The model is still loading; retry in a moment.")


@dataclass(frozen=True, slots=True)
class InferHeaders:
    """The request headers infer reads, in one pass."""

    content_length: int | None = None
    content_encoding: str | None = None
    accept_encoding: str | None = None
    header_length: str | None = None

    @classmethod
    def of(cls, headers: list[tuple[bytes, bytes]]) -> InferHeaders:
        found: dict[str, Any] = {}
        for name, value in headers:
            if name == b"content-length":
                found["content_length"] = declared_length(value)
            elif name == b"content-encoding":
                found["content_encoding"] = value.decode("latin-1")
            elif name == b"accept-encoding":
                found["accept_encoding"] = value.decode("latin-1")
            elif name == HEADER_LENGTH.encode():
                found["header_length"] = value.decode("latin-1").strip()
        return cls(**found)


class OpenInferenceService:
    """The V2 answers, shared by the raw endpoints and the FastAPI routes."""

    def __init__(self, runtime: Runtime) -> None:
        self.model = runtime.model
        self.max_rows = runtime.settings.max_batch_rows
        self.max_bytes = runtime.settings.max_request_bytes
        self.compress_min_bytes = runtime.settings.gzip_min_bytes
        self.compress_level = runtime.settings.gzip_level

    def server_metadata(self) -> Answer:
        document = {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}
        return Answer(200, orjson.dumps(document))

    def live(self) -> Answer:
        return Answer(200, b'{"live":true}')

    def ready(self) -> Answer:
        ready = self.model.current is not None
        return Answer(200 if ready else 400, orjson.dumps({"ready": ready}))

    def served(
        self, name: str, version: str | None
    ) -> tuple[PredictionPipeline, str, bool, ModelInputs]:
        """(the pipeline, the version answering, whether that version was asked for, its input
        tensors) of a served model: the champion, or the canary challenger by its version; else
        404/503."""
        if name != MODEL_NAME:
            raise NotFound(f"unknown model '{name}': this server serves '{MODEL_NAME}'")
        served = self.model.current
        if served is None:
            raise _not_ready()
        pipeline = served.pipeline
        if version is None or version == pipeline.version:
            return (
                pipeline,
                pipeline.version,
                version is not None,
                served_inputs(pipeline),
            )
        challenger = pipeline.challenger
        answering_challenger = None if challenger is None else challenger.pipeline
        if answering_challenger is not None and version == answering_challenger.version:
            return answering_challenger, version, True, served_inputs(answering_challenger)
        raise NotFound(f"unknown version '{version}' of model '{name}'")

    def versions(self) -> list[str]:
        served = self.model.current
        if served is None:
            return []
        versions = [served.pipeline.version]
        challenger = served.pipeline.challenger
        if challenger is not None and challenger.pipeline is not None:
            versions.append(challenger.pipeline.version)
        return versions

    def model_metadata(self, name: str, version: str | None) -> Answer:
        try:
            _, answering, exact, inputs = self.served(name, version)
        except ServiceError as error:
            return error_answer(error)
        versions = [answering] if exact else self.versions()
        return Answer(200, orjson.dumps(model_metadata(MODEL_NAME, versions, inputs)))

    def model_ready(self, name: str, version: str | None) -> Answer:
        try:
            _, answering, _, _ = self.served(name, version)
        except ModelNotReady:
            return Answer(400, orjson.dumps({"name": name, "ready": False}))
        except ServiceError as error:
            return error_answer(error)
        return Answer(200, orjson.dumps({"name": name, "version": answering, "ready": True}))

    async def infer(
        self, name: str, version: str | None, body: bytes, headers: InferHeaders
    ) -> Answer:
        """Score the request's rows; ServiceError for anything refused, before any scoring."""
        pipeline, answering, exact, inputs = self.served(name, version)
        body = decompress(body, headers.content_encoding, self.max_bytes)
        single = None
        if headers.header_length is None:
            single = single_row_decoder(inputs).decode(body)
        if single is not None and _plain_answer(single[0]):
            return await self._infer_one(pipeline, answering, exact, single[0].id, single[1])
        request, decoded = single or self._decoded(body, headers.header_length, inputs)
        if request.explain:
            pipeline.reasons.require()  # 409 before any scoring
        # Explained rows are answered by the model that explains them: no canary split.
        probabilities, will_churn = await pipeline.predict_rows(
            decoded.customer_ids, decoded.rows, exact=exact or request.explain
        )
        wanted, reasons_binary = (
            without_reasons(request.outputs) if request.explain else (request.outputs, None)
        )
        outputs: dict[str, Any] = {"outputs": []}
        blocks: list[bytes] = []
        if wanted != []:  # [] when only `reasons` is asked for
            outputs, blocks = encode_outputs(
                probabilities, will_churn, wanted, request.binary_outputs
            )
        if request.explain:
            values = values_read(decoded.rows, inputs)
            entry, block = reasons_output(
                pipeline.reasons.of_rows(decoded.rows, values),
                request.binary_outputs if reasons_binary is None else reasons_binary,
            )
            outputs["outputs"].append(entry)
            if block is not None:
                blocks.append(block)
        document: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": answering}
        if request.id is not None:
            document["id"] = request.id
        document.update(outputs)
        content, response_headers = infer_response_body(document, blocks)
        content, encoding = compress(
            content, headers.accept_encoding, self.compress_min_bytes, self.compress_level
        )
        if encoding is not None:
            response_headers.append((b"content-encoding", encoding.encode()))
        return Answer(200, content, response_headers)

    def _decoded(
        self, body: bytes, header_length: str | None, inputs: ModelInputs
    ) -> tuple[InferRequest, DecodedInputs]:
        """The request and its rows by the general path: any number of rows, JSON or binary."""
        request = parse_infer_request(body, header_length)
        return request, decode_rows(request.tensors(), inputs, self.max_rows)

    async def _infer_one(
        self,
        pipeline: PredictionPipeline,
        answering: str,
        exact: bool,
        request_id: str | None,
        decoded: DecodedInputs,
    ) -> Answer:
        """One row answered with both outputs as JSON: the usual single prediction."""
        customer_id = decoded.customer_ids[0]
        probability, will_churn = await pipeline.predict_row(customer_id, decoded.rows, exact=exact)
        body = one_row_answer(MODEL_NAME, answering, request_id, probability, will_churn)
        return Answer(200, body)


def _plain_answer(request: InferRequest) -> bool:
    """Whether the request asks for the default answer: both outputs as JSON, no reasons (the
    answer that `outputs.one_row_answer` builds), so that it can be built from fixed parts."""
    return request.outputs is None and not request.binary_outputs and not request.explain


def route_of(method: str, path: str) -> tuple[str, tuple[str, str | None]] | None:
    """(template, (model name, version)) of a V2 request, None for any other."""
    if path in (SERVER_PATH, LIVE_PATH, READY_PATH):
        return (path, ("", None)) if method == "GET" else None
    if not path.startswith(_MODELS):
        return None
    parts = path[len(_MODELS) :].split("/")
    name, rest = parts[0], parts[1:]
    version = None
    template = MODEL_TEMPLATE
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
        template = VERSION_TEMPLATE
    if not name or version == "" or len(rest) > 1:
        return None
    action = rest[0] if rest else ""
    if action == "infer" and method == "POST":
        return template + "/infer", (name, version)
    if method == "GET" and action in ("", "ready"):
        return template + (f"/{action}" if action else ""), (name, version)
    return None


TEMPLATES = (
    SERVER_PATH,
    LIVE_PATH,
    READY_PATH,
    *(t + s for t in (MODEL_TEMPLATE, VERSION_TEMPLATE) for s in ("", "/ready", "/infer")),
)


class OpenInferenceEndpoints:
    """The raw-ASGI V2 routes; `arguments` says which requests they answer (the dispatch sends
    the rest, a wrong method say, to FastAPI)."""

    templates: tuple[str, ...] = TEMPLATES

    def __init__(self, runtime: Runtime, guard: RequestGuard) -> None:
        self.service = OpenInferenceService(runtime)
        self.guard = guard
        kernels.warm_up()  # compiled (or loaded from numba's cache) at start, not at a request

    def arguments(self, scope: Scope) -> tuple[str, Any] | None:
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        return route_of(scope["method"], path)

    async def answer_with_body(
        self, template: str, arguments: Any, scope: Scope, receive: Receive, send: Send
    ) -> None:
        name, version = arguments
        service = self.service
        try:
            if template.endswith("/infer"):
                answer = await self._infer(name, version, scope, receive)
            elif template == SERVER_PATH:
                answer = service.server_metadata()
            elif template == LIVE_PATH:
                answer = service.live()
            elif template == READY_PATH:
                answer = service.ready()
            elif template.endswith("/ready"):
                answer = service.model_ready(name, version)
            else:
                answer = service.model_metadata(name, version)
        except ServiceError as error:
            answer = error_answer(error)
        except Exception as error:
            log_unexpected_error(f"{scope['method']} {template}", error)
            answer = error_answer(ServiceError("The server failed to answer this request."))
        await send_response(send, answer.status, answer.body, answer.headers)

    async def _infer(
        self, name: str, version: str | None, scope: Scope, receive: Receive
    ) -> Answer:
        await self.guard.admit(scope)
        headers = InferHeaders.of(scope["headers"])
        limit = self.service.max_bytes
        if headers.content_length is None:
            receive = counting_receive(receive, limit)
        elif headers.content_length > limit:
            raise too_large(limit)
        return await self.service.infer(name, version, await read_body(receive), headers)
