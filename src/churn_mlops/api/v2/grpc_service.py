"""`inference.GRPCInferenceService`: the Open Inference Protocol over gRPC, from the Runtime.

Inputs are decoded by the protocol-neutral `api.v2.tensors` (as REST's are) and scored by the
served pipeline's `predict_rows`: the same batcher, cache and prediction log as `/predict`, so
both protocols give the same probabilities. Typed `contents` are turned into the raw block
`raw_input_contents` would carry (one numpy call for numbers, length-prefixed elements for
BYTES), so one decoding path checks both. Outputs go back as `raw_output_contents`, as Triton
answers and tritonclient reads by default.

Credentials come from the call's metadata (`x-api-key`, or `authorization: Bearer ...`) and
pass the same `RequestGuard` as HTTP's `/predict` (verification cache, `predict` scope, rate
limit). A refusal is the gRPC status of its HTTP one (`grpc_status`), with the same message.
Each call is counted in the HTTP request metrics with route `/inference.GRPCInferenceService/
<Method>`, method `GRPC` and the HTTP status of its outcome (200, 400, 401, ...), so the same
dashboards and alerts cover both protocols.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import numpy as np

from churn_mlops import __version__
from churn_mlops.api.v2.inputs import served_inputs
from churn_mlops.api.v2.outputs import OUTPUT_DATATYPES, OUTPUT_PROBABILITY, model_metadata
from churn_mlops.api.v2.proto import grpc_predict_v2_pb2 as pb
from churn_mlops.api.v2.proto import grpc_predict_v2_pb2_grpc as predict_grpc
from churn_mlops.api.v2.single_row import decode_rows
from churn_mlops.api.v2.tensors import FIXED_DTYPES, InputTensor, TensorError
from churn_mlops.core.errors import ModelNotReady, NotFound, ServiceError
from churn_mlops.lifecycle.served import ServedModel
from churn_mlops.observability.metrics import RequestRecorder
from churn_mlops.prediction.batcher import Overloaded
from churn_mlops.prediction.pipeline import PredictionPipeline
from churn_mlops.runtime import Runtime
from churn_mlops.security.guard import RequestGuard
from churn_mlops.security.principal import Scope as AuthScope

logger = logging.getLogger("churn_mlops.api.grpc")

MODEL_NAME = "churn"
SERVER_NAME = "churn-mlops"
ROUTE_PREFIX = "/inference.GRPCInferenceService/"
_Response = TypeVar("_Response")


class Context(Protocol):
    """What the service uses of `grpc.aio.ServicerContext` (grpcio ships no type stubs)."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None: ...

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None: ...

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


# The typed-contents field of each datatype the decoder accepts.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_STATUS_CODES = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.UNPROCESSABLE_ENTITY: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(error: ServiceError) -> grpc.StatusCode:
    """The gRPC code of a refusal: its HTTP status's, except that a shed prediction (503 over
    HTTP) is RESOURCE_EXHAUSTED, the code gRPC gives an overloaded server."""
    if isinstance(error, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return _STATUS_CODES.get(HTTPStatus(error.status), grpc.StatusCode.INTERNAL)


class InferenceServicer(predict_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol, answered from `runtime`'s served model."""

    def __init__(self, runtime: Runtime) -> None:
        self.model = runtime.model
        self.max_rows = runtime.settings.max_batch_rows
        security = runtime.security
        self.guard = RequestGuard(security.authenticator, security.limiter, str(AuthScope.PREDICT))
        self.recorder: RequestRecorder | None = (
            runtime.metrics.recorder if runtime.metrics is not None else None
        )

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.model.current is not None)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        served = self.model.current
        ready = served is not None and request.name == MODEL_NAME
        if ready and request.version:
            ready = served is not None and request.version in _versions(served)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        async def answer() -> Any:
            served = self._served()
            pipeline = _pipeline(served, request.name, request.version)
            inputs = served_inputs(pipeline)
            document = model_metadata(MODEL_NAME, _versions(served), inputs)
            return pb.ModelMetadataResponse(**document)

        return await self._answer("ModelMetadata", context, answer)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        async def answer() -> Any:
            served = self._served()
            pipeline = _pipeline(served, request.model_name, request.model_version)
            tensors = input_tensors(request)
            decoded = decode_rows(tensors, served_inputs(pipeline), self.max_rows)
            # A named version answers every row itself (no canary share).
            probabilities, will_churn = await pipeline.predict_rows(
                decoded.customer_ids, decoded.rows, exact=bool(request.model_version)
            )
            return infer_response(request, pipeline.version, probabilities, will_churn)

        return await self._answer("ModelInfer", context, answer)

    def _served(self) -> ServedModel:
        served = self.model.current
        if served is None:
            raise ModelNotReady("The model is still loading; retry in a moment.")
        return served

    async def _answer(
        self, method: str, context: Context, answer: Callable[[], Awaitable[_Response]]
    ) -> _Response:
        """Admit the call (credentials, scope, rate limit), answer it, count it; a refusal is
        aborted with its gRPC status and the same message HTTP would give."""
        started = time.perf_counter()
        recorder = self.recorder
        if recorder is not None:
            recorder.in_flight += 1
        status = HTTPStatus.OK
        try:
            await self.guard.admit({"headers": _credential_headers(context)})
            return await answer()
        except ServiceError as error:
            status = HTTPStatus(error.status)
            if error.headers:
                context.set_trailing_metadata(
                    tuple((key.lower(), value) for key, value in error.headers.items())
                )
            await context.abort(grpc_status(error), error.detail)
        except grpc.aio.AbortError:
            raise
        except Exception:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            logger.exception("gRPC %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, "The server failed to answer this call.")
        finally:
            if recorder is not None:
                recorder.in_flight -= 1
                elapsed = time.perf_counter() - started
                recorder.finished(ROUTE_PREFIX + method, "GRPC", status, elapsed)


def _credential_headers(context: Context) -> list[tuple[bytes, bytes]]:
    """The call's credentials as the (name, value) header pairs `RequestGuard` reads."""
    headers = []
    for key, value in context.invocation_metadata() or ():
        if key in ("x-api-key", "authorization"):
            raw = value if isinstance(value, bytes) else value.encode("latin-1")
            headers.append((key.encode(), raw))
    return headers


def _versions(served: ServedModel) -> list[str]:
    """The versions this worker answers with: the champion, and a challenger it follows."""
    versions = [served.pipeline.version]
    challenger = served.pipeline.challenger
    if challenger is not None and challenger.pipeline is not None:
        versions.append(challenger.pipeline.version)
    return versions


def _pipeline(served: ServedModel, name: str, version: str) -> PredictionPipeline:
    """The pipeline of model `name` at `version` (empty: the champion); NotFound otherwise."""
    if name != MODEL_NAME:
        raise NotFound(f"unknown model '{name}'; this server serves '{MODEL_NAME}'")
    pipeline = served.pipeline
    if not version or version == pipeline.version:
        return pipeline
    challenger = pipeline.challenger
    if (
        challenger is not None
        and challenger.pipeline is not None
        and (version == challenger.pipeline.version)
    ):
        return challenger.pipeline
    raise NotFound(f"unknown version '{version}' of model '{name}'")


def input_tensors(request: pb.ModelInferRequest) -> list[InputTensor]:
    """The request's inputs for `decode_inputs`, each with its raw block: from
    `raw_input_contents` (in input order), or built from the typed `contents`."""
    inputs = request.inputs
    raw_contents = request.raw_input_contents
    if raw_contents:
        if len(raw_contents) != len(inputs):
            raise TensorError(f"{len(raw_contents)} raw_input_contents for {len(inputs)} inputs")
        tensors = []
        for tensor, raw in zip(inputs, raw_contents, strict=True):
            if tensor.HasField("contents"):
                raise TensorError(
                    f"input '{tensor.name}' has contents while the request has raw_input_contents"
                )
            tensors.append(InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), raw=raw))
        return tensors
    return [
        InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), raw=_raw_of_contents(tensor))
        for tensor in inputs
    ]


def _raw_of_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> bytes:
    """The raw block of a tensor's typed contents; empty for a datatype the model takes no
    input of (the decoder then refuses the datatype by name)."""
    contents = tensor.contents
    if tensor.datatype == "BYTES":
        return b"".join(
            len(element).to_bytes(4, "little") + element for element in contents.bytes_contents
        )
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        return b""
    return np.asarray(getattr(contents, field), dtype=FIXED_DTYPES[tensor.datatype]).tobytes()


def infer_response(
    request: pb.ModelInferRequest,
    version: str,
    probabilities: np.ndarray[Any, np.dtype[np.float64]],
    will_churn: np.ndarray[Any, np.dtype[np.bool_]],
) -> pb.ModelInferResponse:
    """The outputs asked for (all when none are), as raw little-endian blocks."""
    names = [output.name for output in request.outputs] or list(OUTPUT_DATATYPES)
    if len(set(names)) != len(names):
        raise TensorError("an output is asked for more than once")
    count = len(probabilities)
    outputs = []
    blocks = []
    for name in names:
        datatype = OUTPUT_DATATYPES.get(name)
        if datatype is None:
            raise TensorError(f"unexpected output '{name}'")
        values = probabilities if name == OUTPUT_PROBABILITY else will_churn
        outputs.append(
            pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=[count])
        )
        blocks.append(values.astype(FIXED_DTYPES[datatype], copy=False).tobytes())
    return pb.ModelInferResponse(
        model_name=MODEL_NAME,
        model_version=version,
        id=request.id,
        outputs=outputs,
        raw_output_contents=blocks,
    )
