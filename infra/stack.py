"""The stack: wires storage, functions, workflow and monitoring.

::

    upload -> input bucket --(S3 ObjectCreated:*, bucket NotificationConfiguration)--> splitter Lambda
                 splitter: probe, validate, plan, cut chunks -> work bucket jobs/<job_id>/,
                           job record (conditional put) -> jobs table,
                           StartExecution(name=<job_id>) -> state machine (workflow.py)
    state machine: [Distributed Map of encoder | audio] -> merger -> EventBridge event
                   any failure -> failure Lambda -> Fail
    output bucket <job_id>/: hls/, dash/, thumbnails, manifest.json

The S3 trigger is set on the bucket resource itself (``NotificationConfiguration``)
with a ``AWS::Lambda::Permission`` for s3.amazonaws.com, not with
``bucket.add_event_notification``: that helper deploys a hidden custom resource
(``Custom::S3BucketNotifications`` and its Lambda) which LocalStack's free edition
skips and cdk-nag flags. S3 checks that it may invoke the function when the
notification is configured, so the bucket must depend on the permission; the
permission's ``SourceArn`` and the splitter's environment and policy therefore
name the input bucket by its explicit, stack-derived name instead of referring to
the bucket resource. The graph stays acyclic:
bucket -> permission -> splitter -> role/policy (names only).
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, CfnParameter, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import packaging
from infra.config import DEFAULT_MAX_CONCURRENCY, PipelineConfig
from infra.functions import PipelineFunctions
from infra.monitoring import Monitoring
from infra.storage import Storage
from infra.workflow import TranscodeWorkflow

S3_TRIGGER_EVENT = "s3:ObjectCreated:*"


class VideoTranscodingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        assets: packaging.LambdaAssets | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("description", "vtp: serverless video transcoding pipeline (S3 -> Lambda -> Step Functions)")
        super().__init__(scope, construct_id, **kwargs)
        if assets is None:
            assets = packaging.build_assets(bundle_dependencies=not config.skip_dependency_bundle)

        max_concurrency = CfnParameter(
            self,
            "MaxConcurrency",
            type="Number",
            default=DEFAULT_MAX_CONCURRENCY,
            min_value=1,
            max_value=10000,
            description="Most chunks encoded at once per job (Distributed Map MaxConcurrency). "
            "Keep it below the account's Lambda concurrency (1,000 by default).",
        )

        self.storage = Storage(self, "Storage", destroy_on_delete=config.destroy_on_delete)
        self.functions = PipelineFunctions(
            self,
            "Functions",
            storage=self.storage,
            code_dir=assets.code_dir,
            layer_dir=assets.layer_dir,
            log_level=config.log_level,
            fault_injection=config.fault_injection,
            encoder_memory_mb=config.encoder_memory_mb,
            settings=dict(config.settings),
        )
        fns = self.functions.functions
        self.workflow = TranscodeWorkflow(
            self,
            "Workflow",
            storage=self.storage,
            functions=fns,
            max_concurrency=max_concurrency.value_as_number,
        )
        state_machine = self.workflow.state_machine

        # The splitter starts the workflow. The state machine refers to the other four
        # functions only, so splitter -> state machine adds no cycle.
        splitter = fns["Splitter"]
        splitter.add_environment("STATE_MACHINE_ARN", state_machine.state_machine_arn)
        self.functions.roles["Splitter"].add_to_policy(
            iam.PolicyStatement(
                sid="StartJobExecution",
                actions=["states:StartExecution"],
                resources=[state_machine.state_machine_arn],
            )
        )

        self._configure_trigger(splitter)
        self.monitoring = Monitoring(self, "Monitoring", state_machine=state_machine, functions=fns, alarm_email=config.alarm_email)

        for output_id, value, description in (
            ("InputBucketName", self.storage.input_bucket.bucket_name, "Upload videos here"),
            ("OutputBucketName", self.storage.output_bucket.bucket_name, "Renditions: <job_id>/hls, <job_id>/dash, manifest.json"),
            ("WorkBucketName", self.storage.work_bucket.bucket_name, "Intermediate files (jobs/<job_id>/), expire after 7 days"),
            ("JobsTableName", self.storage.jobs_table.table_name, "Job records (PK job_id)"),
            ("StateMachineArn", state_machine.state_machine_arn, "The per-job workflow; executions are named after the job id"),
            ("AlarmTopicArn", self.monitoring.topic.topic_arn, "SNS topic of the pipeline's alarms"),
        ):
            CfnOutput(self, output_id, value=value, description=description)

    def _configure_trigger(self, splitter: lambda_.Function) -> None:
        """ObjectCreated:* on the input bucket -> splitter, without a custom resource and without a cycle."""
        permission = lambda_.CfnPermission(
            self,
            "InputBucketInvokesSplitter",
            action="lambda:InvokeFunction",
            function_name=splitter.function_arn,
            principal="s3.amazonaws.com",
            source_arn=self.storage.input_bucket_arn,  # built from the bucket's name: no reference
            source_account=Aws.ACCOUNT_ID,
        )
        cfn_bucket: s3.CfnBucket = self.storage.input_bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            lambda_configurations=[
                s3.CfnBucket.LambdaConfigurationProperty(event=S3_TRIGGER_EVENT, function=splitter.function_arn)
            ]
        )
        cfn_bucket.add_resource_dependency(permission)  # S3 validates the destination when it saves the configuration
