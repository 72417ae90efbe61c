"""Storage: the input, work, output and access-log buckets and the jobs table.

::

    input bucket  --ObjectCreated:*-->  splitter          (trigger: see stack.py)
    work bucket   jobs/<job_id>/...     chunks, chunk encodes, audio, Map results (expire after 7 days)
    output bucket <job_id>/...          HLS, DASH, thumbnails, manifest.json
    jobs table    job_id -> status, stage timestamps, counts, outputs, error

Every bucket blocks public access, denies plain-HTTP requests (and TLS < 1.2), is
encrypted with S3-managed keys (SSE-S3: no KMS key policy for Lambda or the
Distributed Map reader/writer to get wrong, no key to pay for while idle), has
ACLs disabled and writes server access logs to the access-log bucket.

The input bucket is versioned (every job reads the one version its upload made,
so an overwrite while a job runs is a second job, not a mix of two uploads;
versions no longer current expire after NONCURRENT_RETENTION_DAYS) and has an
explicit name, ``<stack-slug>-input-<account>-<8 hex of the stack id>``: the
notification's queue policy can then name it without referring to the bucket
resource (which depends on that policy: S3 checks the destination when the
notification is saved), and the name is new with every stack *instance*, so a
deploy after a failed first one (whose retained bucket stays behind) does not
collide with the bucket left over. The other buckets and the table get names
from CloudFormation.

The jobs table has two indexes: ``by_input`` (input, created_at) finds every job of
one upload key (`vtp status --aws KEY`), ``by_status`` (status, created_at) the
RUNNING jobs, oldest first (the watchdog).
"""

from __future__ import annotations

import hashlib
import re

from aws_cdk import Aws, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

import infra  # noqa: F401  (functions/ on sys.path)
from vtp import contract

WORK_PREFIX = "jobs/"
WORK_RETENTION_DAYS = 7
ACCESS_LOG_RETENTION_DAYS = 90
# Older versions of an upload are kept a week: longer than any job (the workflow times out after 6 h).
NONCURRENT_RETENTION_DAYS = 7


def stack_slug(stack_name: str, max_length: int = 24) -> str:
    """A bucket-name-safe, lower-case form of the stack name (a hash keeps truncated names apart)."""
    slug = re.sub(r"[^a-z0-9]+", "-", stack_name.lower()).strip("-") or "vtp"
    if len(slug) > max_length:
        digest = hashlib.sha256(stack_name.encode()).hexdigest()[:6]
        slug = slug[: max_length - 7].rstrip("-") + "-" + digest
    return slug


def stack_instance_id() -> str:
    """The first group of the UUID that ends the stack's id (``arn:...:stack/<name>/<uuid>``):
    new with every creation of the stack, the same for its updates."""
    return Fn.select(0, Fn.split("-", Fn.select(2, Fn.split("/", Aws.STACK_ID))))


def input_bucket_name(stack: Stack) -> str:
    """``<stack-slug>-input-<account>-<8 hex of the stack id>``: at most 24 + 7 + 12 + 1 + 8 = 52
    characters (the stack id makes it unique per stack instance, which makes it unique per region too)."""
    return Fn.join("", [f"{stack_slug(stack.stack_name)}-input-", Aws.ACCOUNT_ID, "-", stack_instance_id()])


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, destroy_on_delete: bool = False) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        removal = RemovalPolicy.DESTROY if destroy_on_delete else RemovalPolicy.RETAIN

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only encryption S3 log delivery supports
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=destroy_on_delete,
        )
        # cdk-nag's S1 (server access logs) accepts this bucket as it is the log destination itself.

        def bucket(construct_id: str, **kwargs) -> s3.Bucket:
            return s3.Bucket(
                self,
                construct_id,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                minimum_tls_version=1.2,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                server_access_logs_bucket=self.access_log_bucket,
                server_access_logs_prefix=f"{construct_id}/",
                removal_policy=removal,
                auto_delete_objects=destroy_on_delete,
                **kwargs,
            )

        # Uploads land here; the notification on it is configured in intake.py.
        self.input_bucket_name = input_bucket_name(stack)
        self.input_bucket = bucket(
            "InputBucket",
            bucket_name=self.input_bucket_name,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(7)
                ),
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=Duration.days(NONCURRENT_RETENTION_DAYS),
                    expired_object_delete_marker=True,
                ),
            ],
        )
        # ARN built from the name, not from the bucket resource (see the module docstring).
        self.input_bucket_arn = f"arn:{Aws.PARTITION}:s3:::{self.input_bucket_name}"

        # Intermediate files of a job, all under jobs/<job_id>/, gone after a week.
        self.work_bucket = bucket(
            "WorkBucket",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireJobFiles",
                    prefix=WORK_PREFIX,
                    expiration=Duration.days(WORK_RETENTION_DAYS),
                ),
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
        )

        # Finished renditions; retained with the stack unless vtp:destroy-on-delete is true.
        self.output_bucket = bucket(
            "OutputBucket",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                )
            ],
        )

        self.jobs_table = dynamodb.Table(
            self,
            "JobsTable",
            partition_key=dynamodb.Attribute(name="job_id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,  # nothing billed while idle
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal,
        )
        for index, partition in ((contract.INDEX_BY_INPUT, "input"), (contract.INDEX_BY_STATUS, "status")):
            self.jobs_table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=partition, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.ALL,  # small items; the readers want them whole
            )
