from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks.load import (
    LoadError,
    LoadResult,
    Mix,
    Wrk,
    batch_bodies,
    parse_duration,
    parse_wrk_output,
    prediction_bodies,
    write_bodies,
)
from churn_mlops.data import TelcoDataset

# Recorded from `WRK_SCRIPT` (2 threads, 4 connections, 1 s) against a server that answered
# every 50th request with a 503.
RECORDED = (Path(__file__).parent / "wrk_output_mixed_statuses.txt").read_text()


def test_parse_wrk_output_reads_the_result_line_of_a_recorded_run() -> None:
    result = parse_wrk_output(RECORDED)
    assert result == LoadResult(
        requests=6904,
        duration_s=1.008784,
        errors={"connect": 0, "read": 0, "write": 0, "status": 138, "timeout": 0},
        statuses={200: 6766, 503: 138},
        latency_ms={
            "p50": 0.462,
            "p90": 2.379,
            "p95": 3.732,
            "p99": 8.988,
            "p99.9": 18.464,
            "max": 19.632,
            "mean": 1.0075,
        },
    )


def test_parse_wrk_output_reads_cached_answers_and_the_fresh_span() -> None:
    line = RECORDED.replace('"statuses":{', '"cached":6000,"fresh_span":3452,"statuses":{')
    assert line != RECORDED
    result = parse_wrk_output(line)
    assert (result.cached, result.fresh_span) == (6000, 3452)
    assert result.cached_ratio == pytest.approx(6000 / 6904)
    assert result.to_dict()["cached"] == 6000


def test_parse_wrk_output_of_a_script_without_cache_counts_reads_none() -> None:
    result = parse_wrk_output(RECORDED)
    assert (result.cached, result.fresh_span, result.cached_ratio) == (0, 0, 0.0)


def test_wrk_run_refuses_a_schedule_of_other_letters(tmp_path: Path) -> None:
    wrk = Wrk(tmp_path, executable="/nonexistent/wrk")
    mix = Mix("wx", tmp_path / "fresh.tsv", 0)
    with pytest.raises(ValueError, match="made of w and f"):
        wrk.run(1, "/predict", tmp_path / "b.jsonl", connections=1, duration_s=1, mix=mix)


def test_load_result_counts_non_2xx_answers_as_failed() -> None:
    result = parse_wrk_output(RECORDED)
    assert result.rps == pytest.approx(6904 / 1.008784)
    assert result.non_2xx == 138
    assert result.failed == 138
    assert result.attempts == 6904


def test_load_result_counts_socket_errors_as_failed_and_unanswered_as_attempts() -> None:
    result = LoadResult(
        requests=100,
        duration_s=2.0,
        errors={"connect": 1, "read": 2, "write": 3, "status": 5, "timeout": 4},
        statuses={200: 95, 404: 1, 503: 4},
        latency_ms={"p50": 1.0},
    )
    assert result.non_2xx == 5
    assert result.failed == 5 + 1 + 2 + 3 + 4
    assert result.attempts == 100 + 1 + 2 + 3
    assert result.to_dict()["statuses"] == {"200": 95, "404": 1, "503": 4}


def test_parse_wrk_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(LoadError, match="no WRK_RESULT line"):
        parse_wrk_output("Running 1s test @ http://127.0.0.1:1/\n")


def test_prediction_bodies_are_distinct_customers_in_dataset_order(dataset: TelcoDataset) -> None:
    bodies = prediction_bodies(dataset, 2000)
    rows = list(dataset.feature_rows())
    assert len(set(bodies)) == 2000
    for i in (0, 1, 1999):
        assert orjson.loads(bodies[i]) == {
            "customer_id": dataset.customer_ids[i],
            "features": rows[i],
        }


def test_prediction_bodies_cycle_through_the_dataset_when_asked_for_more(
    dataset: TelcoDataset,
) -> None:
    bodies = prediction_bodies(dataset, len(dataset) + 2)
    assert len(set(bodies)) == len(dataset)
    assert bodies[len(dataset)] == bodies[0]
    assert bodies[len(dataset) + 1] == bodies[1]


def test_batch_bodies_hold_the_rows_asked_for_and_differ(dataset: TelcoDataset) -> None:
    bodies = batch_bodies(dataset, 1000, 4)
    batches = [orjson.loads(body) for body in bodies]
    assert [len(batch) for batch in batches] == [1000] * 4
    assert len(set(bodies)) == 4
    assert batches[1][0]["customer_id"] == dataset.customer_ids[len(dataset) // 4]


def test_batch_bodies_larger_than_the_dataset_repeat_customers(dataset: TelcoDataset) -> None:
    (body,) = batch_bodies(dataset, 10_000, 1)
    batch = orjson.loads(body)
    assert len(batch) == 10_000
    assert batch[len(dataset)] == batch[0]


def test_write_bodies_writes_one_body_per_line(tmp_path: Path) -> None:
    path = write_bodies(tmp_path / "bodies.jsonl", [b'{"a":1}', b'{"b":2}'])
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'


def test_write_bodies_refuses_a_body_with_a_newline(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one line"):
        write_bodies(tmp_path / "bodies.jsonl", [b'{\n"a":1}'])


@pytest.mark.parametrize(
    ("text", "seconds"), [("10", 10), ("10s", 10), (" 2m", 120), ("1h", 3600), ("0s", 0)]
)
def test_parse_duration_reads_wrk_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "1.5s", "10ms", "-1s", "ten"])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)
