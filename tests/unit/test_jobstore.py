"""The embedded job store (SQLite) and the job record it keeps."""

from __future__ import annotations

import pytest

from vtp.core.jobstore import JobAlreadyExists, JobRecord, JobStatus
from vtp.local.jobstore import HOME_ENV, SqliteJobStore, default_store_path


@pytest.fixture
def store(tmp_path) -> SqliteJobStore:
    return SqliteJobStore(tmp_path / "jobs.sqlite3")


def test_create_and_get(store):
    store.create(JobRecord(job_id="a-1", input="/videos/a.mp4", output="/out/a-1"))
    record = store.get("a-1")
    assert record.job_id == "a-1" and record.input == "/videos/a.mp4" and record.output == "/out/a-1"
    assert record.status is JobStatus.RUNNING and record.stage == "probe"
    assert record.created_at and record.created_at == record.updated_at
    assert record.timings == {}


def test_get_of_an_unknown_job_is_none(store):
    assert store.get("nope") is None


def test_a_duplicate_id_is_refused(store):
    store.create(JobRecord(job_id="a-1", input="a.mp4"))
    with pytest.raises(JobAlreadyExists):
        store.create(JobRecord(job_id="a-1", input="other.mp4"))
    assert store.get("a-1").input == "a.mp4"


def test_update_changes_fields_and_keeps_the_types(store):
    store.create(JobRecord(job_id="a-1", input="a.mp4", created_at="2024-01-01T00:00:00Z"))
    store.update("a-1", stage="encode", chunks_total=6, chunks_done=2)
    store.update("a-1", status=JobStatus.FAILED, error_code="ENCODE_FAILED", error_message="boom",
                 timings={"probe_s": 0.1, "total_s": 2.5})
    record = store.get("a-1")
    assert record.status is JobStatus.FAILED
    assert (record.stage, record.chunks_total, record.chunks_done) == ("encode", 6, 2)
    assert (record.error_code, record.error_message) == ("ENCODE_FAILED", "boom")
    assert record.timings == {"probe_s": 0.1, "total_s": 2.5}
    assert record.updated_at > record.created_at


def test_update_refuses_unknown_fields(store):
    store.create(JobRecord(job_id="a-1", input="a.mp4"))
    with pytest.raises(ValueError):
        store.update("a-1", colour="blue")


def test_recent_lists_newest_first(store):
    store.create(JobRecord(job_id="old", input="1.mp4", created_at="2024-01-01T00:00:00Z"))
    store.create(JobRecord(job_id="new", input="2.mp4", created_at="2024-03-01T00:00:00Z"))
    store.create(JobRecord(job_id="mid", input="3.mp4", created_at="2024-02-01T00:00:00Z"))
    assert [r.job_id for r in store.recent()] == ["new", "mid", "old"]
    assert [r.job_id for r in store.recent(limit=2)] == ["new", "mid"]


def test_jobs_made_in_the_same_second_list_in_reverse_order_of_creation(store):
    for job_id in ("first", "second", "third"):
        store.create(JobRecord(job_id=job_id, input=f"{job_id}.mp4"))
    assert [r.job_id for r in store.recent()] == ["third", "second", "first"]


def test_the_store_persists_across_instances(tmp_path):
    SqliteJobStore(tmp_path / "jobs.sqlite3").create(JobRecord(job_id="a-1", input="a.mp4"))
    assert SqliteJobStore(tmp_path / "jobs.sqlite3").get("a-1").input == "a.mp4"


def test_vtp_home_is_where_the_store_lives(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    assert HOME_ENV == "VTP_HOME"
    assert default_store_path() == tmp_path / "home" / "jobs.sqlite3"
    store = SqliteJobStore()
    store.create(JobRecord(job_id="a-1", input="a.mp4"))
    assert (tmp_path / "home" / "jobs.sqlite3").exists()


def test_without_vtp_home_the_store_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "vtp" / "jobs.sqlite3"


def test_record_round_trip():
    record = JobRecord(job_id="a-1", input="a.mp4", status=JobStatus.COMPLETE, timings={"total_s": 1.0})
    data = record.to_dict()
    assert data["status"] == "COMPLETE" and isinstance(data["status"], str)
    assert JobRecord.from_dict({**data, "unknown": 1}) == record


def test_each_stage_is_stamped_with_when_it_began(store):
    store.create(JobRecord(job_id="s-1", input="/videos/s.mp4"))
    store.update("s-1", stage="encode", chunks_total=2)
    store.update("s-1", chunks_done=1)
    store.update("s-1", stage="done")
    record = store.get("s-1")
    assert list(record.stage_times) == ["probe", "encode", "done"]
    assert record.stage_times["probe"] <= record.stage_times["encode"] <= record.stage_times["done"]
