"""Settings of the stack, read from CDK context (``cdk.json`` or ``cdk deploy -c key=value``)."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Node

DEFAULT_STACK_NAME = "VideoTranscodingPipeline"
DEFAULT_MAX_CONCURRENCY = 100

# Context keys.
STACK_NAME = "vtp:stack-name"
DESTROY_ON_DELETE = "vtp:destroy-on-delete"
TEST_FAULT_INJECTION = "vtp:test-fault-injection"
SKIP_DEPENDENCY_BUNDLE = "vtp:skip-dependency-bundle"
LOG_LEVEL = "vtp:log-level"
ALARM_EMAIL = "vtp:alarm-email"
ENCODER_MEMORY_MB = "vtp:encoder-memory-mb"
# Pipeline settings for the functions, "VTP_LADDER=720p,360p;VTP_PRESET=fast" or a JSON object.
SETTINGS = "vtp:settings"
SETTING_NAMES = (
    "VTP_LADDER", "VTP_GOP_S", "VTP_CHUNK_S", "VTP_SEGMENT_S", "VTP_PRESET", "VTP_RATE_CONTROL",
    "VTP_MAX_BYTES", "VTP_MAX_DURATION_S",
)


def _settings(value: object) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, dict):
        pairs = {str(k): str(v) for k, v in value.items()}
    else:
        text = str(value).strip()
        if text.startswith("{"):
            import json

            pairs = {str(k): str(v) for k, v in json.loads(text).items()}
        else:
            pairs = dict(item.split("=", 1) for item in text.split(";") if item.strip())
    unknown = set(pairs) - set(SETTING_NAMES)
    if unknown:
        raise ValueError(f"context {SETTINGS}: unknown settings {sorted(unknown)} (known: {', '.join(SETTING_NAMES)})")
    return pairs


def _as_bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"context {key} must be true or false, not {value!r}")


@dataclass(frozen=True)
class PipelineConfig:
    stack_name: str = DEFAULT_STACK_NAME
    # Delete buckets (and their objects) and the table with the stack. Off: they are retained.
    destroy_on_delete: bool = False
    # Sets VTP_FAIL_FIRST_ATTEMPT_CHUNK so the first attempt at one chunk fails (retry tests).
    fault_injection: bool = False
    # Test-only: package functions/vtp without its pip dependencies (fast synth in unit tests).
    skip_dependency_bundle: bool = False
    log_level: str = "INFO"
    alarm_email: str | None = None
    encoder_memory_mb: int = 10240
    # VTP_* pipeline settings passed to the functions' environment (ladder, GOP, preset ...).
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_node(cls, node: Node) -> "PipelineConfig":
        def get(key: str):
            return node.try_get_context(key)

        memory = int(get(ENCODER_MEMORY_MB) or cls.encoder_memory_mb)
        if not 128 <= memory <= 10240:
            raise ValueError(f"context {ENCODER_MEMORY_MB} must be within 128-10240 MB, not {memory}")
        level = str(get(LOG_LEVEL) or cls.log_level).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"context {LOG_LEVEL} must be a Python log level name, not {level!r}")
        return cls(
            stack_name=str(get(STACK_NAME) or DEFAULT_STACK_NAME),
            destroy_on_delete=_as_bool(get(DESTROY_ON_DELETE), DESTROY_ON_DELETE),
            fault_injection=_as_bool(get(TEST_FAULT_INJECTION), TEST_FAULT_INJECTION),
            skip_dependency_bundle=_as_bool(get(SKIP_DEPENDENCY_BUNDLE), SKIP_DEPENDENCY_BUNDLE),
            log_level=level,
            alarm_email=(str(get(ALARM_EMAIL)).strip() or None) if get(ALARM_EMAIL) else None,
            encoder_memory_mb=memory,
            settings=tuple(sorted(_settings(get(SETTINGS)).items())),
        )
