"""Intake: uploads wait in a queue; the splitter takes them from it; what cannot be done goes to a dead-letter queue.

::

    input bucket --ObjectCreated:* (optional key prefix/suffix filter)--> UploadsQueue (SQS)
    UploadsQueue --event source mapping (batch 1, MaximumConcurrency SplitterConcurrency,
                   ReportBatchItemFailures)--> splitter
    a delivery not deleted (the splitter died, raised, or found the claim held) comes back
    after the visibility timeout; after MAX_RECEIVES deliveries --> DeadLetterQueue
    the failure function's own failed async events and the execution-status rule's
    undeliverable events --> DeadLetterQueue as well (see stack.py); its depth is alarmed

The numbers follow the splitter's timeout T (vtp/contract.py): the claim's lease is
T + max(10, T/5) (300 s -> 360 s) and the visibility timeout is the lease +
max(5, T/10) (390 s): a delivery that comes back always finds a dead splitter's lease
over, and takes the job over. MAX_RECEIVES = 5 deliveries give a failing upload about
26 minutes of retries (beside botocore's own retries inside each) before it is parked
in the dead-letter queue, from which it can be redriven to the uploads queue.

The notification is set on the bucket resource (``NotificationConfiguration``), not
with ``bucket.add_event_notification`` (a hidden custom resource LocalStack's free edition
skips). S3 checks that it may send to the queue when the configuration is saved, so the
bucket depends on the queue's policy, and the policy names the bucket by its name (built
from the stack, see storage.py), not by reference: no cycle.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge
from infra.storage import Storage
from vtp import contract

S3_TRIGGER_EVENT = "s3:ObjectCreated:*"
MAX_RECEIVES = 5
RETENTION = Duration.days(14)  # the most SQS keeps a message


class Intake(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, storage: Storage, splitter_timeout_s: int,
        key_prefix: str = "", key_suffix: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.visibility_timeout_s = contract.visibility_timeout_seconds(splitter_timeout_s)
        self.lease_s = contract.lease_seconds(splitter_timeout_s)

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=RETENTION,
        )
        acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This is the dead-letter queue (of the uploads queue, the failure function's async "
            "invocations and the execution-status rule); its depth is alarmed.",
        )
        self.uploads_queue = sqs.Queue(
            self,
            "UploadsQueue",
            # SSE-SQS: S3 event notifications can be sent to it (an AWS-managed KMS key cannot be used).
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=RETENTION,
            visibility_timeout=Duration.seconds(self.visibility_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letter_queue),
        )
        self.uploads_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="InputBucketNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.uploads_queue.queue_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": storage.input_bucket_arn},  # by name: no reference, no cycle
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        self._notify(storage, key_prefix, key_suffix)

    def _notify(self, storage: Storage, key_prefix: str, key_suffix: str) -> None:
        rules = [s3.CfnBucket.FilterRuleProperty(name=name, value=value)
                 for name, value in (("prefix", key_prefix), ("suffix", key_suffix)) if value]
        cfn_bucket: s3.CfnBucket = storage.input_bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(
                    event=S3_TRIGGER_EVENT,
                    queue=self.uploads_queue.queue_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(rules=rules)
                    ) if rules else None,
                )
            ]
        )
        policy = self.uploads_queue.node.find_child("Policy")
        cfn_bucket.add_resource_dependency(policy.node.default_child)  # S3 validates the destination on save
