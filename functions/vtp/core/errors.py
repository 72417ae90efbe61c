"""Reason codes for failed jobs, shared by the local runner and the Lambdas."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
    EMPTY_INPUT = "EMPTY_INPUT"
    CORRUPT_INPUT = "CORRUPT_INPUT"
    NO_VIDEO_STREAM = "NO_VIDEO_STREAM"
    UNSUPPORTED_INPUT = "UNSUPPORTED_INPUT"
    INPUT_TOO_LARGE = "INPUT_TOO_LARGE"
    INPUT_TOO_LONG = "INPUT_TOO_LONG"
    RESOLUTION_TOO_HIGH = "RESOLUTION_TOO_HIGH"
    FRAME_RATE_TOO_HIGH = "FRAME_RATE_TOO_HIGH"
    INVALID_CONFIG = "INVALID_CONFIG"
    FFMPEG_NOT_FOUND = "FFMPEG_NOT_FOUND"
    ENCODE_FAILED = "ENCODE_FAILED"
    # ffmpeg or ffprobe killed by a signal or its time limit: the tool's failure, retried.
    TOOL_CRASHED = "TOOL_CRASHED"
    OUTPUT_CHECK_FAILED = "OUTPUT_CHECK_FAILED"
    INTERNAL_ERROR = "INTERNAL_ERROR"

    @property
    def is_input_problem(self) -> bool:
        """Problems with the uploaded file: retrying cannot help."""
        return self in _INPUT_PROBLEMS


_INPUT_PROBLEMS = {
    ErrorCode.INPUT_NOT_FOUND,
    ErrorCode.EMPTY_INPUT,
    ErrorCode.CORRUPT_INPUT,
    ErrorCode.NO_VIDEO_STREAM,
    ErrorCode.UNSUPPORTED_INPUT,
    ErrorCode.INPUT_TOO_LARGE,
    ErrorCode.INPUT_TOO_LONG,
    ErrorCode.RESOLUTION_TOO_HIGH,
    ErrorCode.FRAME_RATE_TOO_HIGH,
}


class PipelineError(Exception):
    """A failure with a reason code and a message fit to show a user."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
