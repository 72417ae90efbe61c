"""Settings of the stack, read from CDK context (``cdk.json`` or ``cdk deploy -c key=value``)."""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Node

import infra  # noqa: F401  (functions/ on sys.path)
from vtp import contract

DEFAULT_STACK_NAME = contract.DEFAULT_STACK_NAME
# Stack parameter defaults (the README's "Deploying to AWS" says what each must respect).
DEFAULT_MAX_CONCURRENCY = 100  # chunks encoded at once per job
DEFAULT_MAX_RUNNING_JOBS = 10  # x MaxConcurrency = 1,000, the default account concurrency
DEFAULT_ENCODER_MEMORY_MB = contract.DEFAULT_ENCODER_MEMORY_MB  # deploys on any account (new accounts may be capped at 3,008 MB)
DEFAULT_ENCODER_RESERVED_CONCURRENCY = 0  # 0: no reservation (an account must keep 100 unreserved)
DEFAULT_SPLITTER_CONCURRENCY = 5  # uploads probed at once (SQS event source MaximumConcurrency, 2-1000)
DEFAULT_QUEUE_RETRY_DELAY_S = 60
DEFAULT_OVERDUE_JOB_MINUTES = 120

# Context keys.
STACK_NAME = "vtp:stack-name"
DESTROY_ON_DELETE = "vtp:destroy-on-delete"
TEST_FAULT_INJECTION = "vtp:test-fault-injection"
SKIP_DEPENDENCY_BUNDLE = "vtp:skip-dependency-bundle"
LOG_LEVEL = "vtp:log-level"
ALARM_EMAIL = "vtp:alarm-email"
ENCODER_MEMORY_MB = "vtp:encoder-memory-mb"  # the default of the EncoderMemoryMB parameter
# The trigger: only keys with this prefix / suffix start jobs (S3 notification filter rules).
KEY_PREFIX = "vtp:key-prefix"
KEY_SUFFIX = "vtp:key-suffix"
# The splitter's timeout; its claim's lease and the uploads queue's visibility follow (contract.py).
SPLITTER_TIMEOUT_S = "vtp:splitter-timeout-s"
# How long an upload that found every job slot taken waits in the queue before it tries again.
QUEUE_RETRY_DELAY_S = "vtp:queue-retry-delay-s"
# Pipeline settings for the functions, "VTP_LADDER=720p,360p;VTP_PRESET=fast" or a JSON object.
SETTINGS = "vtp:settings"
SETTING_NAMES = contract.SETTING_NAMES


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
    encoder_memory_mb: int = DEFAULT_ENCODER_MEMORY_MB
    key_prefix: str = ""
    key_suffix: str = ""
    splitter_timeout_s: int = contract.DEFAULT_SPLITTER_TIMEOUT_S
    queue_retry_delay_s: int = DEFAULT_QUEUE_RETRY_DELAY_S
    # VTP_* pipeline settings passed to the functions' environment (ladder, GOP, preset ...).
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_node(cls, node: Node) -> "PipelineConfig":
        def get(key: str):
            return node.try_get_context(key)

        memory = int(get(ENCODER_MEMORY_MB) or cls.encoder_memory_mb)
        if not 128 <= memory <= 10240:
            raise ValueError(f"context {ENCODER_MEMORY_MB} must be within 128-10240 MB, not {memory}")
        timeout = int(get(SPLITTER_TIMEOUT_S) or cls.splitter_timeout_s)
        if not 10 <= timeout <= 900:
            raise ValueError(f"context {SPLITTER_TIMEOUT_S} must be within 10-900 s, not {timeout}")
        delay = int(get(QUEUE_RETRY_DELAY_S) or cls.queue_retry_delay_s)
        if not 0 <= delay <= 600:  # SQS DelaySeconds is at most 900, and the splitter adds up to half as jitter
            raise ValueError(f"context {QUEUE_RETRY_DELAY_S} must be within 0-600 s, not {delay}")
        prefix, suffix = str(get(KEY_PREFIX) or ""), str(get(KEY_SUFFIX) or "")
        for key, value in ((KEY_PREFIX, prefix), (KEY_SUFFIX, suffix)):
            if len(value) > 1024 or "*" in value:
                raise ValueError(f"context {key} must be a literal key prefix/suffix (no wildcards), not {value!r}")
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
            key_prefix=prefix,
            key_suffix=suffix,
            splitter_timeout_s=timeout,
            queue_retry_delay_s=delay,
            settings=tuple(sorted(_settings(get(SETTINGS)).items())),
        )
