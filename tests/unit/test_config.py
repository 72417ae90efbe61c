"""PipelineConfig: the keyframe/segment/chunk grid, the limits, ladders by name, the dict
round trip and the deployed pipeline's environment. Invalid settings are refused with
INVALID_CONFIG before any job starts."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from vtp.core.config import (
    DEFAULT_LADDER,
    KNOWN_RUNGS,
    Limits,
    PipelineConfig,
    RateControl,
    Rung,
    ladder_from_names,
)
from vtp.core.errors import ErrorCode, PipelineError


def invalid(**changes) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        PipelineConfig(**changes)
    assert caught.value.code is ErrorCode.INVALID_CONFIG
    return caught.value


def test_defaults_are_valid_and_the_default_ladder_is_four_h264_rungs():
    config = PipelineConfig()
    assert [r.name for r in config.ladder] == ["1080p", "720p", "480p", "360p"]
    assert [r.height for r in config.ladder] == [1080, 720, 480, 360]
    assert config.video_codec == "libx264"
    assert config.rate_control is RateControl.CRF
    # the grid: chunks are whole segments, segments whole GOPs
    assert (config.chunk_s / config.segment_s).is_integer() and (config.segment_s / config.gop_s).is_integer()
    assert 0 <= config.max_preroll_s


def test_the_default_limits():
    limits = Limits()
    assert (limits.max_width, limits.max_height) == (7680, 4320)
    assert limits.max_frame_rate == 240.0
    assert limits.max_chunk_frames == 9000, "5 minutes at 30 fps for one encoder"
    assert limits.max_bytes == 50 * 1024**3 and limits.max_duration_s == 12 * 3600


def test_chunk_not_a_multiple_of_the_gop_is_refused():
    error = invalid(gop_s=2.0, chunk_s=9.0)
    assert "chunk" in error.message and "9" in error.message and "GOP" in error.message


def test_segment_not_a_multiple_of_the_gop_is_refused():
    error = invalid(gop_s=2.0, chunk_s=12.0, segment_s=5.0)
    assert "segment" in error.message and "5" in error.message and "GOP" in error.message


def test_chunk_not_a_multiple_of_the_segment_is_refused():
    """A segment may not span two chunks: each chunk's encoder writes whole segments."""
    error = invalid(gop_s=2.0, chunk_s=10.0, segment_s=4.0)
    assert "chunk length 10.0 s is not a multiple of the segment 4.0 s" in error.message
    PipelineConfig(gop_s=2.0, chunk_s=12.0, segment_s=4.0)
    PipelineConfig(gop_s=2.0, chunk_s=4.0, segment_s=4.0)  # one segment a chunk


def test_a_segment_longer_than_the_chunk_is_refused():
    assert "segment" in invalid(gop_s=2.0, chunk_s=4.0, segment_s=8.0).message


@pytest.mark.parametrize("field", ["gop_s", "chunk_s", "segment_s"])
@pytest.mark.parametrize("value", [0.0, -2.0, math.nan, math.inf])
def test_lengths_that_are_not_positive_numbers_are_refused(field, value):
    assert "positive" in invalid(**{field: value}).message


@pytest.mark.parametrize("value", [-1.0, math.nan])
def test_a_negative_pre_roll_limit_is_refused(value):
    assert "pre-roll" in invalid(max_preroll_s=value).message
    PipelineConfig(max_preroll_s=0.0)


@pytest.mark.parametrize(
    "field", ["max_bytes", "max_duration_s", "max_width", "max_height", "max_frame_rate", "max_chunk_frames"]
)
def test_a_limit_of_zero_is_refused_rather_than_refusing_every_source(field):
    error = invalid(limits=dataclasses.replace(Limits(), **{field: 0}))
    assert field in error.message


def test_an_empty_ladder_is_refused():
    assert "no rungs" in invalid(ladder=()).message


def test_duplicate_rungs_are_refused():
    rung = DEFAULT_LADDER[0]
    assert "repeat" in invalid(ladder=(rung, DEFAULT_LADDER[1], rung)).message
    assert "repeat" in invalid(ladder=(Rung("hd", 720, 3000, 23), Rung("hd", 480, 1200, 24))).message


def test_fractional_grid_multiples_are_accepted():
    config = PipelineConfig(gop_s=0.5, chunk_s=3.0, segment_s=1.5)
    assert config.chunk_s == 3.0
    # float noise in a ratio (0.6 / 0.2 = 2.9999999999999996) is not a reason to refuse
    assert 0.6 / 0.2 != 3
    PipelineConfig(gop_s=0.1, chunk_s=0.6, segment_s=0.2)
    invalid(gop_s=0.1, chunk_s=0.3, segment_s=0.2)


def test_error_message_is_fit_to_show():
    error = invalid(gop_s=2.0, chunk_s=9.0)
    assert str(error).startswith("INVALID_CONFIG: ")
    assert error.to_dict() == {"code": "INVALID_CONFIG", "message": error.message}
    assert "\n" not in str(error)


def test_ladder_from_names_keeps_the_order_given():
    rungs = ladder_from_names("720p, 360p,1080p")
    assert [r.name for r in rungs] == ["720p", "360p", "1080p"]
    assert rungs[0] is KNOWN_RUNGS["720p"]
    assert ladder_from_names("2160p,240p") == (KNOWN_RUNGS["2160p"], KNOWN_RUNGS["240p"])


def test_ladder_from_names_refuses_an_unknown_name_and_lists_the_known_ones():
    with pytest.raises(PipelineError) as caught:
        ladder_from_names("720p,999p")
    assert caught.value.code is ErrorCode.INVALID_CONFIG
    assert "'999p'" in caught.value.message
    for known in ("1080p", "720p", "480p", "360p"):
        assert known in caught.value.message


def test_ladder_from_names_with_nothing_gives_an_empty_ladder_that_config_refuses():
    assert ladder_from_names(" , ") == ()
    invalid(ladder=ladder_from_names(""))


def test_rung_box_width_is_the_16_9_width():
    assert [r.box_width for r in DEFAULT_LADDER][:2] == [1920, 1280]
    assert DEFAULT_LADDER[3].box_width == 640
    for rung in KNOWN_RUNGS.values():
        assert abs(rung.box_width - rung.height * 16 / 9) < 1


def test_to_dict_from_dict_round_trip_through_json():
    config = PipelineConfig(
        ladder=ladder_from_names("720p,360p"),
        gop_s=1.0,
        chunk_s=4.0,
        segment_s=2.0,
        preset="ultrafast",
        rate_control=RateControl.CAPPED_CRF,
        encoder_threads=2,
        max_preroll_s=1.5,
        limits=Limits(max_bytes=1234, max_duration_s=60.0, max_width=1920, max_height=1080, max_frame_rate=60.0,
                      max_chunk_frames=600),
    )
    data = json.loads(json.dumps(config.to_dict()))
    again = PipelineConfig.from_dict(data)
    assert again == config
    assert isinstance(again.ladder, tuple) and isinstance(again.ladder[0], Rung)
    assert again.rate_control is RateControl.CAPPED_CRF
    assert again.limits == config.limits


def test_from_dict_validates_like_the_constructor():
    data = PipelineConfig().to_dict()
    data["chunk_s"] = 7.0
    with pytest.raises(PipelineError) as caught:
        PipelineConfig.from_dict(data)
    assert caught.value.code is ErrorCode.INVALID_CONFIG


def test_from_dict_fills_defaults_for_missing_parts():
    config = PipelineConfig.from_dict({"preset": "fast"})
    assert config.ladder == DEFAULT_LADDER and config.limits == Limits() and config.preset == "fast"
    # a plan stored before the frame-rate and chunk-size limits existed
    config = PipelineConfig.from_dict({"limits": {"max_bytes": 1000, "max_duration_s": 60.0}})
    assert config.limits == Limits(max_bytes=1000, max_duration_s=60.0)
    assert (config.limits.max_frame_rate, config.limits.max_chunk_frames) == (240.0, 9000)


def test_with_changes_returns_a_new_validated_config():
    config = PipelineConfig()
    changed = config.with_changes(preset="slow")
    assert changed.preset == "slow" and config.preset == "veryfast"
    with pytest.raises(PipelineError):
        config.with_changes(segment_s=3.0)


def test_a_deployed_pipeline_reads_its_settings_from_the_environment():
    from vtp.core.config import config_from_environment

    config = config_from_environment({
        "VTP_LADDER": "720p,360p", "VTP_GOP_S": "2", "VTP_CHUNK_S": "8", "VTP_SEGMENT_S": "4",
        "VTP_PRESET": "fast", "VTP_RATE_CONTROL": "capped_crf", "VTP_MAX_BYTES": "1048576",
        "VTP_MAX_DURATION_S": "60",
    })
    assert [r.name for r in config.ladder] == ["720p", "360p"]
    assert (config.gop_s, config.chunk_s, config.segment_s, config.preset) == (2.0, 8.0, 4.0, "fast")
    assert config.rate_control == "capped_crf"
    assert (config.limits.max_bytes, config.limits.max_duration_s) == (1048576, 60.0)
    assert config_from_environment({}) == PipelineConfig()
    bad_settings = (
        {"VTP_GOP_S": "two"}, {"VTP_RATE_CONTROL": "fastest"}, {"VTP_MAX_BYTES": "lots"}, {"VTP_GOP_S": "nan"},
        {"VTP_CHUNK_S": "10"}, {"VTP_MAX_BYTES": "0"}, {"VTP_LADDER": "720p,999p"},
    )
    for bad in bad_settings:
        with pytest.raises(PipelineError) as raised:
            config_from_environment(bad)
        assert raised.value.code is ErrorCode.INVALID_CONFIG
