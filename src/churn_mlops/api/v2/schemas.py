"""The Open Inference Protocol's REST documents, for the OpenAPI (the raw endpoints build and
read the bytes themselves: api/v2/rest.py and api/v2/wire.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class V2Error(BaseModel):
    """A refusal, as every V2 client reads it."""

    error: str = Field(description="What was wrong, naming the tensor and row of a bad value.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="`binary_tensor_data`: Triton's binary extension.")


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    version: str | None = None
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The served versions: champion, canary challenger.")
    platform: str
    inputs: list[TensorMetadata] = Field(
        description="One per feature (BYTES categoricals, INT64 integers, FP64 charges); "
        "an optional `customer_id` BYTES input is echoed into the prediction log."
    )
    outputs: list[TensorMetadata]


class TensorParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data_size: int | None = Field(
        default=None, ge=0, description="Bytes of this tensor after the JSON header."
    )


class RequestInput(BaseModel):
    name: str
    datatype: str = Field(examples=["BYTES"])
    shape: list[int] = Field(description="[N] or [N, 1].")
    parameters: TensorParameters | None = None
    data: list[Any] | None = Field(default=None, description="Flattened row-major values.")


class OutputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data: bool | None = None


class RequestOutput(BaseModel):
    name: str = Field(examples=["churn_probability"])
    parameters: OutputParameters | None = None


class InferParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data_output: bool | None = None


class InferRequest(BaseModel):
    """A V2 inference request: one input tensor per feature, all with the same N rows. With
    the header `Inference-Header-Content-Length`, the body is this JSON followed by the binary
    tensors' bytes in input order (BYTES: 4-byte little-endian length, then the bytes)."""

    id: str | None = None
    parameters: InferParameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]
