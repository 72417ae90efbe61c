"""The trigger: ObjectCreated:* on the input bucket -> the uploads queue -> the splitter (event
source mapping); the dead-letter queue; the failure paths' rules. No custom resource, no cycle."""

from __future__ import annotations

from vtp import contract

STACK_INSTANCE = {"Fn::Select": [0, {"Fn::Split": ["-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]}]}


def _input_bucket(synth):
    bucket_id = synth.logical_id(synth.stack.storage.input_bucket)
    return bucket_id, synth.resources[bucket_id]


def _queue_ids(synth):
    return synth.logical_id(synth.stack.intake.uploads_queue), synth.logical_id(synth.stack.intake.dead_letter_queue)


def test_notification_sends_every_object_created_event_to_the_uploads_queue(synth, synth_destroy):
    _, bucket = _input_bucket(synth)
    uploads, _ = _queue_ids(synth)
    assert bucket["Properties"]["NotificationConfiguration"] == {
        "QueueConfigurations": [{"Event": "s3:ObjectCreated:*", "Queue": {"Fn::GetAtt": [uploads, "Arn"]}}]
    }
    # Context vtp:key-prefix / vtp:key-suffix: S3 filter rules.
    _, filtered = _input_bucket(synth_destroy)
    [config] = filtered["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "uploads/"},
                                                    {"Name": "suffix", "Value": ".mp4"}]}}


def test_no_custom_resource_deploys_the_notification(synth):
    types = {resource["Type"] for resource in synth.resources.values()}
    assert not any(t.startswith("Custom::") for t in types), types
    assert "AWS::CloudFormation::CustomResource" not in types
    # Only the pipeline's functions: no hidden notification-handler Lambda.
    assert len(synth.of_type("AWS::Lambda::Function")) == 7


def test_s3_may_send_to_the_uploads_queue_only_from_the_input_bucket(synth):
    bucket_id, bucket = _input_bucket(synth)
    uploads, _ = _queue_ids(synth)
    [(policy_id, policy)] = [(k, v) for k, v in synth.of_type("AWS::SQS::QueuePolicy").items()
                             if v["Properties"]["Queues"] == [{"Ref": uploads}]]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == {"Fn::GetAtt": [uploads, "Arn"]}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # SourceArn names the bucket by the same explicit name the bucket is created with...
    name_parts = bucket["Properties"]["BucketName"]["Fn::Join"][1]
    arn_parts = allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert arn_parts[0] == "arn:" and arn_parts[1] == {"Ref": "AWS::Partition"}
    assert arn_parts[2] == ":s3:::" + name_parts[0]
    assert arn_parts[3:] == name_parts[1:]
    # ...and does not refer to the bucket resource, which depends on the policy (S3 checks it).
    assert bucket_id not in str(policy["Properties"])
    assert policy_id in bucket["DependsOn"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements)


def test_input_bucket_name_is_new_with_every_stack_instance(synth, synth_destroy):
    """A deploy after a failed first one does not collide with the retained bucket it left."""
    _, bucket = _input_bucket(synth)
    assert bucket["Properties"]["BucketName"]["Fn::Join"][1] == [
        "videotranscodingpipeline-input-", {"Ref": "AWS::AccountId"}, "-", STACK_INSTANCE
    ]
    _, other = _input_bucket(synth_destroy)
    assert other["Properties"]["BucketName"]["Fn::Join"][1][0] == "vtp-it-stack2-input-"
    # Nothing else that outlives a failed deploy has a fixed name.
    for resource_id, resource in synth.resources.items():
        if resource.get("DeletionPolicy") == "Retain" and resource_id != _input_bucket(synth)[0]:
            assert not any(key.endswith("Name") and isinstance(value, str) for key, value in resource["Properties"].items()), resource_id


def test_the_splitter_takes_uploads_from_the_queue_one_at_a_time(synth):
    uploads, dead_letters = _queue_ids(synth)
    [mapping] = synth.of_type("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": [uploads, "Arn"]}
    assert props["FunctionName"] == {"Ref": synth.function_ids()["Splitter"]}
    assert props["BatchSize"] == 1 and props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "SplitterConcurrency"}}
    parameter = synth.template["Parameters"]["SplitterConcurrency"]
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (5, 2, 1000)


def test_a_delivery_comes_back_after_the_claims_lease_and_is_parked_after_five(synth, synth_destroy):
    for variant, timeout in ((synth, 300), (synth_destroy, 30)):
        uploads, dead_letters = _queue_ids(variant)
        queue = variant.resources[uploads]["Properties"]
        lease = int(variant.resources[variant.function_ids()["Splitter"]]["Properties"]["Environment"]["Variables"]["VTP_LEASE_S"])
        assert lease == contract.lease_seconds(timeout) > timeout
        assert queue["VisibilityTimeout"] == contract.visibility_timeout_seconds(timeout) > lease
        assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dead_letters, "Arn"]}, "maxReceiveCount": 5}
        for queue_id in (uploads, dead_letters):
            assert variant.resources[queue_id]["Properties"]["SqsManagedSseEnabled"] is True
    assert (contract.lease_seconds(300), contract.visibility_timeout_seconds(300)) == (360, 390)


def test_execution_failures_and_the_failure_functions_own_failures_are_caught(synth):
    _, dead_letters = _queue_ids(synth)
    failure = synth.function_ids()["Failure"]
    machine = synth.logical_id(synth.stack.workflow.state_machine)
    rule = synth.resources[synth.logical_id(synth.stack.execution_failed_rule)]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"], "stateMachineArn": [{"Ref": machine}]},
    }
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [failure, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dead_letters, "Arn"]}}
    [config] = synth.of_type("AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["FunctionName"] == {"Ref": failure}
    assert config["Properties"]["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [dead_letters, "Arn"]}}}
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    permissions = [p["Properties"] for p in synth.of_type("AWS::Lambda::Permission").values()]
    assert {(p["Principal"], str(p["FunctionName"])) for p in permissions} == {
        ("events.amazonaws.com", str({"Fn::GetAtt": [failure, "Arn"]})),
        ("events.amazonaws.com", str({"Fn::GetAtt": [synth.function_ids()["Watchdog"], "Arn"]})),
    }


def test_the_watchdog_runs_every_ten_minutes(synth):
    rule = synth.resources[synth.logical_id(synth.stack.watchdog_rule)]["Properties"]
    assert rule["ScheduleExpression"] == "rate(10 minutes)"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [synth.function_ids()["Watchdog"], "Arn"]}


def test_the_caps_are_stack_parameters(synth):
    parameters = synth.template["Parameters"]
    assert (parameters["MaxRunningJobs"]["Default"], parameters["MaxRunningJobs"]["MinValue"]) == (10, 0)
    assert parameters["OverdueJobMinutes"]["Default"] == 120
    for name in ("MaxConcurrency", "MaxRunningJobs", "EncoderReservedConcurrency", "EncoderMemoryMB",
                 "SplitterConcurrency", "OverdueJobMinutes"):
        assert parameters[name]["Type"] == "Number" and len(parameters[name]["Description"]) > 40, name


def _dependency_graph(template: dict) -> dict[str, set[str]]:
    resources = template["Resources"]
    graph: dict[str, set[str]] = {}

    def refs(node, found: set[str]) -> None:
        if isinstance(node, dict):
            if "Ref" in node and node["Ref"] in resources:
                found.add(node["Ref"])
            if "Fn::GetAtt" in node:
                target = node["Fn::GetAtt"][0]
                if target in resources:
                    found.add(target)
            for value in node.values():
                refs(value, found)
        elif isinstance(node, list):
            for value in node:
                refs(value, found)

    for logical_id, resource in resources.items():
        found: set[str] = set()
        refs(resource.get("Properties", {}), found)
        depends = resource.get("DependsOn", [])
        found.update([depends] if isinstance(depends, str) else depends)
        graph[logical_id] = found
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {node: WHITE for node in graph}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in graph.get(node, ()):
            if colour.get(nxt) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in graph:
        if colour[node] == WHITE:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_template_has_no_dependency_cycle(synth, synth_destroy):
    # AWS rejects a template with a cycle (LocalStack silently accepts it).
    for variant in (synth, synth_destroy):
        assert _find_cycle(_dependency_graph(variant.template)) is None


def test_the_splitter_reads_the_input_bucket_by_name(synth):
    bucket_id, _ = _input_bucket(synth)
    assert bucket_id not in str(synth.statements_of_role(synth.role_ids()["Splitter"]))
