"""Job ids: `<slug>-<16 hex>`, the same for the same source identity."""

from __future__ import annotations

import re

from vtp.core.jobid import job_id_for

ID = re.compile(r"^[a-z0-9-]{1,40}-[0-9a-f]{16}$")


def test_the_same_identity_gives_the_same_id():
    first = job_id_for("s3://bucket/uploads/clip.mp4#v1", "uploads/clip.mp4")
    assert first == job_id_for("s3://bucket/uploads/clip.mp4#v1", "uploads/clip.mp4")
    assert ID.match(first)


def test_a_different_identity_gives_a_different_id():
    assert job_id_for("bucket/clip.mp4#v1", "clip.mp4") != job_id_for("bucket/clip.mp4#v2", "clip.mp4")


def test_the_slug_is_the_file_name_without_folder_or_extension():
    assert job_id_for("x", "uploads/2024/My Holiday Clip (final).MP4").startswith("my-holiday-clip-final-")
    assert job_id_for("x", "archive.tar.gz").startswith("archive-tar-")


def test_the_slug_is_short_and_safe():
    job_id = job_id_for("x", "a" * 100 + ".mp4")
    slug, digest = job_id.rsplit("-", 1)
    assert slug == "a" * 40 and len(digest) == 16
    for name in ("../../etc/passwd", "weird name;rm -rf.mov", "clip\n.mp4", "ünïcödé.mp4"):
        assert ID.match(job_id_for("x", name)), name


def test_a_name_with_nothing_usable_is_called_video():
    assert job_id_for("x", "日本語.mp4").startswith("video-")
    assert job_id_for("x", ".mp4").startswith("video-")
    assert job_id_for("x", "").startswith("video-")
