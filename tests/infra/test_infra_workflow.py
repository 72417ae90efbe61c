"""The state machine: Distributed Map of encoders -> merger -> event, failures -> failure Lambda."""

from __future__ import annotations

import pytest

TRANSIENT = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}


@pytest.fixture(scope="module")
def asl(synth):
    return synth.definition


def _fn(synth, name):
    return f"GETATT:{synth.function_ids()[name]}"


def test_standard_workflow_with_tracing_and_full_logging(synth):
    (machine_id, machine), = synth.of_type("AWS::StepFunctions::StateMachine").items()
    p = machine["Properties"]
    assert p["StateMachineType"] == "STANDARD"
    assert p["TracingConfiguration"] == {"Enabled": True}
    assert p["LoggingConfiguration"]["Level"] == "ALL" and p["LoggingConfiguration"]["IncludeExecutionData"] is True
    [destination] = p["LoggingConfiguration"]["Destinations"]
    group = synth.logical_id(synth.stack.workflow.log_group)
    assert destination == {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [group, "Arn"]}}}
    # Step Functions checks the log-delivery permissions at creation: the policy comes first.
    observability = synth.logical_id(synth.stack.workflow.node.find_child("ObservabilityPolicy"))
    assert observability in machine["DependsOn"]


def test_main_path_in_order(asl):
    states = asl["States"]
    assert asl["StartAt"] == "EncodeChunks"
    assert states["EncodeChunks"]["Next"] == "MergeAndPublish"
    assert states["MergeAndPublish"]["Next"] == "PublishCompletion"
    assert states["PublishCompletion"]["Next"] == "JobSucceeded"
    assert states["JobSucceeded"]["Type"] == "Succeed"


def test_only_where_the_map_wrote_its_results_is_kept(asl):
    encode_chunks = asl["States"]["EncodeChunks"]
    assert encode_chunks["ResultSelector"] == {"chunks.$": "$.ResultWriterDetails"}
    assert encode_chunks["ResultPath"] == "$.encode"


def test_distributed_map_reads_and_writes_the_work_bucket(synth, asl):
    work = synth.logical_id(synth.stack.storage.work_bucket)
    encode_chunks = asl["States"]["EncodeChunks"]
    assert encode_chunks["Type"] == "Map"
    assert encode_chunks["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = encode_chunks["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:getObject")
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {"Bucket": f"REF:{work}", "Key.$": "$.chunks_key"}
    writer = encode_chunks["ResultWriter"]
    assert writer["Resource"].endswith(":states:::s3:putObject")
    assert writer["Parameters"]["Bucket"] == f"REF:{work}"
    assert writer["Parameters"]["Prefix"].startswith("jobs/")
    assert encode_chunks["ItemSelector"] == {
        "job_id.$": "$.job_id",
        "work_bucket.$": "$.work_bucket",
        # chunks.json (written by the splitter) holds one {"chunk": {...}} item per chunk.
        "chunk.$": "$$.Map.Item.Value.chunk",
    }
    assert encode_chunks["MaxConcurrency"] == "REF:MaxConcurrency"
    encode_chunk = encode_chunks["ItemProcessor"]["States"]["EncodeChunk"]
    assert encode_chunk["Resource"] == _fn(synth, "Encoder")
    assert encode_chunk["Parameters"] == {
        "job_id.$": "$.job_id",
        "work_bucket.$": "$.work_bucket",
        "chunk.$": "$.chunk",
        "attempt.$": "$$.State.RetryCount",
        "entered_at.$": "$$.State.EnteredTime",
    }


def test_max_concurrency_is_a_stack_parameter(synth):
    parameter = synth.template["Parameters"]["MaxConcurrency"]
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 100
    assert parameter["MinValue"] == 1 and parameter["MaxValue"] == 10000


def _lambda_tasks(asl):
    states = dict(asl["States"])
    states.update(states["EncodeChunks"]["ItemProcessor"]["States"])
    return {name: s for name, s in states.items() if s["Type"] == "Task" and "events:putEvents" not in s["Resource"]}


def test_every_lambda_task_retries_transient_errors_with_full_jitter_but_never_input_errors(asl):
    tasks = _lambda_tasks(asl)
    assert set(tasks) == {"EncodeChunk", "MergeAndPublish", "MarkJobFailed"}
    for name, task in tasks.items():
        retries = task["Retry"]
        # First matching retrier wins: InputError must come first, with no attempts.
        assert retries[0] == {"ErrorEquals": ["InputError"], "MaxAttempts": 0}, name
        for error in TRANSIENT:
            (retrier,) = [r for r in retries if error in r["ErrorEquals"]]
            assert retrier["JitterStrategy"] == "FULL", (name, error)
            assert retrier["BackoffRate"] >= 2 and retrier["MaxAttempts"] >= 3, (name, error)
            assert retrier["MaxDelaySeconds"] <= 120, (name, error)
        (throttled,) = [r for r in retries if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        # Throttling outlasts a burst of jobs on the encoder's reserved concurrency: 2 s doubling
        # to 120 s, 14 attempts: at most about 18 minutes.
        assert throttled["MaxAttempts"] == 14 and throttled["MaxDelaySeconds"] == 120, name
        waits = [min(throttled["IntervalSeconds"] * throttled["BackoffRate"] ** n, 120) for n in range(14)]
        assert 15 * 60 < sum(waits) < 20 * 60
        task_failed = [r for r in retries if "States.TaskFailed" in r["ErrorEquals"]]
        if name == "EncodeChunk":  # idempotent: retried a couple of times
            assert len(task_failed) == 1 and task_failed[0]["MaxAttempts"] == 2
            assert task_failed[0]["JitterStrategy"] == "FULL"
        else:
            assert not task_failed, name
        assert not any("States.ALL" in r["ErrorEquals"] for r in retries)


def test_failures_are_caught_into_the_failure_function_then_fail(synth, asl):
    states = asl["States"]
    for name in ("EncodeChunks", "MergeAndPublish"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkJobFailed"}]
    mark_failed = states["MarkJobFailed"]
    assert mark_failed["Resource"] == _fn(synth, "Failure")
    assert mark_failed["ResultPath"] is None  # keeps $.error for the Fail state
    assert mark_failed["Next"] == "JobFailed"
    assert states["JobFailed"] == {
        "Type": "Fail",
        "Comment": states["JobFailed"].get("Comment"),
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }
    # The completion event is not caught: a COMPLETE job must never be marked FAILED. It is retried.
    assert "Catch" not in states["PublishCompletion"]
    [retry] = states["PublishCompletion"]["Retry"]
    assert retry["ErrorEquals"] == ["States.ALL"] and retry["MaxAttempts"] == 6 and retry["JitterStrategy"] == "FULL"


def test_merger_gets_the_execution_input_and_the_encode_summary(synth, asl):
    merge = asl["States"]["MergeAndPublish"]
    assert merge["Resource"] == _fn(synth, "Merger")
    assert "Parameters" not in merge and "InputPath" not in merge  # the whole state: input + $.encode
    assert merge["ResultPath"] == "$.merge"


def test_completion_event_goes_to_the_default_bus(asl):
    publish = asl["States"]["PublishCompletion"]
    assert publish["Resource"].endswith(":states:::events:putEvents")
    (entry,) = publish["Parameters"]["Entries"]
    assert "EventBusName" not in entry  # the default bus
    assert entry["Source"] == "vtp.pipeline"
    assert entry["DetailType"] == "TranscodeJobCompleted"
    assert entry["Detail"]["job_id.$"] == "$.job_id"
    assert entry["Detail"]["manifest_key.$"] == "States.Format('{}/manifest.json', $.job_id)"
    assert publish["ResultPath"] is None


def test_state_machine_role_may_invoke_only_the_three_workflow_functions(synth):
    from infra.nag import flatten_cfn_reference

    role_id = synth.logical_id(synth.stack.workflow.state_machine.role)
    invoked = set()
    for statement in synth.statements_of_role(role_id):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "lambda:InvokeFunction" in actions:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            invoked.update(flatten_cfn_reference(r) for r in resources)
    ids = synth.function_ids()
    expected = {f"<{ids[n]}.Arn>" for n in ("Encoder", "Merger", "Failure")}
    assert expected <= invoked
    assert not any(ids["Splitter"] in r for r in invoked)
    assert "*" not in invoked
