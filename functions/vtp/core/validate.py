"""Refuse what we cannot handle before any expensive work."""

from __future__ import annotations

from vtp.core.config import Limits
from vtp.core.errors import ErrorCode, PipelineError
from vtp.core.probe import SourceInfo


def validate(source: SourceInfo, limits: Limits) -> None:
    video = source.video
    if source.size_bytes > limits.max_bytes:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LARGE,
            f"the file is {_size(source.size_bytes)} ({source.size_bytes:,} bytes), "
            f"over the limit of {_size(limits.max_bytes)} ({limits.max_bytes:,} bytes)",
        )
    if source.duration_s > limits.max_duration_s:
        raise PipelineError(
            ErrorCode.INPUT_TOO_LONG,
            f"the video lasts {source.duration_s:.0f} s, over the limit of {limits.max_duration_s:.0f} s",
        )
    if max(video.width, video.height) > max(limits.max_width, limits.max_height) or min(
        video.width, video.height
    ) > min(limits.max_width, limits.max_height):
        raise PipelineError(
            ErrorCode.RESOLUTION_TOO_HIGH,
            f"the picture is {video.width}x{video.height}, over the limit of {limits.max_width}x{limits.max_height}",
        )
    if video.width < 16 or video.height < 16:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, f"the picture is only {video.width}x{video.height}")
    if source.duration_s < 0.1 or video.frames < 2:
        raise PipelineError(ErrorCode.UNSUPPORTED_INPUT, "the video is too short to stream (under 0.1 s)")


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count} bytes"
