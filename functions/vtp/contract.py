"""One contract between the infrastructure (app.py, infra/) and the functions' runtime.

Every name that both sides must spell the same way lives here: the functions' environment
variables, the pipeline settings passed through them, the stack's outputs, the events the
pipeline publishes and consumes, the error type the workflow does not retry, the jobs
table's indexes, the metrics the alarms watch, and the splitter's lease arithmetic.
Standard library only: infra imports it without the functions' dependencies.
"""

from __future__ import annotations

# --- environment variables of the functions ---------------------------------------------------
ENV_INPUT_BUCKET = "INPUT_BUCKET"
ENV_WORK_BUCKET = "WORK_BUCKET"
ENV_OUTPUT_BUCKET = "OUTPUT_BUCKET"
ENV_JOBS_TABLE = "JOBS_TABLE"
ENV_STATE_MACHINE_ARN = "STATE_MACHINE_ARN"  # splitter, watchdog
ENV_FAILURE_FUNCTION = "FAILURE_FUNCTION_NAME"  # splitter (rejected inputs), watchdog (repairs)
ENV_UPLOADS_QUEUE_URL = "UPLOADS_QUEUE_URL"  # splitter: an upload waiting for a free slot goes back here
ENV_EVENT_BUS = "EVENT_BUS_NAME"  # failure: where TranscodeJobFailed goes
ENV_FFMPEG_DIR = "VTP_FFMPEG_DIR"
ENV_MAX_RUNNING_JOBS = "VTP_MAX_RUNNING_JOBS"  # splitter: 0 = no cap
ENV_LEASE_S = "VTP_LEASE_S"  # splitter: how long a claim keeps other deliveries out
ENV_QUEUE_RETRY_DELAY_S = "VTP_QUEUE_RETRY_DELAY_S"  # splitter: delay of an upload sent back to the queue
ENV_OVERDUE_AFTER_MINUTES = "VTP_OVERDUE_AFTER_MINUTES"  # watchdog: a RUNNING job older than this is overdue
ENV_REPAIR_AFTER_S = "VTP_REPAIR_AFTER_S"  # watchdog: grace after an execution ended before it repairs the job
ENV_SCRATCH = "VTP_SCRATCH"
ENV_LOG_LEVEL = "LOG_LEVEL"
ENV_POWERTOOLS_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
# Test-only switches (context vtp:test-fault-injection): the encoder's first attempt at this
# chunk index fails; the splitter obeys the fault markers below in an upload's key.
ENV_FAULT_CHUNK = "VTP_FAIL_FIRST_ATTEMPT_CHUNK"
ENV_SPLITTER_FAULTS = "VTP_TEST_SPLITTER_FAULTS"

# --- the functions' memory (MB; Lambda bills GB-seconds of it, CPU scales with it) -------------
SPLITTER_MEMORY_MB = 1769  # one vCPU: the keyframe seeks run in parallel
DEFAULT_ENCODER_MEMORY_MB = 3008  # the EncoderMemoryMB parameter's default: deploys on any account
MERGER_MEMORY_MB = 1024
ANALYSER_MEMORY_MB = 3008  # a chunk's trial encodes and their scoring run side by side
LADDER_MEMORY_MB = 512  # fits the ladder from the analyses: no media
FAILURE_MEMORY_MB = 512
WATCHDOG_MEMORY_MB = 256

# Pipeline settings the functions read from their environment (vtp.core.config).
SETTING_NAMES = (
    "VTP_LADDER", "VTP_GOP_S", "VTP_CHUNK_S", "VTP_SEGMENT_S", "VTP_PRESET", "VTP_RATE_CONTROL",
    "VTP_MAX_BYTES", "VTP_MAX_DURATION_S", "VTP_TOP_VMAF",
)

# --- stack outputs (read by `vtp status --aws`, testing/localstack/run.py, the tests) ----
OUTPUT_INPUT_BUCKET = "InputBucketName"
OUTPUT_OUTPUT_BUCKET = "OutputBucketName"
OUTPUT_WORK_BUCKET = "WorkBucketName"
OUTPUT_JOBS_TABLE = "JobsTableName"
OUTPUT_STATE_MACHINE = "StateMachineArn"
OUTPUT_ALARM_TOPIC = "AlarmTopicArn"
OUTPUT_UPLOADS_QUEUE = "UploadsQueueUrl"
OUTPUT_DEAD_LETTER_QUEUE = "DeadLetterQueueUrl"
DEFAULT_STACK_NAME = "VideoTranscodingPipeline"

# --- events --------------------------------------------------------------------------------
EVENT_SOURCE = "vtp.pipeline"
EVENT_JOB_COMPLETED = "TranscodeJobCompleted"
EVENT_JOB_FAILED = "TranscodeJobFailed"
DEFAULT_EVENT_BUS = "default"
# What Step Functions sends to the default bus when an execution changes status.
STATES_EVENT_SOURCE = "aws.states"
STATES_STATUS_CHANGE = "Step Functions Execution Status Change"
EXECUTION_FAILURES = ("FAILED", "TIMED_OUT", "ABORTED")
# The watchdog hands a job whose execution ended unnoticed to the failure path in the same shape.
WATCHDOG_EVENT_SOURCE = "vtp.watchdog"

# --- what the workflow tells the functions (their events) -------------------------------------
# The ladder function's actions (event field ACTION_FIELD): fit the ladder after the analysis Map
# (the default, no field), or plan the rework after the encode Map (a fitted ladder).
ACTION_FIELD = "action"
ACTION_FIT_LADDER = "fit_ladder"
ACTION_PLAN_REWORK = "plan_rework"
# An encoder event with this field (a rework Map item's ChunkRework) encodes those rungs again.
REWORK_FIELD = "rework"
REWORK_ITEMS = "rework_chunks.json"  # the rework Map's items, beside job.json

# --- errors ---------------------------------------------------------------------------------
# Raised by the functions for a problem of the input: the workflow never retries it.
INPUT_ERROR = "InputError"

# --- the jobs table -----------------------------------------------------------------------
TABLE_KEY = "job_id"
INDEX_BY_INPUT = "by_input"  # input (s3://bucket/key) + created_at: every job of one key
INDEX_BY_STATUS = "by_status"  # status + created_at: the RUNNING jobs, oldest first

# --- metrics (namespace and the service dimension powertools adds) -------------------------
METRIC_NAMESPACE = "vtp"
SERVICE_NAME = "vtp"
METRIC_JOBS_FAILED = "JobsFailed"  # failure path: a job became FAILED
METRIC_INPUTS_REJECTED = "InputsRejected"  # splitter: an upload refused for its content
METRIC_SPLIT_RETRIED = "SplitRetried"  # splitter: a transient failure handed back for a retry
METRIC_JOBS_QUEUED = "JobsQueued"  # splitter: an upload sent back to wait for a free slot
METRIC_JOBS_OVERDUE = "JobsOverdue"  # watchdog
METRIC_JOBS_RUNNING = "JobsRunning"  # watchdog
METRIC_OLDEST_RUNNING_S = "OldestRunningJobAgeSeconds"  # watchdog
METRIC_JOBS_REPAIRED = "JobsRepaired"  # watchdog: handed to the failure path

# --- test-only faults, named in an upload's key (only with ENV_SPLITTER_FAULTS set) ---------
FAULT_DIE_AFTER_CLAIM = "vtp-test-fault=die-after-claim"  # the first splitter attempt dies after its claim
FAULT_THROTTLE_START = "vtp-test-fault=throttle-start"  # the first StartExecution call is throttled

# --- the splitter's lease ---------------------------------------------------------------------
DEFAULT_SPLITTER_TIMEOUT_S = 300


def lease_seconds(splitter_timeout_s: int) -> int:
    """How long a claim holds: longer than any splitter can live (Lambda kills it at its
    timeout), plus a margin for clock skew between functions: 300 s -> 360 s."""
    return splitter_timeout_s + max(10, splitter_timeout_s // 5)


def visibility_timeout_seconds(splitter_timeout_s: int) -> int:
    """The uploads queue's visibility timeout, i.e. when a delivery that was not deleted
    (the splitter died or raised) comes back: after the lease of the claim it may have made
    has expired, so the retry can take it over: 300 s -> 390 s."""
    return lease_seconds(splitter_timeout_s) + max(5, splitter_timeout_s // 10)


def execution_name(job_id: str, attempt: int) -> str:
    """`<job_id>-<attempt>`: unique per attempt (Step Functions keeps names for 90 days)."""
    return f"{job_id}-{attempt}"


def job_id_of_execution(name: str) -> str:
    """The job an execution belongs to (the inverse of execution_name)."""
    return name.rsplit("-", 1)[0]
