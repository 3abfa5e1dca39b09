"""The restore event: strict types, every problem listed, nothing guessed."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import ValidationError

from ddb_backup.events import MAX_TABLES, RestoreRequest
from handlers.common import validation_problems
from tests.support.paths import EVENTS


def problems(event: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        RestoreRequest.model_validate(event)
    return validation_problems(info.value)


def test_defaults() -> None:
    r = RestoreRequest.model_validate({})
    assert r.backup_date == "latest"
    assert r.tables is None
    assert r.dry_run is False
    assert r.clear_existing_data is False
    assert r.max_workers == 5
    assert r.table_mapping is None
    assert r.create_missing_tables is False


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("restore_*.json")))
def test_sample_events(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    if name == "restore_invalid.json":
        found = problems(event)
        assert len(found) == 4, found
    else:
        RestoreRequest.model_validate(event)


@pytest.mark.parametrize("value", ["false", "true", 0, 1, "no", None])
@pytest.mark.parametrize("field", ["dry_run", "clear_existing_data", "create_missing_tables"])
def test_booleans_must_be_json_booleans(field: str, value: Any) -> None:
    assert any(p.startswith(f"{field}:") for p in problems({field: value}))


@pytest.mark.parametrize("value", [0, -1, 65, 10**9, "5", 5.0, True])
def test_max_workers_bounded_and_an_integer(value: Any) -> None:
    assert any(p.startswith("max_workers:") for p in problems({"max_workers": value}))


def test_unknown_fields_rejected() -> None:
    found = problems({"clear_existing_data": True, "tabels": ["x-table"], "dryrun": True})
    assert "tabels: Extra inputs are not permitted" in found
    assert "dryrun: Extra inputs are not permitted" in found


def test_every_problem_listed_without_values() -> None:
    found = problems(
        {
            "backup_date": "2026-02-30",
            "dry_run": "false",
            "max_workers": 0,
            "tables": ["../etc"],
            "extra": "S3CR3T",
        }
    )
    assert len(found) == 5, found
    assert not any("S3CR3T" in p for p in found)


@pytest.mark.parametrize(
    "date", ["2026-13-01", "26-01-01", "2026-01-01/..", "../2026-01-01", "", "LATEST", 20260101]
)
def test_malformed_dates(date: Any) -> None:
    assert any(p.startswith("backup_date:") for p in problems({"backup_date": date}))


def test_future_date_rejected() -> None:
    future = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    assert any("in the future" in p for p in problems({"backup_date": future}))
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert RestoreRequest.model_validate({"backup_date": today}).backup_date == today


@pytest.mark.parametrize(
    "tables",
    [
        [],
        ["ab"],
        ["../x-table"],
        ["a/b/c"],
        ["x-table", "x-table"],
        "x-table",
        [f"t-{i:04d}" for i in range(MAX_TABLES + 1)],
        [3],
    ],
)
def test_bad_table_lists(tables: Any) -> None:
    assert any(p.startswith("tables") for p in problems({"tables": tables}))


def test_table_mapping_rules() -> None:
    ok = RestoreRequest.model_validate(
        {"tables": ["src-a", "src-b"], "table_mapping": {"src-a": "copy-a"}}
    )
    assert ok.targets(["src-a", "src-b"]) == {"src-a": "copy-a", "src-b": "src-b"}
    # Two sources into one target; a target that is another restored table.
    assert problems({"table_mapping": {"src-a": "same", "src-b": "same"}})
    assert problems({"tables": ["src-a", "src-b"], "table_mapping": {"src-a": "src-b"}})
    # Mapping a table that is not being restored.
    assert problems({"tables": ["src-a"], "table_mapping": {"src-z": "copy"}})
    assert problems({"table_mapping": {"src-a": "../escape"}})
    assert problems({"table_mapping": {"src-a": 3}})


def test_resume_token_alone() -> None:
    assert RestoreRequest.model_validate({"resume_token": "v1.abc", "max_workers": 9})
    found = problems({"resume_token": "v1.abc", "clear_existing_data": True})
    assert any("clear_existing_data" in p for p in found)
    assert problems({"resume_token": "not a token!"})


def test_non_object_events() -> None:
    event: object
    for event in ([], "x", 3, None):
        assert problems(event)
