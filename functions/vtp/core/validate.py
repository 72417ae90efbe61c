"""Refuse what we cannot handle, cheapest check first, before any expensive work.

The size is known before a byte is read (stat, or the S3 event); picture size, frame
rate and duration come from the container's header; only then are the first frames
decoded. Each refusal names the input's problem in one line.
"""

from __future__ import annotations

from fractions import Fraction

from vtp.core.config import Limits
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import Header, OpeningFrames, SourceInfo, check_codecs, declared_rate, declared_size


def check_size(size_bytes: int, limits: Limits) -> None:
    if size_bytes == 0:
        raise PipelineError(ErrorCode.EMPTY_INPUT, "the file is empty (0 bytes)")
    if size_bytes > limits.max_bytes:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LARGE,
            f"the file is {_size(size_bytes)} ({size_bytes:,} bytes), "
            f"over the limit of {_size(limits.max_bytes)} ({limits.max_bytes:,} bytes)",
        )


def check_header(header: Header, limits: Limits) -> None:
    check_codecs(header)
    width, height = declared_size(header)
    if width <= 0 or height <= 0:
        raise PipelineError(ErrorCode.CORRUPT_INPUT, "the video stream declares no picture size")
    if max(width, height) > max(limits.max_width, limits.max_height) or min(width, height) > min(
        limits.max_width, limits.max_height
    ):
        raise PipelineError(
            ErrorCode.RESOLUTION_TOO_HIGH,
            f"the picture is {width}x{height}, over the limit of {limits.max_width}x{limits.max_height}",
        )
    if width < 16 or height < 16:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the picture is only {width}x{height}")
    rate = declared_rate(header)
    if rate > Fraction(limits.max_frame_rate).limit_denominator(1000):
        raise PipelineError(
            ErrorCode.FRAME_RATE_TOO_HIGH,
            f"the frame rate is {float(rate):g} fps, over the limit of {limits.max_frame_rate:g} fps",
        )
    if header.duration_s is not None and header.duration_s > limits.max_duration_s:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LONG,
            f"the video lasts {_seconds(header.duration_s)}, over the limit of {_seconds(limits.max_duration_s)}",
        )


def check_opening(opening: OpeningFrames, limits: Limits) -> None:
    """The frames really there, where the header's rate is missing or wrong."""
    rate = opening.rate
    # The opening frames may come in a burst; only a rate far over the limit is refused here.
    if rate is not None and rate > 2 * limits.max_frame_rate:
        shown = "unbounded" if rate == float("inf") else f"{rate:.0f} fps"
        raise PipelineError(
            ErrorCode.FRAME_RATE_TOO_HIGH,
            f"the first frames come at {shown}, over the limit of {limits.max_frame_rate:g} fps",
        )


def check_info(info: SourceInfo, limits: Limits) -> None:
    if info.duration_s > limits.max_duration_s:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LONG,
            f"the video lasts {_seconds(info.duration_s)}, over the limit of {_seconds(limits.max_duration_s)}",
        )
    if info.duration_s < 0.1:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, "the video is too short to stream (under 0.1 s)")


def _seconds(value: float) -> str:
    """Whole seconds where that is exact, else tenths: 3600.4 s is not shown as the 3600 s limit."""
    return f"{value:.0f} s" if round(value, 1) == round(value) else f"{value:.1f} s"


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count} bytes"
