"""`POST /auth/login` (bearer tokens for users) and the management of API keys and users."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from churn_mlops.api.deps import SecurityDep
from churn_mlops.api.schemas.problem import Problem
from churn_mlops.api.scopes import LOGIN_PATH, AdminAccess
from churn_mlops.core.errors import (
    Conflict,
    FieldError,
    InvalidRequest,
    ModelNotReady,
    NotFound,
    UnsupportedMediaType,
    field_errors,
    invalid_request_detail,
)
from churn_mlops.security.errors import NotAuthenticated
from churn_mlops.security.limits import json_depth_exceeds, too_deep, utf8_refusal
from churn_mlops.security.principal import MAX_BURST, MAX_RATE_PER_SECOND, RateLimit
from churn_mlops.security.services import SecurityServices
from churn_mlops.security.store import CredentialConflict, CredentialStore, KeyInfo

_FORM = "application/x-www-form-urlencoded"
_BAD_LOGIN = "Incorrect username or password."
ScopeName = Literal["predict", "read", "admin"]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")]


class LoginRequest(BaseModel):
    """A user's name and password (JSON; the OAuth2 password form is accepted too)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LoginForm(LoginRequest):
    """The OAuth2 password grant (RFC 6749 section 4.3) as form fields."""

    model_config = ConfigDict(extra="allow")

    grant_type: Literal["password"] | None = None


class TokenResponse(BaseModel):
    """A bearer token for `Authorization: Bearer ...`."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme's name
    expires_in: int = Field(description="Seconds until the token expires.")


class KeyRateLimit(BaseModel):
    """An API key's own rate limit: a token bucket of `burst` requests refilled at `per_second`."""

    per_second: float = Field(description="Sustained requests a second.")
    burst: int = Field(description="Requests at once after being idle (the bucket's capacity).")


class NewKeyRateLimit(BaseModel):
    """The rate limit of a key to create, in place of the service's default."""

    model_config = ConfigDict(extra="forbid")

    per_second: float = Field(
        gt=0, le=MAX_RATE_PER_SECOND, description="Sustained requests a second."
    )
    burst: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BURST,
        description="Requests at once after being idle; omitted: twice `per_second`.",
    )


class ApiKeyInfo(BaseModel):
    """An API key, without the key itself."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    rate_limit: KeyRateLimit | None = Field(
        description="The key's own rate limit; null: the service's default "
        "(`CHURN_RATE_LIMIT_PER_SECOND`, `CHURN_RATE_LIMIT_BURST`)."
    )


class NewApiKeyRequest(BaseModel):
    """A key to create."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    scopes: list[ScopeName] = Field(min_length=1, max_length=3)
    rate_limit: NewKeyRateLimit | None = Field(
        default=None, description="The key's own rate limit; omitted: the service's default."
    )

    def own_rate_limit(self) -> RateLimit | None:
        limit = self.rate_limit
        return None if limit is None else RateLimit.of(limit.per_second, limit.burst)


class NewApiKeyResponse(ApiKeyInfo):
    """The created key: `key` is shown this once and never stored."""

    key: str


class NewUserRequest(BaseModel):
    """A user to create."""

    model_config = ConfigDict(extra="forbid")

    username: Name
    password: str = Field(min_length=8, max_length=1024)
    scopes: list[ScopeName] = Field(min_length=1, max_length=3)


class UserCreated(BaseModel):
    username: str
    scopes: list[str]


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


_UNAUTHORIZED = _problem("Missing or invalid credentials (see WWW-Authenticate)")
_GUARDED: dict[int | str, dict[str, Any]] = {
    400: _problem("The body is not valid JSON"),
    401: _UNAUTHORIZED,
    403: _problem("The credentials lack the scope"),
    413: _problem("The body is too large or nested too deep"),
    422: _problem("A field is missing, of the wrong type or out of range"),
    429: _problem("Too many requests for these credentials: see Retry-After"),
    503: _problem("The credential store is not ready"),
}


def _key_info(info: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "name": info.name,
        "scopes": list(info.scopes),
        "created_at": info.created_at,
        "last_used_at": info.last_used_at,
        "revoked_at": info.revoked_at,
        "rate_limit": None
        if info.rate_limit is None
        else {"per_second": info.rate_limit.per_second, "burst": info.rate_limit.burst},
    }


def _store(services: SecurityServices) -> CredentialStore:
    store = services.store
    if store is None:
        raise ModelNotReady("The credential store is not open yet; retry in a moment.")
    return store


def _parse_login(body: bytes, content_type: str, max_depth: int) -> LoginRequest:
    try:
        if content_type == _FORM:
            try:
                fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise InvalidRequest(
                    "The form is not valid UTF-8.", [FieldError(field="body", reason="not UTF-8")]
                ) from None
            form = {name: values[-1] for name, values in fields.items()}
            return LoginForm.model_validate(form)
        if json_depth_exceeds(body, max_depth):
            raise too_deep(max_depth)
        refusal = utf8_refusal(body)
        if refusal is not None:
            raise refusal
        return LoginRequest.model_validate_json(body)
    except ValidationError as error:
        errors = field_errors(error.errors(include_input=False, include_url=False))
        raise InvalidRequest(invalid_request_detail(errors), errors) from None


def build_auth_router() -> APIRouter:
    """`POST /auth/login` (public) and the admin routes for keys and users."""
    router = _login_router()
    router.include_router(_admin_router())
    return router


def _login_router() -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post(
        LOGIN_PATH,
        summary="Log in: a username and password for a bearer token",
        response_model=TokenResponse,
        responses={
            401: _problem("Unknown user or wrong password (the same answer for both)"),
            413: _GUARDED[413],
            415: _problem("The body is neither JSON nor a form"),
            422: _GUARDED[422],
            503: _GUARDED[503],
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": LoginRequest.model_json_schema()},
                    _FORM: {"schema": LoginForm.model_json_schema()},
                },
            }
        },
    )
    async def login(request: Request, services: SecurityDep) -> TokenResponse:
        """A short-lived bearer token (`expires_in` seconds) carrying the user's scopes."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", _FORM) and not content_type.endswith("+json"):
            raise UnsupportedMediaType(
                "Send the credentials as JSON or as an OAuth2 password form."
            )
        credentials = _parse_login(
            await request.body(), content_type, services.settings.max_json_depth
        )
        store = _store(services)
        user = await store.find_user(credentials.username)
        # The same (slow, threaded) argon2 work whether the user exists or not.
        valid = await services.passwords.verify_in_thread(
            user.password_hash if user else None, credentials.password
        )
        if user is None or not valid or user.disabled:
            raise NotAuthenticated(_BAD_LOGIN)
        issued = services.tokens.issue(user.username, user.scopes)
        return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)

    return router


def _admin_router() -> APIRouter:
    admin = APIRouter(tags=["auth"])

    @admin.get(
        "/auth/keys",
        summary="List API keys",
        response_model=list[ApiKeyInfo],
        responses={k: v for k, v in _GUARDED.items() if k not in (400, 413, 422)},
    )
    async def list_keys(caller: AdminAccess, services: SecurityDep) -> list[dict[str, Any]]:
        """Every key's id, name, scopes and times; never a key or its hash."""
        return [_key_info(info) for info in await _store(services).list_keys()]

    @admin.post(
        "/auth/keys",
        summary="Create an API key",
        status_code=201,
        response_model=NewApiKeyResponse,
        responses={**_GUARDED, 409: _problem("A key of that name exists already")},
    )
    async def create_key(
        caller: AdminAccess, services: SecurityDep, new: NewApiKeyRequest
    ) -> dict[str, Any]:
        """A new key with the given scopes and, if given, a rate limit of its own; the response
        is the only time the key is shown."""
        try:
            created = await _store(services).create_key(new.name, new.scopes, new.own_rate_limit())
        except CredentialConflict as conflict:
            raise Conflict(str(conflict)) from None
        return {**_key_info(created.info), "key": created.key}

    @admin.delete(
        "/auth/keys/{name_or_id}",
        summary="Revoke an API key",
        response_model=ApiKeyInfo,
        responses={
            **{k: v for k, v in _GUARDED.items() if k not in (400, 413)},
            404: _problem("No key of that name or id"),
        },
    )
    async def revoke_key(
        caller: AdminAccess,
        services: SecurityDep,
        name_or_id: Annotated[str, Path(min_length=1, max_length=128)],
    ) -> dict[str, Any]:
        """Revoke at once in this worker; other workers stop accepting the key within
        `CHURN_AUTH_CACHE_TTL_SECONDS`."""
        info = await _store(services).revoke_key(name_or_id)
        if info is None:
            raise NotFound(f"No API key is named or has the id {name_or_id!r}.")
        authenticator = services.authenticator
        if authenticator is not None:
            authenticator.forget_key(info.key_id)
        return _key_info(info)

    @admin.post(
        "/auth/users",
        summary="Create a user",
        status_code=201,
        response_model=UserCreated,
        responses={**_GUARDED, 409: _problem("A user of that name exists already")},
    )
    async def create_user(
        caller: AdminAccess, services: SecurityDep, new: NewUserRequest
    ) -> UserCreated:
        """A user who can log in at `POST /auth/login` for a token with these scopes."""
        password_hash = await asyncio.to_thread(services.passwords.hash, new.password)
        try:
            await _store(services).create_user(new.username, password_hash, new.scopes)
        except CredentialConflict as conflict:
            raise Conflict(str(conflict)) from None
        return UserCreated(username=new.username, scopes=sorted(set(new.scopes)))

    return admin
