"""The HTTP body of a V2 inference request and answer: the JSON document, Triton's binary
tensor extension (`Inference-Header-Content-Length`: the JSON header, then each binary tensor's
bytes in input order) and gzip/deflate in both directions. No ASGI here: api/v2/rest.py reads
the body and the headers and sends what these functions build.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from churn_mlops.api.v2.tensors import (
    OUTPUT_DATATYPES,
    InputTensor,
    RequestedOutput,
    TensorError,
)

HEADER_LENGTH = "inference-header-content-length"
# zlib's window bits: 31 reads a gzip member, 15 a zlib stream (HTTP's "deflate").
_WINDOW_BITS = {"gzip": 31, "deflate": 15}


@dataclass(frozen=True, slots=True)
class InferRequest:
    """An inference request's document, its tensors split out of the body."""

    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None
    binary_outputs: bool


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


def compress(body: bytes, accept_encoding: str | None, min_bytes: int) -> tuple[bytes, str | None]:
    """`body` compressed as the caller accepts (gzip first, then deflate), with the encoding's
    name; unchanged, with None, when it accepts neither or `body` is under `min_bytes`."""
    if accept_encoding is None or len(body) < min_bytes:
        return body, None
    accepted = accept_encoding.lower()
    for encoding in ("gzip", "deflate"):
        if encoding in accepted:
            deflater = zlib.compressobj(6, zlib.DEFLATED, _WINDOW_BITS[encoding])
            return deflater.compress(body) + deflater.flush(), encoding
    return body, None


def _document(header: bytes | memoryview) -> Any:
    try:
        return orjson.loads(header)
    except orjson.JSONDecodeError:
        pass
    try:
        # Python's JSON reads the NaN that a JSON tensor may carry for `total_charges`.
        return json.loads(bytes(header))
    except (ValueError, RecursionError):
        raise TensorError("the request is not a valid JSON document") from None


def _shape(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        raise TensorError(f"input '{name}': shape must be a list of integers")
    return tuple(value)


def _binary_size(name: str, parameters: Mapping[str, Any]) -> int | None:
    if "shared_memory_region" in parameters:
        raise TensorError(f"input '{name}': shared memory is not supported")
    size = parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise TensorError(f"input '{name}': binary_data_size must be a non-negative integer")
    return size


def _inputs(listed: Any, blocks: memoryview) -> list[InputTensor]:
    if not isinstance(listed, list) or not listed:
        raise TensorError("the request needs a non-empty list of inputs")
    tensors = []
    offset = 0
    for position, item in enumerate(listed):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise TensorError(f"input {position} needs a name")
        name = item["name"]
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise TensorError(f"input '{name}' needs a datatype")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise TensorError(f"input '{name}': parameters must be an object")
        size = _binary_size(name, parameters)
        shape = _shape(name, item.get("shape"))
        if size is None:
            data = item.get("data")
            if not isinstance(data, list):
                raise TensorError(f"input '{name}' needs data or binary_data_size")
            tensors.append(InputTensor(name, datatype, shape, data=data))
            continue
        if "data" in item:
            raise TensorError(f"input '{name}' has both data and binary_data_size")
        if offset + size > len(blocks):
            raise TensorError(
                f"input '{name}': binary_data_size {size} runs past the body's binary data"
            )
        tensors.append(InputTensor(name, datatype, shape, raw=blocks[offset : offset + size]))
        offset += size
    if offset != len(blocks):
        raise TensorError(
            f"the body has {len(blocks) - offset} bytes after the inputs' binary data"
        )
    return tensors


def _outputs(listed: Any) -> list[RequestedOutput] | None:
    if listed is None:
        return None
    if not isinstance(listed, list):
        raise TensorError("outputs must be a list")
    requested = []
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise TensorError("each requested output needs a name")
        if item["name"] not in OUTPUT_DATATYPES:
            raise TensorError(f"unexpected output '{item['name']}'")
        parameters = item.get("parameters") or {}
        binary = parameters.get("binary_data") if isinstance(parameters, dict) else None
        if binary is not None and type(binary) is not bool:
            raise TensorError(f"output '{item['name']}': binary_data must be true or false")
        if isinstance(parameters, dict) and "shared_memory_region" in parameters:
            raise TensorError(f"output '{item['name']}': shared memory is not supported")
        requested.append(RequestedOutput(item["name"], binary))
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
    document = _document(header)
    if not isinstance(document, dict):
        raise TensorError("the request must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError("id must be a string")
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise TensorError("parameters must be an object")
    binary_outputs = parameters.get("binary_data_output", False)
    if type(binary_outputs) is not bool:
        raise TensorError("parameters.binary_data_output must be true or false")
    return InferRequest(
        request_id,
        _inputs(document.get("inputs"), blocks),
        _outputs(document.get("outputs")),
        binary_outputs,
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
