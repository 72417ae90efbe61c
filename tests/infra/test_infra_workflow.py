"""The state machine: (a fitted ladder) Distributed Map of analysers -> ladder fit, then
Distributed Map of encoders -> (a fitted ladder) rework plan -> Distributed Map of reworking
encoders when there is any -> merger -> event, failures -> failure Lambda."""

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
    assert asl["StartAt"] == "FittedLadder"
    assert states["AnalyseChunks"]["Next"] == "FitLadder"
    assert states["FitLadder"]["Next"] == "EncodeChunks"
    assert states["EncodeChunks"]["Next"] == "ReworkFitted"
    assert states["ReworkFitted"]["Default"] == "MergeAndPublish"
    assert states["PlanRework"]["Next"] == "AnyRework"
    assert states["ReworkChunks"]["Next"] == "MergeAndPublish"
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
    states.update(states["AnalyseChunks"]["ItemProcessor"]["States"])
    states.update(states["ReworkChunks"]["ItemProcessor"]["States"])
    return {name: s for name, s in states.items() if s["Type"] == "Task" and "events:putEvents" not in s["Resource"]}


def test_every_lambda_task_retries_transient_errors_with_full_jitter_but_never_input_errors(asl):
    tasks = _lambda_tasks(asl)
    assert set(tasks) == {"AnalyseChunk", "FitLadder", "EncodeChunk", "PlanRework", "ReworkChunk", "MergeAndPublish",
                          "MarkJobFailed"}
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
        if name in ("AnalyseChunk", "FitLadder", "EncodeChunk", "PlanRework", "ReworkChunk"):  # idempotent: retried a couple of times
            assert len(task_failed) == 1 and task_failed[0]["MaxAttempts"] == 2
            assert task_failed[0]["JitterStrategy"] == "FULL"
        else:
            assert not task_failed, name
        assert not any("States.ALL" in r["ErrorEquals"] for r in retries)


def test_failures_are_caught_into_the_failure_function_then_fail(synth, asl):
    states = asl["States"]
    for name in ("EncodeChunks", "MergeAndPublish"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkJobFailed"}]
    # A failed analysis or fit names its stage for the failure function ($.stage), then the same path.
    for name in ("AnalyseChunks", "FitLadder"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "AnalysisFailed"}]
    assert states["AnalysisFailed"]["Type"] == "Pass" and states["AnalysisFailed"]["Result"] == "analyse"
    assert states["AnalysisFailed"]["ResultPath"] == "$.stage" and states["AnalysisFailed"]["Next"] == "MarkJobFailed"
    # A failed rework plan or rework map: stage rework.
    for name in ("PlanRework", "ReworkChunks"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReworkFailed"}]
    assert states["ReworkFailed"]["Type"] == "Pass" and states["ReworkFailed"]["Result"] == "rework"
    assert states["ReworkFailed"]["ResultPath"] == "$.stage" and states["ReworkFailed"]["Next"] == "MarkJobFailed"
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


def test_state_machine_role_may_invoke_only_the_five_workflow_functions(synth):
    from infra.nag import flatten_cfn_reference

    role_id = synth.logical_id(synth.stack.workflow.state_machine.role)
    invoked = set()
    for statement in synth.statements_of_role(role_id):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "lambda:InvokeFunction" in actions:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            invoked.update(flatten_cfn_reference(r) for r in resources)
    ids = synth.function_ids()
    expected = {f"<{ids[n]}.Arn>" for n in ("Analyser", "Ladder", "Encoder", "Merger", "Failure")}
    assert expected <= invoked
    assert not any(ids[name] in r for r in invoked for name in ("Splitter", "Watchdog"))
    assert "*" not in invoked


# --- a fitted ladder: the Choice, the analysis map and the fit --------------------------------


def test_the_choice_sends_a_fitted_ladder_to_the_analysis_and_a_fixed_one_straight_to_the_encoders(asl):
    choice = asl["States"]["FittedLadder"]
    assert choice["Type"] == "Choice"
    # The splitter names the analysis items in $.analysis_key ("" for a fixed ladder); an
    # execution without the key (started by an older splitter) encodes at once too.
    [rule] = choice["Choices"]
    assert rule == {
        "And": [{"Variable": "$.analysis_key", "IsPresent": True},
                {"Not": {"Variable": "$.analysis_key", "StringEquals": ""}}],
        "Next": "AnalyseChunks",
    }
    assert choice["Default"] == "EncodeChunks"


def test_the_analysis_map_reads_its_items_and_writes_its_results_like_the_encode_map(synth, asl):
    work = synth.logical_id(synth.stack.storage.work_bucket)
    states = asl["States"]
    analyse, encode = states["AnalyseChunks"], states["EncodeChunks"]
    assert analyse["Type"] == "Map"
    assert analyse["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert analyse["ItemReader"]["Resource"] == encode["ItemReader"]["Resource"]
    assert analyse["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert analyse["ItemReader"]["Parameters"] == {"Bucket": f"REF:{work}", "Key.$": "$.analysis_key"}
    assert analyse["ResultWriter"] == encode["ResultWriter"]
    assert analyse["ItemSelector"] == encode["ItemSelector"]
    assert analyse["MaxConcurrency"] == "REF:MaxConcurrency"
    # Only where the results went, at $.analyse (the analyses themselves are in the work bucket).
    assert analyse["ResultSelector"] == {"chunks.$": "$.ResultWriterDetails"} and analyse["ResultPath"] == "$.analyse"
    [(name, task)] = analyse["ItemProcessor"]["States"].items()
    assert name == "AnalyseChunk" and task["Resource"] == _fn(synth, "Analyser")
    assert task["Parameters"] == encode["ItemProcessor"]["States"]["EncodeChunk"]["Parameters"]


def test_the_fit_gets_the_job_and_keeps_the_state(synth, asl):
    fit = asl["States"]["FitLadder"]
    assert fit["Type"] == "Task" and fit["Resource"] == _fn(synth, "Ladder")
    assert fit["Parameters"] == {"job_id.$": "$.job_id"}
    assert fit["ResultPath"] == "$.fit"  # the execution input stays for the encode map and the merger


def test_the_analyser_and_the_ladder_function_are_sized_from_the_contract(synth):
    from vtp import contract

    ids = synth.function_ids()
    analyser = synth.resources[ids["Analyser"]]["Properties"]
    ladder = synth.resources[ids["Ladder"]]["Properties"]
    assert analyser["MemorySize"] == contract.ANALYSER_MEMORY_MB and analyser["Timeout"] == 900
    assert ladder["MemorySize"] == contract.LADDER_MEMORY_MB and "Layers" not in ladder


# --- a fitted ladder: after the encoders, the rework plan and the rework map -------------------


def test_after_the_encoders_a_fitted_ladder_plans_its_rework_and_a_fixed_one_is_published(asl):
    states = asl["States"]
    choice = states["ReworkFitted"]
    assert choice["Type"] == "Choice"
    [rule] = choice["Choices"]
    # The same condition as FittedLadder's.
    assert {k: v for k, v in rule.items() if k != "Next"} == {
        k: v for k, v in states["FittedLadder"]["Choices"][0].items() if k != "Next"}
    assert rule["Next"] == "PlanRework" and choice["Default"] == "MergeAndPublish"
    any_rework = states["AnyRework"]
    assert any_rework["Choices"] == [{"Variable": "$.rework.items", "NumericGreaterThan": 0, "Next": "ReworkChunks"}]
    assert any_rework["Default"] == "MergeAndPublish"


def test_the_rework_plan_is_the_ladder_function_with_its_action(synth, asl):
    from vtp import contract

    plan = asl["States"]["PlanRework"]
    assert plan["Type"] == "Task" and plan["Resource"] == _fn(synth, "Ladder")
    assert plan["Parameters"] == {"job_id.$": "$.job_id", "action": contract.ACTION_PLAN_REWORK}
    assert plan["ResultPath"] == "$.rework"


def test_the_rework_map_is_built_like_the_others_and_passes_each_items_rework_to_the_encoder(synth, asl):
    work = synth.logical_id(synth.stack.storage.work_bucket)
    states = asl["States"]
    rework, encode = states["ReworkChunks"], states["EncodeChunks"]
    assert rework["Type"] == "Map"
    assert rework["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert rework["ItemReader"]["Parameters"] == {"Bucket": f"REF:{work}", "Key.$": "$.rework.rework_key"}
    assert rework["ResultWriter"] == encode["ResultWriter"]
    assert rework["ItemSelector"] == {**encode["ItemSelector"], "rework.$": "$$.Map.Item.Value.rework"}
    assert rework["MaxConcurrency"] == "REF:MaxConcurrency"
    assert rework["ResultSelector"] == {"chunks.$": "$.ResultWriterDetails"} and rework["ResultPath"] == "$.reworked"
    [(name, task)] = rework["ItemProcessor"]["States"].items()
    assert name == "ReworkChunk" and task["Resource"] == _fn(synth, "Encoder")
    assert task["Parameters"] == {**encode["ItemProcessor"]["States"]["EncodeChunk"]["Parameters"], "rework.$": "$.rework"}
