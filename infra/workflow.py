"""Workflow: the Standard state machine that the splitter starts once per job.

::

    execution input {job_id, work_bucket, chunks_key, analysis_key, source: {bucket, key}}
      |
      FittedLadder (Choice) ---------- $.analysis_key "" or missing: a fixed ladder ---------+
      |  $.analysis_key names the analysis items: a fitted ladder                           |
      AnalyseChunks (Distributed Map, STANDARD children)                                    |
      |   ItemReader  s3://<work>/<$.analysis_key>   (items [{"chunk": {...}}, ...])        |
      |   ItemSelector {job_id, work_bucket, chunk: $$.Map.Item.Value.chunk}                 |
      |   AnalyseChunk -> analyser Lambda {job_id, work_bucket, chunk, attempt, entered_at}: |
      |                   a few of the chunk's frames trial-encoded at every candidate size  |
      |                   and rate factor and scored (VMAF) -> jobs/<job_id>/analysis/       |
      |                   <chunk>.json; returns a summary                                    |
      |   ResultWriter and ResultSelector as EncodeChunks' -> $.analyse                      |
      FitLadder -> ladder Lambda {job_id}: the analyses -> the fitted rungs and each         |
      |            chunk's rate factors, written into job.json (the encoders read it)        |
      |            -> $.fit                                                                  |
      |<-------------------------------------------------------------------------------------+
      EncodeChunks (Distributed Map, STANDARD children)
      |   ItemReader  s3://<work>/<$.chunks_key>   (items [{"chunk": {...}}, ...])
      |   ItemSelector {job_id, work_bucket, chunk: $$.Map.Item.Value.chunk}
      |   EncodeChunk -> encoder Lambda {job_id, work_bucket, chunk, attempt, entered_at}: its
      |                  range of the source, writes its final segments, returns its facts
      |   ResultWriter s3://<work>/jobs/map-results/<map run id>/... (the facts, kept in S3)
      |   ResultSelector keeps {chunks: <ResultWriterDetails>} at $.encode
      ReworkFitted (Choice) ------------------ a fixed ladder (as FittedLadder) --------------+
      |  a fitted ladder                                                                    |
      PlanRework -> ladder Lambda {job_id, action: plan_rework}: the chunks' facts -> the    |
      |             chunk-rungs that missed their target or peaked, written as               |
      |             jobs/<job_id>/rework_chunks.json ([{"chunk", "rework"}, ...])             |
      |             -> $.rework {rework_key, items, chunk_rungs}                              |
      AnyRework (Choice) --------------------- $.rework.items == 0 --------------------------+
      |  $.rework.items > 0                                                                 |
      ReworkChunks (Distributed Map, STANDARD children, as EncodeChunks)                    |
      |   ItemReader  s3://<work>/<$.rework.rework_key>                                      |
      |   ReworkChunk -> encoder Lambda {..., chunk, rework}: those rungs of the chunk again  |
      |                  (video only) over their segments; the chunk's facts with them       |
      |                  applied -> jobs/<job_id>/reworked/<chunk>.json -> $.reworked         |
      |<-------------------------------------------------------------------------------------+
      MergeAndPublish -> merger Lambda: facts (a chunk's reworked ones where there are some,
      |                  and the analyses) -> playlists, MPD, manifest
      |
      PublishCompletion (EventBridge PutEvents, default bus, source vtp.pipeline,
      |   detail-type TranscodeJobCompleted)
      JobSucceeded (Succeed)

    Catch States.ALL -> $.error:
      AnalyseChunks, FitLadder -> AnalysisFailed (Pass: $.stage = "analyse") -> MarkJobFailed
      PlanRework, ReworkChunks -> ReworkFailed (Pass: $.stage = "rework") ---> MarkJobFailed
      EncodeChunks, MergeAndPublish ---------------------------------------> MarkJobFailed
      MarkJobFailed -> failure Lambda -> JobFailed (Fail, error/cause from $.error)

Retries on every Lambda task: errors named ``InputError`` (bad input: retrying cannot
help) are never retried; throttling (``Lambda.TooManyRequestsException``: 14 attempts,
2 s doubling up to 120 s, about 18 minutes at most, 9 on average with full jitter:
longer than a burst of jobs holds the encoder's reserved concurrency) and the transient
Lambda service errors (6 attempts) are retried with exponential backoff and full jitter;
the encoder (encoding or reworking), the analyser and the ladder function (fitting or
planning the rework), which overwrite their outputs and so are idempotent, also retry
``States.TaskFailed`` twice. Step Functions takes the first
retrier whose ErrorEquals matches, so the InputError retrier (MaxAttempts 0) comes first. PublishCompletion retries
any error 6 times (it is not caught: a COMPLETE job is never failed; an execution that
fails there is seen by the execution-status rule, which leaves a COMPLETE job alone).

Failures of the execution itself (the 6 h timeout, a manual stop, a failure state that
exhausted its retries) never pass through MarkJobFailed: the stack's EventBridge rule
on "Step Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED) of this state
machine sends them to the same failure function (see stack.py).

The role's X-Ray and log-delivery actions, which take no resource, are in a policy of
their own (``ObservabilityPolicy``), so that its acknowledged ``Resource: *`` covers
those actions only.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.nag import acknowledge, acknowledge_wildcard_resources
from infra.storage import WORK_PREFIX, Storage
from vtp import contract

EVENT_SOURCE = contract.EVENT_SOURCE
EVENT_DETAIL_TYPE = contract.EVENT_JOB_COMPLETED
MAP_RESULTS_PREFIX = f"{WORK_PREFIX}map-results"
INPUT_ERROR = contract.INPUT_ERROR
THROTTLED = "Lambda.TooManyRequestsException"
TRANSIENT_LAMBDA_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
WORKFLOW_TIMEOUT = Duration.hours(6)
THROTTLE_ATTEMPTS = 14
THROTTLE_MAX_DELAY = Duration.seconds(120)


def add_retries(task: sfn.TaskStateBase, *, retry_task_failures: bool) -> None:
    """InputError: never; throttling and transient Lambda errors: backoff + full jitter; TaskFailed: optional."""
    task.add_retry(errors=[INPUT_ERROR], max_attempts=0)
    # Throttling is expected when several jobs share the encoder's reserved concurrency (or the
    # account's): wait out the burst (up to about 18 minutes, 9 on average with jitter).
    task.add_retry(
        errors=[THROTTLED],
        interval=Duration.seconds(2),
        backoff_rate=2,
        max_attempts=THROTTLE_ATTEMPTS,
        max_delay=THROTTLE_MAX_DELAY,
        jitter_strategy=sfn.JitterType.FULL,
    )
    task.add_retry(
        errors=TRANSIENT_LAMBDA_ERRORS,
        interval=Duration.seconds(2),
        backoff_rate=2,
        max_attempts=6,
        max_delay=Duration.seconds(30),
        jitter_strategy=sfn.JitterType.FULL,
    )
    if retry_task_failures:
        task.add_retry(
            errors=["States.TaskFailed"],
            interval=Duration.seconds(5),
            backoff_rate=2,
            max_attempts=2,
            jitter_strategy=sfn.JitterType.FULL,
        )


class TranscodeWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        functions: dict[str, lambda_.IFunction],
        max_concurrency: int | float,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        def invoke(state_id: str, function_name: str, **kwargs) -> tasks.LambdaInvoke:
            return tasks.LambdaInvoke(
                self,
                state_id,
                lambda_function=functions[function_name],
                payload_response_only=True,  # the handler's return value, not Lambda's envelope
                retry_on_service_exceptions=False,  # replaced by add_retries (with jitter)
                **kwargs,
            )

        def chunk_map(map_id: str, task_id: str, function_name: str, *, items_key: str, result_path: str,
                      task_comment: str, map_comment: str, item_fields: tuple[str, ...] = ()) -> sfn.DistributedMap:
            """A Distributed Map over a JSON list of {"chunk": ...} items in the work bucket, one
            Lambda task per chunk (retried on task failures: the functions overwrite their outputs).
            `item_fields`: more fields of each item passed on to the function as they are."""
            extra_payload = {name: sfn.JsonPath.object_at(f"$.{name}") for name in item_fields}
            extra_items = {name: sfn.JsonPath.object_at(f"$$.Map.Item.Value.{name}") for name in item_fields}
            task = invoke(
                task_id,
                function_name,
                comment=task_comment,
                # The Map item plus the retry count (0 on the first attempt), for the timeline,
                # logs and the test-only fault injection (VTP_FAIL_FIRST_ATTEMPT_CHUNK), and when
                # the task was entered (the wait before the function ran: queueing, cold start).
                payload=sfn.TaskInput.from_object(
                    {
                        "job_id": sfn.JsonPath.string_at("$.job_id"),
                        "work_bucket": sfn.JsonPath.string_at("$.work_bucket"),
                        "chunk": sfn.JsonPath.object_at("$.chunk"),
                        "attempt": sfn.JsonPath.number_at("$$.State.RetryCount"),
                        "entered_at": sfn.JsonPath.string_at("$$.State.EnteredTime"),
                        **extra_payload,
                    }
                ),
            )
            add_retries(task, retry_task_failures=True)
            chunks = sfn.DistributedMap(
                self,
                map_id,
                comment=map_comment,
                item_reader=sfn.S3JsonItemReader(bucket=storage.work_bucket, key=sfn.JsonPath.string_at(items_key)),
                item_selector={
                    "job_id": sfn.JsonPath.string_at("$.job_id"),
                    "work_bucket": sfn.JsonPath.string_at("$.work_bucket"),
                    "chunk": sfn.JsonPath.object_at("$$.Map.Item.Value.chunk"),  # items are {"chunk": {...}}
                    **extra_items,
                },
                result_writer_v2=sfn.ResultWriterV2(bucket=storage.work_bucket, prefix=MAP_RESULTS_PREFIX),
                # The Map's output is only where its results went ({MapRunArn, ResultWriterDetails}).
                result_selector={"chunks": sfn.JsonPath.object_at("$.ResultWriterDetails")},
                result_path=result_path,
                max_concurrency=max_concurrency,
                map_execution_type=sfn.StateMachineType.STANDARD,  # a chunk may take over 5 minutes
                label=map_id,
            )
            chunks.item_processor(task)
            return chunks

        # --- per chunk: the encoder, inside a Distributed Map --------------------------
        encode_chunks = chunk_map(
            "EncodeChunks", "EncodeChunk", "Encoder", items_key="$.chunks_key", result_path="$.encode",
            task_comment="Encode one chunk into every video rung.",
            map_comment="One child execution per chunk listed in jobs/<job_id>/chunks.json.",
        )

        # --- a fitted ladder: the analysis map, then the fit -----------------------------
        analyse_chunks = chunk_map(
            "AnalyseChunks", "AnalyseChunk", "Analyser", items_key="$.analysis_key", result_path="$.analyse",
            task_comment="Trial-encode a few frames of one chunk at every candidate size and rate factor; score them.",
            map_comment="A fitted ladder: one child execution per chunk listed in jobs/<job_id>/analysis_chunks.json.",
        )

        fit_ladder = invoke(
            "FitLadder",
            "Ladder",
            comment="The chunks' analyses -> the fitted rungs and each chunk's rate factors, into job.json.",
            payload=sfn.TaskInput.from_object({"job_id": sfn.JsonPath.string_at("$.job_id")}),
            result_path="$.fit",
        )
        add_retries(fit_ladder, retry_task_failures=True)

        # --- a fitted ladder: after the encoders, the rework plan, then the rework map -------
        plan_rework = invoke(
            "PlanRework",
            "Ladder",
            comment="The chunks' facts -> the chunk-rungs to encode again, into rework_chunks.json.",
            payload=sfn.TaskInput.from_object(
                {"job_id": sfn.JsonPath.string_at("$.job_id"), contract.ACTION_FIELD: contract.ACTION_PLAN_REWORK}
            ),
            result_path="$.rework",
        )
        add_retries(plan_rework, retry_task_failures=True)
        rework_chunks = chunk_map(
            "ReworkChunks", "ReworkChunk", "Encoder", items_key="$.rework.rework_key", result_path="$.reworked",
            task_comment="Encode one chunk's missed rungs again (video only); keep its facts with them applied.",
            map_comment=f"A fitted ladder: one child execution per chunk listed in jobs/<job_id>/{contract.REWORK_ITEMS}.",
            item_fields=(contract.REWORK_FIELD,),
        )

        # --- publish ---------------------------------------------------------------------
        merge = invoke(
            "MergeAndPublish",
            "Merger",
            comment="The chunks' facts -> playlists, MPD, thumbnail track, manifest.json last, job COMPLETE.",
            result_path="$.merge",
        )
        add_retries(merge, retry_task_failures=False)

        publish = tasks.EventBridgePutEvents(
            self,
            "PublishCompletion",
            comment="Tell subscribers the job's outputs are complete.",
            entries=[
                tasks.EventBridgePutEventsEntry(
                    source=EVENT_SOURCE,
                    detail_type=EVENT_DETAIL_TYPE,
                    detail=sfn.TaskInput.from_object(
                        {
                            "job_id": sfn.JsonPath.string_at("$.job_id"),
                            "output_bucket": storage.output_bucket.bucket_name,
                            "manifest_key": sfn.JsonPath.format("{}/manifest.json", sfn.JsonPath.string_at("$.job_id")),
                        }
                    ),
                )
            ],
            result_path=sfn.JsonPath.DISCARD,
        )
        publish.add_retry(
            errors=[sfn.Errors.ALL],
            interval=Duration.seconds(2),
            backoff_rate=2,
            max_attempts=6,
            max_delay=Duration.seconds(30),
            jitter_strategy=sfn.JitterType.FULL,
        )

        # --- failure path ----------------------------------------------------------------
        mark_failed = invoke(
            "MarkJobFailed",
            "Failure",
            comment="Job FAILED with its cause, FAILED manifest, partial output removed.",
            result_path=sfn.JsonPath.DISCARD,  # keep $.error for the Fail state
        )
        add_retries(mark_failed, retry_task_failures=False)
        job_failed = sfn.Fail(
            self,
            "JobFailed",
            comment="The execution fails with the error that was caught.",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        failure_path = mark_failed.next(job_failed)
        for state in (encode_chunks, merge):
            state.add_catch(failure_path, errors=[sfn.Errors.ALL], result_path="$.error")
        # The failure function names the stage from the state ($.encode: the merge failed, else
        # the encode); a failed analysis or fit says so itself.
        def failed_in(name: str, stage: str, comment: str, *states) -> None:
            said = sfn.Pass(self, name, comment=comment, result=sfn.Result.from_string(stage),
                            result_path="$.stage").next(failure_path)
            for state in states:
                state.add_catch(said, errors=[sfn.Errors.ALL], result_path="$.error")

        failed_in("AnalysisFailed", "analyse", "The job failed in its analysis or fit: the failed stage is analyse.",
                  analyse_chunks, fit_ladder)
        failed_in("ReworkFailed", "rework",
                  "The job failed in planning or encoding its rework: the failed stage is rework.",
                  plan_rework, rework_chunks)

        # Executions started by a splitter that predates the fitted ladder have no analysis_key.
        fitted = sfn.Condition.and_(
            sfn.Condition.is_present("$.analysis_key"),
            sfn.Condition.not_(sfn.Condition.string_equals("$.analysis_key", "")),
        )
        merge.next(publish).next(sfn.Succeed(self, "JobSucceeded"))
        rework_chunks.next(merge)
        any_rework = (
            sfn.Choice(self, "AnyRework", comment="Chunk-rungs to encode again: the rework map; none: publish.")
            .when(sfn.Condition.number_greater_than("$.rework.items", 0), rework_chunks)
            .otherwise(merge)
        )
        plan_rework.next(any_rework)
        encode_chunks.next(
            sfn.Choice(self, "ReworkFitted", comment="A fitted ladder (as FittedLadder) plans a rework of what missed.")
            .when(fitted, plan_rework)
            .otherwise(merge)
        )
        analyse_chunks.next(fit_ladder).next(encode_chunks)
        definition = (
            sfn.Choice(self, "FittedLadder", comment="A fitted ladder (analysis items named) is analysed and fitted first.")
            .when(fitted, analyse_chunks)
            .otherwise(encode_chunks)
        )

        # /aws/vendedlogs/ keeps Step Functions' log delivery clear of the CloudWatch Logs resource-policy
        # size limit. The name is fixed, so the group goes with the stack (a retained one would block
        # the next deploy of the same stack name).
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{stack.stack_name}-transcode",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=WORKFLOW_TIMEOUT,
            comment="vtp: analyse chunks and fit the ladder (a fitted ladder), encode chunks, rework what missed "
                    "(a fitted ladder; Distributed Maps), publish the playlists and the manifest, announce.",
        )
        self._observability(self.state_machine)
        self._acknowledge_role_findings(storage, functions)

    def _observability(self, state_machine: sfn.StateMachine) -> None:
        """X-Ray tracing and full logging, set on the resource, with the role's actions for them
        in a policy of their own (what ``tracing_enabled``/``logs`` would add to the role's
        default policy, beside the Lambda and S3 grants)."""
        cfn: sfn.CfnStateMachine = state_machine.node.default_child  # type: ignore[assignment]
        cfn.tracing_configuration = sfn.CfnStateMachine.TracingConfigurationProperty(enabled=True)
        cfn.logging_configuration = sfn.CfnStateMachine.LoggingConfigurationProperty(
            level="ALL",
            include_execution_data=True,
            destinations=[sfn.CfnStateMachine.LogDestinationProperty(
                cloud_watch_logs_log_group=sfn.CfnStateMachine.CloudWatchLogsLogGroupProperty(
                    log_group_arn=self.log_group.log_group_arn
                )
            )],
        )
        policy = iam.Policy(
            self,
            "ObservabilityPolicy",
            roles=[state_machine.role],
            statements=[
                iam.PolicyStatement(
                    sid="XRayTracing",
                    actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                             "xray:GetSamplingTargets"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="VendedLogDelivery",
                    actions=["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                             "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
                             "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"],
                    resources=["*"],
                ),
            ],
        )
        # Step Functions checks the log-delivery permissions when it creates the state machine.
        cfn.add_resource_dependency(policy.node.default_child)
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing and CloudWatch Logs vended-log delivery (logs:CreateLogDelivery, "
            "logs:DescribeResourcePolicies, ...), the only actions of this policy, do not support "
            "resource-level permissions.",
        )

    def _acknowledge_role_findings(self, storage: Storage, functions: dict[str, lambda_.IFunction]) -> None:
        """The wildcards CDK itself grants the state machine role, each with its reason."""
        role = self.state_machine.role
        for name in ("Analyser", "Ladder", "Encoder", "Merger", "Failure"):
            acknowledge_wildcard_resources(
                role,
                [f"{functions[name].function_arn}:*"],
                "LambdaInvoke grants the function and its versions/aliases (<function ARN>:*); "
                "only this one function.",
            )
        acknowledge_wildcard_resources(
            role,
            [f"arn:{Stack.of(self).partition}:s3:::{storage.work_bucket.bucket_name}/*"],
            "The Distributed Maps' ItemReaders (s3:GetObject of jobs/<job_id>/chunks.json, "
            "analysis_chunks.json and rework_chunks.json) and ResultWriters "
            "(s3:PutObject under jobs/map-results/) are granted by CDK on the work bucket's objects; the "
            "key comes from the execution input, the result keys from the map run id.",
        )
        # CDK's DistributedMapPolicy lets the state machine describe/stop/redrive its own Map
        # child executions, whose names are made at run time (execution:<name>:*).
        map_policy = self.state_machine.node.try_find_child("DistributedMapPolicy")
        if map_policy is not None:
            document = Stack.of(self).resolve(map_policy.document)  # type: ignore[attr-defined]
            for statement in document.get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if all(action.startswith("states:") for action in actions):
                    resources = statement["Resource"]
                    acknowledge_wildcard_resources(
                        map_policy,
                        resources if isinstance(resources, list) else [resources],
                        "Distributed Map child executions of this one state machine get their names at "
                        "run time (execution:<state machine>:*, <state machine>/AnalyseChunks:*, "
                        "<state machine>/EncodeChunks:* and <state machine>/ReworkChunks:*).",
                    )
