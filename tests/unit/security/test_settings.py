from __future__ import annotations

import pytest
from pydantic import ValidationError

from churn_mlops.settings import DEVELOPMENT_SECRETS, Settings

STRONG = "s" * 40


def test_development_uses_the_published_development_secrets() -> None:
    settings = Settings(environment="development", jwt_secret="", api_key_pepper="")
    assert settings.jwt_secret.get_secret_value() == DEVELOPMENT_SECRETS["jwt_secret"]
    assert settings.api_key_pepper.get_secret_value() == DEVELOPMENT_SECRETS["api_key_pepper"]


def test_test_environment_without_secrets_gets_random_ones() -> None:
    first = Settings(environment="test", jwt_secret="", api_key_pepper="")
    second = Settings(environment="test", jwt_secret="", api_key_pepper="")
    assert len(first.jwt_secret.get_secret_value()) >= 32
    assert first.jwt_secret != second.jwt_secret


@pytest.mark.parametrize("field", ["jwt_secret", "api_key_pepper"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "is required in production"),
        ("short", "at least 32 characters"),
        (None, "not the development default"),
    ],
    ids=["missing", "short", "development-default"],
)
def test_production_refuses_a_missing_short_or_default_secret(
    field: str, value: str | None, reason: str
) -> None:
    secrets = {"jwt_secret": STRONG, "api_key_pepper": STRONG}
    secrets[field] = DEVELOPMENT_SECRETS[field] if value is None else value
    with pytest.raises(ValidationError, match=reason):
        Settings(environment="production", **secrets)


def test_production_accepts_strong_secrets() -> None:
    settings = Settings(environment="production", jwt_secret=STRONG, api_key_pepper=STRONG + "p")
    assert settings.auth_enabled
    assert STRONG not in repr(settings)


def test_production_refuses_auth_off() -> None:
    with pytest.raises(ValidationError, match="cannot be switched off in production"):
        Settings(
            environment="production", jwt_secret=STRONG, api_key_pepper=STRONG, auth_enabled=False
        )


def test_jwt_algorithm_is_pinned() -> None:
    with pytest.raises(ValidationError):
        Settings(jwt_algorithm="none")  # type: ignore[arg-type]
