"""The HTTP body of a V2 inference request and answer: the JSON document, Triton's binary
tensor extension (`Inference-Header-Content-Length`: the JSON header, then each binary tensor's
bytes in input order) and gzip/deflate in both directions. No ASGI here: api/v2/rest.py reads
the body and the headers and sends what these functions build.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
import orjson

from churn_mlops.api.v2.explain import OUTPUT_REASONS, explain_asked
from churn_mlops.api.v2.outputs import OUTPUT_DATATYPES, RequestedOutput
from churn_mlops.api.v2.tensors import InputTensor, TensorError

HEADER_LENGTH = "inference-header-content-length"
# zlib's window bits: 31 reads a gzip member, 15 a zlib stream (HTTP's "deflate").
_WINDOW_BITS = {"gzip": 31, "deflate": 15}


@dataclass(frozen=True, slots=True)
class InferRequest:
    """An inference request's document, its tensors split out of the body."""

    id: str | None
    listed: list[_Input]
    """The document's inputs as sent, which `tensors()` turns into InputTensors; empty when the
    model's one-row decoder (api/v2/single_row.py) has decoded them already."""
    blocks: memoryview
    """The binary tensors' bytes after the JSON header; empty for an all-JSON request."""
    outputs: list[RequestedOutput] | None
    binary_outputs: bool
    explain: bool = False
    """`parameters.explain`, or `reasons` among the outputs (api/v2/explain.py)."""

    def tensors(self) -> list[InputTensor]:
        """The inputs as tensors, binary ones split out of the body; TensorError for inputs
        that do not add up."""
        return _inputs(self.listed, self.blocks)


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body as sent before its `Content-Encoding`; 413 past `max_bytes` once inflated (a
    small gzip body can inflate a thousandfold), 400 for an encoding or stream it cannot read."""
    if encoding is None or encoding in ("identity", ""):
        return body
    bits = _WINDOW_BITS.get(encoding.strip().lower())
    if bits is None:
        raise TensorError(f"Content-Encoding {encoding!r} is not gzip, deflate or identity")
    inflater = zlib.decompressobj(bits)
    try:
        inflated = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise TensorError(f"the {encoding} body cannot be decompressed: {error}") from None
    if len(inflated) > max_bytes or inflater.unconsumed_tail:
        raise TensorError(
            f"The request body is larger than {max_bytes} bytes once decompressed.",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    return inflated


def compress(
    body: bytes, accept_encoding: str | None, min_bytes: int, level: int = 1
) -> tuple[bytes, str | None]:
    """`body` compressed as the caller accepts (gzip first, then deflate), with the encoding's
    name; unchanged, with None, when it accepts neither or `body` is under `min_bytes`."""
    if accept_encoding is None or len(body) < min_bytes:
        return body, None
    accepted = accept_encoding.lower()
    for encoding in ("gzip", "deflate"):
        if encoding in accepted:
            deflater = zlib.compressobj(level, zlib.DEFLATED, _WINDOW_BITS[encoding])
            return deflater.compress(body) + deflater.flush(), encoding
    return body, None


class _Input(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class OutputItem(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OutputItem] | None = None


_REQUEST = msgspec.json.Decoder(_Request)


def _document(header: bytes | memoryview) -> _Request:
    """The request document, its types checked by msgspec in one pass."""
    try:
        return _REQUEST.decode(header)
    except msgspec.ValidationError as error:
        raise TensorError(f"the request is not a V2 inference request: {error}") from None
    except msgspec.DecodeError:
        pass
    try:
        # Python's JSON reads the NaN that a JSON tensor may carry for a nullable feature.
        document = json.loads(bytes(header))
    except (ValueError, RecursionError):
        raise TensorError("the request is not a valid JSON document") from None
    try:
        return msgspec.convert(document, _Request, strict=True)
    except msgspec.ValidationError as error:
        raise TensorError(f"the request is not a V2 inference request: {error}") from None


def _binary_size(name: str, parameters: dict[str, Any]) -> int | None:
    if "shared_memory_region" in parameters:
        raise TensorError(f"input '{name}': shared memory is not supported")
    size = parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise TensorError(f"input '{name}': binary_data_size must be a non-negative integer")
    return size


def _inputs(listed: list[_Input], blocks: memoryview) -> list[InputTensor]:
    if not listed:
        raise TensorError("the request needs a non-empty list of inputs")
    tensors = []
    offset = 0
    for item in listed:
        name = item.name
        size = None if not item.parameters else _binary_size(name, item.parameters)
        if size is None:
            if item.data is None:
                raise TensorError(f"input '{name}' needs data or binary_data_size")
            tensors.append(InputTensor(name, item.datatype, tuple(item.shape), item.data))
            continue
        if item.data is not None:
            raise TensorError(f"input '{name}' has both data and binary_data_size")
        if offset + size > len(blocks):
            raise TensorError(
                f"input '{name}': binary_data_size {size} runs past the body's binary data"
            )
        raw = blocks[offset : offset + size]
        tensors.append(InputTensor(name, item.datatype, tuple(item.shape), raw=raw))
        offset += size
    if offset != len(blocks):
        extra = len(blocks) - offset
        raise TensorError(f"the body has {extra} bytes after the inputs' binary data")
    return tensors


def _outputs(listed: list[OutputItem] | None) -> list[RequestedOutput] | None:
    if listed is None:
        return None
    requested = []
    for item in listed:
        if item.name not in OUTPUT_DATATYPES and item.name != OUTPUT_REASONS:
            raise TensorError(f"unexpected output '{item.name}'")
        parameters = item.parameters or {}
        binary = parameters.get("binary_data")
        if binary is not None and type(binary) is not bool:
            raise TensorError(f"output '{item.name}': binary_data must be true or false")
        if "shared_memory_region" in parameters:
            raise TensorError(f"output '{item.name}': shared memory is not supported")
        requested.append(RequestedOutput(item.name, binary))
    return requested


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request in `body`: all JSON, or (with the binary extension's header) a JSON header of
    `header_length` bytes followed by the binary tensors' bytes."""
    view = memoryview(body)
    if header_length is None:
        header, blocks = view, view[:0]
    else:
        if not header_length.isdigit():
            raise TensorError("Inference-Header-Content-Length must be a number of bytes")
        length = int(header_length)
        if length > len(body):
            raise TensorError(
                f"Inference-Header-Content-Length {length} is past the body's {len(body)} bytes"
            )
        header, blocks = view[:length], view[length:]
    return infer_request(_document(header), blocks)


def infer_request(
    document: Any, blocks: memoryview, listed: list[Any] | None = None
) -> InferRequest:
    """The request of a decoded document (`_Request`, or a model's own one-row document:
    api/v2/single_row.py, which has read its inputs already and passes `listed` as [])."""
    parameters = document.parameters or {}
    binary_outputs = parameters.get("binary_data_output", False)
    if type(binary_outputs) is not bool:
        raise TensorError("parameters.binary_data_output must be true or false")
    outputs = _outputs(document.outputs)
    return InferRequest(
        document.id,
        document.inputs if listed is None else listed,
        blocks,
        outputs,
        binary_outputs,
        explain_asked(parameters, outputs),
    )


def infer_response_body(
    document: dict[str, Any], blocks: list[bytes]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The answer's bytes and headers: JSON alone, or the JSON header and the binary outputs
    with `Inference-Header-Content-Length`."""
    header = orjson.dumps(document)
    if not blocks:
        return header, [(b"content-type", b"application/json")]
    return header + b"".join(blocks), [
        (b"content-type", b"application/octet-stream"),
        (HEADER_LENGTH.encode(), str(len(header)).encode()),
    ]
