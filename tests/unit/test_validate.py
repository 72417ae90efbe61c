"""validate(): each limit refuses with its own reason code, before any expensive work."""

from __future__ import annotations

import dataclasses

import pytest

from vtp.core.config import Limits
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import probe
from vtp.core.validate import validate


def refused(info, limits: Limits = Limits()) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        validate(info, limits)
    return caught.value


def test_an_ordinary_source_passes_the_default_limits(fake_source):
    validate(fake_source(), Limits())


def test_a_real_probed_clip_passes_and_is_measured_against_the_limits(clip):
    info = probe(clip("silent"))
    validate(info, Limits())
    validate(info, Limits(max_bytes=info.size_bytes))  # at the limit is allowed
    error = refused(info, Limits(max_bytes=info.size_bytes - 1))
    assert error.code is ErrorCode.INPUT_TOO_LARGE
    assert refused(info, Limits(max_duration_s=1.5)).code is ErrorCode.INPUT_TOO_LONG
    assert refused(info, Limits(max_width=160, max_height=90)).code is ErrorCode.RESOLUTION_TOO_HIGH


def test_size_limit(fake_source):
    limits = Limits(max_bytes=5_000_000)
    validate(fake_source(size_bytes=5_000_000), limits)
    error = refused(fake_source(size_bytes=5_000_001), limits)
    assert error.code is ErrorCode.INPUT_TOO_LARGE
    assert "5,000,001 bytes" in error.message and "limit of 4.77 MiB (5,000,000 bytes)" in error.message


def test_duration_limit(fake_source):
    limits = Limits(max_duration_s=30.0)
    validate(fake_source(duration_s=30.0), limits)
    error = refused(fake_source(duration_s=31.0), limits)
    assert error.code is ErrorCode.INPUT_TOO_LONG
    assert "31 s" in error.message and "30 s" in error.message


def test_resolution_limit(fake_source):
    limits = Limits(max_width=1280, max_height=720)
    validate(fake_source(1280, 720), limits)
    for width, height in ((1281, 720), (1280, 722), (1920, 1080)):
        error = refused(fake_source(width, height), limits)
        assert error.code is ErrorCode.RESOLUTION_TOO_HIGH
        assert f"{width}x{height}" in error.message and "1280x720" in error.message


def test_resolution_limit_applies_to_portrait_pictures_too(fake_source):
    limits = Limits(max_width=1280, max_height=720)
    validate(fake_source(720, 1280), limits)  # a phone video within the same pixel budget
    assert refused(fake_source(1080, 1920), limits).code is ErrorCode.RESOLUTION_TOO_HIGH


@pytest.mark.parametrize(("width", "height"), [(8, 8), (15, 720), (1280, 12)])
def test_a_tiny_picture_is_unsupported(fake_source, width, height):
    error = refused(fake_source(width, height))
    assert error.code is ErrorCode.UNSUPPORTED_INPUT
    assert f"{width}x{height}" in error.message


def test_a_video_too_short_to_stream_is_unsupported(fake_source):
    assert refused(fake_source(duration_s=0.05, frames=2)).code is ErrorCode.UNSUPPORTED_INPUT
    single = fake_source(duration_s=1.0, frames=1)
    assert refused(single).code is ErrorCode.UNSUPPORTED_INPUT
    validate(fake_source(duration_s=0.1, frames=3), Limits())


def test_the_first_limit_broken_is_the_one_reported(fake_source):
    info = fake_source(3840, 2160, duration_s=7200.0, size_bytes=10**12)
    limits = Limits(max_bytes=10**9, max_duration_s=3600.0, max_width=1920, max_height=1080)
    assert refused(info, limits).code is ErrorCode.INPUT_TOO_LARGE
    assert refused(dataclasses.replace(info, size_bytes=10), limits).code is ErrorCode.INPUT_TOO_LONG


def test_every_refusal_is_an_input_problem(fake_source):
    tiny = Limits(max_bytes=1, max_duration_s=1, max_width=16, max_height=16)
    assert refused(fake_source(), tiny).code.is_input_problem
