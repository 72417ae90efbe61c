"""The stack: wires storage, intake, functions, workflow, the failure paths and monitoring.

::

    upload -> input bucket (versioned) --ObjectCreated:*--> UploadsQueue --(event source mapping)--> splitter
                 splitter: claim the job (lease, attempt) -> jobs table; probe, validate, plan ->
                           work bucket jobs/<job_id>/; StartExecution(name=<job_id>-<attempt>);
                           too many jobs running: the upload goes back to the queue (it waits);
                           a refused input -> failure function (async)
    state machine: a fitted ladder (analysis_key in the input): Distributed Map of analysers ->
                   ladder function (fitted plan into job.json); then Distributed Map of encoders ->
                   merger -> TranscodeJobCompleted; any caught failure -> failure function -> Fail
    Step Functions Execution Status Change (FAILED, TIMED_OUT, ABORTED) of this state machine
                   --EventBridge rule--> failure function
    failure function: job FAILED once, partial output removed, FAILED manifest, TranscodeJobFailed
    watchdog (every 10 min): RUNNING jobs' age -> JobsOverdue; repairs jobs whose execution ended unnoticed
    output bucket <job_id>/: hls/, dash/, thumbnails, manifest.json

Stack parameters (caps; the README's "Deploying to AWS" lists the account limits they must
respect): MaxConcurrency (chunks at once per job), MaxRunningJobs (executions at once;
0 = no cap), EncoderReservedConcurrency (0 = no reservation), EncoderMemoryMB,
SplitterConcurrency (uploads probed at once), OverdueJobMinutes (the JobsOverdue alarm).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, CfnParameter, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from infra import packaging
from infra.config import (
    DEFAULT_ENCODER_RESERVED_CONCURRENCY, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RUNNING_JOBS,
    DEFAULT_OVERDUE_JOB_MINUTES, DEFAULT_SPLITTER_CONCURRENCY, PipelineConfig,
)
from infra.functions import PipelineFunctions
from infra.intake import Intake
from infra.monitoring import Monitoring
from infra.nag import acknowledge_wildcard_resources
from infra.storage import Storage
from infra.workflow import TranscodeWorkflow
from vtp import contract

WATCHDOG_RATE = Duration.minutes(10)
# A job RUNNING this long after its execution ended is handed to the failure path by the
# watchdog (the execution-status rule normally does it within seconds).
REPAIR_AFTER = Duration.minutes(15)


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
        kwargs.setdefault("description", "vtp: serverless video transcoding pipeline (S3 -> SQS -> Lambda -> Step Functions)")
        super().__init__(scope, construct_id, **kwargs)
        if assets is None:
            assets = packaging.build_assets(bundle_dependencies=not config.skip_dependency_bundle)
        self.parameters = self._parameters(config)
        p = self.parameters

        self.storage = Storage(self, "Storage", destroy_on_delete=config.destroy_on_delete)
        self.intake = Intake(
            self, "Intake", storage=self.storage, splitter_timeout_s=config.splitter_timeout_s,
            key_prefix=config.key_prefix, key_suffix=config.key_suffix,
        )
        self.functions = PipelineFunctions(
            self,
            "Functions",
            storage=self.storage,
            code_dir=assets.code_dir,
            layer_dir=assets.layer_dir,
            log_level=config.log_level,
            fault_injection=config.fault_injection,
            encoder_memory_mb=p["EncoderMemoryMB"].value_as_number,
            encoder_reserved_concurrency=p["EncoderReservedConcurrency"].value_as_number,
            splitter_timeout_s=config.splitter_timeout_s,
            settings=dict(config.settings),
        )
        fns = self.functions.functions
        self.workflow = TranscodeWorkflow(
            self,
            "Workflow",
            storage=self.storage,
            functions=fns,
            max_concurrency=p["MaxConcurrency"].value_as_number,
        )
        state_machine = self.workflow.state_machine

        self._wire_splitter(config)
        self._wire_failure_paths()
        self._wire_watchdog()
        self.monitoring = Monitoring(
            self, "Monitoring", state_machine=state_machine, functions=fns,
            dead_letter_queue=self.intake.dead_letter_queue, alarm_email=config.alarm_email,
        )

        for output_id, value, description in (
            (contract.OUTPUT_INPUT_BUCKET, self.storage.input_bucket.bucket_name, "Upload videos here (versioned)"),
            (contract.OUTPUT_OUTPUT_BUCKET, self.storage.output_bucket.bucket_name, "Renditions: <job_id>/hls, <job_id>/dash, manifest.json"),
            (contract.OUTPUT_WORK_BUCKET, self.storage.work_bucket.bucket_name, "Intermediate files (jobs/<job_id>/), expire after 7 days"),
            (contract.OUTPUT_JOBS_TABLE, self.storage.jobs_table.table_name, "Job records (PK job_id; indexes by_input, by_status)"),
            (contract.OUTPUT_STATE_MACHINE, state_machine.state_machine_arn, "The per-job workflow; executions are named <job_id>-<attempt>"),
            (contract.OUTPUT_ALARM_TOPIC, self.monitoring.topic.topic_arn, "SNS topic of the pipeline's alarms"),
            (contract.OUTPUT_UPLOADS_QUEUE, self.intake.uploads_queue.queue_url, "Upload notifications waiting for the splitter"),
            (contract.OUTPUT_DEAD_LETTER_QUEUE, self.intake.dead_letter_queue.queue_url, "Work that failed all its retries (alarmed; redrive after a fix)"),
        ):
            CfnOutput(self, output_id, value=value, description=description)

    # ------------------------------------------------------------------ parameters

    def _parameters(self, config: PipelineConfig) -> dict[str, CfnParameter]:
        def number(name: str, default: int, low: int, high: int, description: str) -> CfnParameter:
            return CfnParameter(self, name, type="Number", default=default, min_value=low, max_value=high,
                                description=description)

        return {
            "MaxConcurrency": number(
                "MaxConcurrency", DEFAULT_MAX_CONCURRENCY, 1, 10000,
                "Most chunks encoded at once per job (Distributed Map MaxConcurrency). MaxRunningJobs x "
                "MaxConcurrency should stay within the encoder's reserved concurrency, or the account's "
                "Lambda concurrency (1,000 by default, as low as 10 on new accounts); beyond it encoders are "
                "throttled and retried.",
            ),
            "MaxRunningJobs": number(
                "MaxRunningJobs", DEFAULT_MAX_RUNNING_JOBS, 0, 10000,
                "Most jobs (workflow executions) running at once; further uploads wait in the uploads queue. "
                "0: no cap.",
            ),
            "EncoderReservedConcurrency": number(
                "EncoderReservedConcurrency", DEFAULT_ENCODER_RESERVED_CONCURRENCY, 0, 10000,
                "Concurrency reserved for (and capping) the encoder function. 0: no reservation. The account "
                "must keep at least 100 unreserved, so a reservation needs an account concurrency of at least "
                "100 + this value.",
            ),
            "EncoderMemoryMB": number(
                "EncoderMemoryMB", config.encoder_memory_mb, 128, 10240,
                "Encoder memory (CPU scales with it: 1,769 MB = 1 vCPU, 10,240 MB = 6 vCPUs). 3008 deploys on "
                "any account; 10240 encodes a chunk about 3x faster for about the same price where the "
                "account's Lambda memory quota allows it.",
            ),
            "SplitterConcurrency": number(
                "SplitterConcurrency", DEFAULT_SPLITTER_CONCURRENCY, 2, 1000,
                "Most uploads probed at once (the uploads queue's event source MaximumConcurrency, 2-1000).",
            ),
            "OverdueJobMinutes": number(
                "OverdueJobMinutes", DEFAULT_OVERDUE_JOB_MINUTES, 10, 100000,
                "A job RUNNING longer than this raises the JobsOverdue alarm.",
            ),
        }

    # ------------------------------------------------------------------ wiring

    def _execution_arns(self) -> str:
        """executions of this state machine (execution:<name>:<execution name>)."""
        return self.format_arn(
            service="states", resource="execution",
            resource_name=f"{self.workflow.state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _allow(self, name: str, sid: str, actions: list[str], resources: list[str], reason: str | None = None,
               conditions: dict | None = None) -> None:
        role = self.functions.roles[name]
        role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions))
        if reason:
            acknowledge_wildcard_resources(role, resources, reason)

    def _wire_splitter(self, config: PipelineConfig) -> None:
        """The uploads queue feeds the splitter; it starts, lists and describes executions of
        the state machine, sends a refused input to the failure function, and sends an
        upload back to the queue when every job slot is taken."""
        splitter = self.functions.functions["Splitter"]
        machine = self.workflow.state_machine
        failure = self.functions.functions["Failure"]
        queue = self.intake.uploads_queue
        splitter.add_event_source(event_sources.SqsEventSource(
            queue, batch_size=1, report_batch_item_failures=True,
            max_concurrency=self.parameters["SplitterConcurrency"].value_as_number,
        ))
        for key, value in (
            (contract.ENV_STATE_MACHINE_ARN, machine.state_machine_arn),
            (contract.ENV_FAILURE_FUNCTION, failure.function_name),
            (contract.ENV_UPLOADS_QUEUE_URL, queue.queue_url),
            (contract.ENV_MAX_RUNNING_JOBS, self.parameters["MaxRunningJobs"].value_as_string),
            (contract.ENV_LEASE_S, str(self.intake.lease_s)),
            (contract.ENV_QUEUE_RETRY_DELAY_S, str(config.queue_retry_delay_s)),
        ):
            splitter.add_environment(key, value)
        self._allow("Splitter", "StartAndCountExecutions", ["states:StartExecution", "states:ListExecutions"],
                    [machine.state_machine_arn])
        self._allow("Splitter", "DescribeOwnExecutions", ["states:DescribeExecution"], [self._execution_arns()],
                    "Executions of this one state machine, named <job_id>-<attempt> at run time: the "
                    "splitter looks up an earlier attempt's execution before starting its own.")
        self._allow("Splitter", "RejectInput", ["lambda:InvokeFunction"], [failure.function_arn])
        self._allow("Splitter", "RequeueUpload", ["sqs:SendMessage"], [queue.queue_arn])

    def _wire_failure_paths(self) -> None:
        """Execution-level failures -> the failure function; its own failed events -> the DLQ."""
        failure = self.functions.functions["Failure"]
        dead_letters = self.intake.dead_letter_queue
        machine = self.workflow.state_machine
        failure.add_environment(contract.ENV_EVENT_BUS, contract.DEFAULT_EVENT_BUS)
        bus_arn = self.format_arn(service="events", resource="event-bus", resource_name=contract.DEFAULT_EVENT_BUS)
        self._allow("Failure", "PublishJobFailed", ["events:PutEvents"], [bus_arn],
                    conditions={"StringEquals": {"events:source": contract.EVENT_SOURCE}})
        # Lambda retries a failed asynchronous event twice, then parks it in the dead-letter queue.
        failure.configure_async_invoke(
            retry_attempts=2, max_event_age=Duration.hours(6), on_failure=destinations.SqsDestination(dead_letters),
        )
        self.execution_failed_rule = events.Rule(
            self,
            "ExecutionFailedRule",
            description="vtp: an execution of the transcoding workflow ended FAILED, TIMED_OUT or ABORTED -> failure function",
            event_pattern=events.EventPattern(
                source=[contract.STATES_EVENT_SOURCE],
                detail_type=[contract.STATES_STATUS_CHANGE],
                detail={"status": list(contract.EXECUTION_FAILURES), "stateMachineArn": [machine.state_machine_arn]},
            ),
            targets=[targets.LambdaFunction(
                failure, dead_letter_queue=dead_letters, retry_attempts=20, max_event_age=Duration.hours(6),
            )],
        )

    def _wire_watchdog(self) -> None:
        watchdog = self.functions.functions["Watchdog"]
        failure = self.functions.functions["Failure"]
        machine = self.workflow.state_machine
        for key, value in (
            (contract.ENV_STATE_MACHINE_ARN, machine.state_machine_arn),
            (contract.ENV_FAILURE_FUNCTION, failure.function_name),
            (contract.ENV_OVERDUE_AFTER_MINUTES, self.parameters["OverdueJobMinutes"].value_as_string),
            (contract.ENV_REPAIR_AFTER_S, str(int(REPAIR_AFTER.to_seconds()))),
        ):
            watchdog.add_environment(key, value)
        self._allow("Watchdog", "DescribeOwnExecutions", ["states:DescribeExecution"], [self._execution_arns()],
                    "Executions of this one state machine, named <job_id>-<attempt> at run time: the "
                    "watchdog checks the execution of each RUNNING job.")
        self._allow("Watchdog", "RepairJob", ["lambda:InvokeFunction"], [failure.function_arn])
        self.watchdog_rule = events.Rule(
            self, "WatchdogSchedule", description="vtp: check the RUNNING jobs",
            schedule=events.Schedule.rate(WATCHDOG_RATE), targets=[targets.LambdaFunction(watchdog, retry_attempts=2)],
        )
