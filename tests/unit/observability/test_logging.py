"""JSON logs with the request id, secrets redacted; request ids accepted or made."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from churn_mlops.observability.logging import (
    REDACTED,
    RequestIds,
    configure_logging,
    get_logger,
    request_id_var,
)


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The captured stderr; the root logger's handlers are restored afterwards. Tests configure
    the JSON logs themselves: capsys's stream is only in place once the test runs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield capsys
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_stdlib_records_become_json_with_the_request_id(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    token = request_id_var.set(b"req-7")
    try:
        logging.getLogger("churn_mlops.requests").warning("slow request: %s in %d ms", "/x", 12)
    finally:
        request_id_var.reset(token)
    (line,) = _lines(json_logs)
    assert line["event"] == "slow request: /x in 12 ms"
    assert line["level"] == "warning"
    assert line["logger"] == "churn_mlops.requests"
    assert line["request_id"] == "req-7"
    assert str(line["timestamp"]).endswith("Z")


def test_records_outside_a_request_have_no_request_id(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    logging.getLogger("churn_mlops.serving").info("serving model %s", "v1")
    (line,) = _lines(json_logs)
    assert "request_id" not in line


def test_secrets_and_features_are_redacted(json_logs: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    get_logger("churn_mlops.auth").info(
        "login",
        username="ada",
        password="hunter2",  # noqa: S106 - the secret a log must not show
        api_key="k",
        features={"tenure": 3},
    )
    (line,) = _lines(json_logs)
    assert line["username"] == "ada"
    assert line["password"] == REDACTED
    assert line["api_key"] == REDACTED
    assert line["features"] == REDACTED
    assert "hunter2" not in json.dumps(line)


def test_exceptions_are_rendered_into_the_line(json_logs: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("churn_mlops.errors").exception("unhandled error")
    (line,) = _lines(json_logs)
    assert "RuntimeError: boom" in str(line["exception"])


def test_request_ids_keep_a_plain_client_id() -> None:
    assert RequestIds().accept([(b"x-request-id", b"abc-123_X.y:z")]) == b"abc-123_X.y:z"


@pytest.mark.parametrize(
    "value", [b"", b"has space", b"new\nline", b"x" * 129, "é".encode(), b"<script>"]
)
def test_request_ids_replace_an_unusable_client_id(value: bytes) -> None:
    ids = RequestIds()
    made = ids.accept([(b"x-request-id", value)])
    assert made != value
    assert made.split(b"-")[0] == ids.new().split(b"-")[0]


def test_request_ids_made_by_one_process_are_unique_and_share_its_prefix() -> None:
    ids = RequestIds()
    made = [ids.accept([]) for _ in range(1_000)]
    assert len(set(made)) == 1_000
    assert len({value.split(b"-")[0] for value in made}) == 1
    assert RequestIds().new().split(b"-")[0] != made[0].split(b"-")[0]
