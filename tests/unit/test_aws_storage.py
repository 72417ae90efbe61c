"""The S3 object store (moto in-process) against the ObjectStore contract that the local
folder store also keeps."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from vtp.aws.storage import S3Store
from vtp.core.storage import FolderStore

REGION = "us-east-1"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="out")
        yield client


def test_the_s3_store_round_trips_with_content_types(s3, tmp_path):
    store = S3Store("out", s3)
    store.put_json("job/a.json", {"a": [1, 2]})
    assert store.get_json("job/a.json") == {"a": [1, 2]}
    store.put_bytes("job/180p/segment_0.m4s", b"\0" * 10)
    store.put_bytes("job/master.m3u8", b"#EXTM3U\n", "application/vnd.apple.mpegurl")
    store.put_bytes("job/thumbnails/thumbnails.vtt", b"WEBVTT\n")
    source = tmp_path / "poster.jpg"
    source.write_bytes(b"\xff\xd8 jpeg")
    store.upload(source, "job/thumbnails/poster.jpg")
    store.upload(source, "job/other.bin", "application/x-custom")
    types = {key: s3.head_object(Bucket="out", Key=key)["ContentType"] for key in store.keys("job/")}
    assert types == {
        "job/a.json": "application/json",
        "job/180p/segment_0.m4s": "video/iso.segment",
        "job/master.m3u8": "application/vnd.apple.mpegurl",
        "job/thumbnails/thumbnails.vtt": "text/vtt",
        "job/thumbnails/poster.jpg": "image/jpeg",
        "job/other.bin": "application/x-custom",
    }
    got = store.download("job/thumbnails/poster.jpg", tmp_path / "deep" / "er" / "p.jpg")
    assert got.read_bytes() == b"\xff\xd8 jpeg"
    assert store.exists("job/a.json") and not store.exists("job/nothing") and not store.exists("job")


def test_keys_and_delete_prefix_go_past_one_page_and_stay_in_their_prefix(s3):
    store = S3Store("out", s3)
    for index in range(1001):
        s3.put_object(Bucket="out", Key=f"job-1/180p/segment_{index}.m4s", Body=b"")
    store.put_json("job-1/manifest.json", {})
    store.put_json("job-10/manifest.json", {})
    assert len(list(store.keys("job-1/"))) == 1002
    assert store.delete_prefix("job-1/") == 1002
    assert list(store.keys("job-1/")) == [] and list(store.keys("job-")) == ["job-10/manifest.json"]
    assert store.delete_prefix("nothing/") == 0


def test_a_file_is_uploaded_with_its_content_type(s3, tmp_path):
    playlist = tmp_path / "master.m3u8"
    playlist.write_text("#EXTM3U\n")
    S3Store("out", s3).upload(playlist, "job-1/master.m3u8")
    assert s3.head_object(Bucket="out", Key="job-1/master.m3u8")["ContentType"] == "application/vnd.apple.mpegurl"


def test_reading_a_missing_key_raises(s3):
    with pytest.raises(s3.exceptions.NoSuchKey):
        S3Store("out", s3).get_json("missing.json")


def test_the_folder_store_keeps_the_same_contract_and_refuses_keys_outside_it(tmp_path):
    store = FolderStore(tmp_path / "root")
    store.put_json("a/b.json", [1])
    store.put_bytes("a/c.m4s", b"x")
    assert store.get_json("a/b.json") == [1] and list(store.keys("a/")) == ["a/b.json", "a/c.m4s"]
    assert store.exists("a/c.m4s") and not store.exists("a/d")
    assert store.delete_prefix("a/") == 2 and list(store.keys("")) == []
    for key in ("../escape.json", "a/../../escape.json"):
        with pytest.raises(ValueError):
            store.put_json(key, {})
