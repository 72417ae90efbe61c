"""The seven Lambdas: handlers, sizing, layer, environment, one least-privilege role each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HANDLERS = {
    "Splitter": "vtp.handlers.splitter.handler",
    "Analyser": "vtp.handlers.analyser.handler",
    "Ladder": "vtp.handlers.ladder.handler",
    "Encoder": "vtp.handlers.encoder.handler",
    "Merger": "vtp.handlers.merger.handler",
    "Failure": "vtp.handlers.failure.handler",
    "Watchdog": "vtp.handlers.watchdog.handler",
}
SIZING = {  # memory MB, timeout s, ephemeral MB (see infra/functions.py for the reasons)
    "Splitter": (1769, 300, 512),
    "Analyser": (3008, 900, 512),  # contract.ANALYSER_MEMORY_MB
    "Ladder": (512, 300, 512),  # contract.LADDER_MEMORY_MB
    "Encoder": ({"Ref": "EncoderMemoryMB"}, 900, 2048),  # a stack parameter
    "Merger": (1024, 300, 512),
    "Failure": (512, 300, 512),
    "Watchdog": (256, 120, 512),
}
COMMON_ENV = {
    "INPUT_BUCKET", "WORK_BUCKET", "OUTPUT_BUCKET", "JOBS_TABLE", "VTP_FFMPEG_DIR",
    "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL",
}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def props(synth, name):
    return synth.resources[synth.function_ids()[name]]["Properties"]


@pytest.mark.parametrize("name", HANDLERS)
def test_runtime_handler_and_sizing(synth, name):
    p = props(synth, name)
    assert p["Handler"] == HANDLERS[name]
    assert p["Runtime"] == "python3.12"
    assert p["Architectures"] == ["x86_64"]
    assert p["TracingConfig"] == {"Mode": "Active"}
    assert (p["MemorySize"], p["Timeout"], p["EphemeralStorage"]["Size"]) == SIZING[name]
    if name == "Encoder":  # a parameter; left out when 0 (see test_encoder_memory_and_reserved_concurrency_...)
        assert p["ReservedConcurrentExecutions"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    else:
        assert "ReservedConcurrentExecutions" not in p


def test_encoder_memory_and_reserved_concurrency_are_parameters_that_deploy_on_any_account(synth, synth_destroy):
    parameters = synth.template["Parameters"]
    memory = parameters["EncoderMemoryMB"]
    assert (memory["Type"], memory["Default"], memory["MinValue"], memory["MaxValue"]) == ("Number", 3008, 128, 10240)
    assert synth_destroy.template["Parameters"]["EncoderMemoryMB"]["Default"] == 10240  # context vtp:encoder-memory-mb
    reserved = parameters["EncoderReservedConcurrency"]
    assert (reserved["Type"], reserved["Default"], reserved["MinValue"]) == ("Number", 0, 0)
    encoder = props(synth, "Encoder")
    condition, value, otherwise = encoder["ReservedConcurrentExecutions"]["Fn::If"]
    assert value == {"Ref": "EncoderReservedConcurrency"} and otherwise == {"Ref": "AWS::NoValue"}
    # 0 leaves the property out (0 would stop the function): no reservation, which any account allows.
    assert synth.template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EncoderReservedConcurrency"}, 0]}]}


@pytest.mark.parametrize("name", HANDLERS)
def test_handler_modules_exist(name):
    module = HANDLERS[name].rsplit(".", 1)[0]
    path = ROOT / "functions" / Path(*module.split("."))
    source = path.with_suffix(".py")
    assert source.is_file(), f"{source} missing for handler {HANDLERS[name]}"
    assert "def handler" in source.read_text() or "handler =" in source.read_text()


@pytest.mark.parametrize("name", HANDLERS)
def test_environment(synth, name):
    env = props(synth, name)["Environment"]["Variables"]
    assert COMMON_ENV <= set(env)
    assert env["VTP_FFMPEG_DIR"] == "/opt/bin"
    assert env["POWERTOOLS_SERVICE_NAME"] == "vtp"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "vtp"
    assert env["LOG_LEVEL"] == "INFO"
    assert "VTP_FAIL_FIRST_ATTEMPT_CHUNK" not in env  # test-only switch, off by default
    assert env["WORK_BUCKET"] == {"Ref": synth.logical_id(synth.stack.storage.work_bucket)}
    assert env["OUTPUT_BUCKET"] == {"Ref": synth.logical_id(synth.stack.storage.output_bucket)}
    assert env["JOBS_TABLE"] == {"Ref": synth.logical_id(synth.stack.storage.jobs_table)}
    state_machine_id = synth.logical_id(synth.stack.workflow.state_machine)
    failure_id = synth.function_ids()["Failure"]
    if name in ("Splitter", "Watchdog"):
        assert env["STATE_MACHINE_ARN"] == {"Ref": state_machine_id}
        assert env["FAILURE_FUNCTION_NAME"] == {"Ref": failure_id}
    else:
        assert "STATE_MACHINE_ARN" not in env and "FAILURE_FUNCTION_NAME" not in env
    if name == "Splitter":
        assert env["VTP_MAX_RUNNING_JOBS"] == {"Ref": "MaxRunningJobs"}
        assert env["VTP_LEASE_S"] == "360" and env["VTP_QUEUE_RETRY_DELAY_S"] == "60"
        assert env["UPLOADS_QUEUE_URL"] == {"Ref": synth.logical_id(synth.stack.intake.uploads_queue)}
    if name == "Failure":
        assert env["EVENT_BUS_NAME"] == "default"
    if name == "Watchdog":
        assert env["VTP_OVERDUE_AFTER_MINUTES"] == {"Ref": "OverdueJobMinutes"} and env["VTP_REPAIR_AFTER_S"] == "900"


def test_fault_injection_switch_comes_from_context(synth, synth_destroy):
    for name in HANDLERS:
        env = props(synth_destroy, name)["Environment"]["Variables"]
        assert env["VTP_FAIL_FIRST_ATTEMPT_CHUNK"] == "0" and env["VTP_TEST_SPLITTER_FAULTS"] == "1"
        assert "VTP_TEST_SPLITTER_FAULTS" not in props(synth, name)["Environment"]["Variables"]


def test_the_splitter_timeout_sets_the_lease(synth_destroy):
    assert props(synth_destroy, "Splitter")["Timeout"] == 30
    assert props(synth_destroy, "Splitter")["Environment"]["Variables"]["VTP_LEASE_S"] == "40"


def test_ffmpeg_layer_is_attached_to_every_function(synth):
    (layer_id, layer), = synth.of_type("AWS::Lambda::LayerVersion").items()
    assert layer_id.startswith("FunctionsFfmpegLayer")
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    for name in HANDLERS:
        assert props(synth, name).get("Layers") == (None if name in ("Ladder", "Watchdog") else [{"Ref": layer_id}])
    # The layer asset is the folder packaging.py built, with bin/ffmpeg, bin/ffprobe and the quality
    # scorer bin/ffmpeg-vmaf (/opt/bin in Lambda), within Lambda's 250 MB beside the code.
    asset_path = synth.stack.functions.layer_dir
    assert asset_path.name == "ffmpeg-layer" and asset_path.parent.name == "lambda"
    for tool in ("ffmpeg", "ffprobe", "ffmpeg-vmaf"):
        assert (asset_path / "bin" / tool).is_file()
        assert os.access(asset_path / "bin" / tool, os.X_OK)
    layer_mb = sum(p.stat().st_size for p in asset_path.rglob("*") if p.is_file()) / 2**20
    assert layer_mb < 200, f"the layer is {layer_mb:.0f} MiB"


def test_log_groups_have_retention(synth):
    groups = synth.of_type("AWS::Logs::LogGroup")
    assert groups and all(g["Properties"].get("RetentionInDays") == 30 for g in groups.values())
    assert all(g["DeletionPolicy"] == "Delete" for g in groups.values())
    for name in HANDLERS:
        ref = props(synth, name)["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[ref]["Properties"]["RetentionInDays"] == 30


def test_one_role_per_function_without_managed_policies(synth):
    roles = synth.role_ids()
    assert len(set(roles.values())) == 7
    for name, role_id in roles.items():
        assert props(synth, name)["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}
        role = synth.resources[role_id]["Properties"]
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert "ManagedPolicyArns" not in role


ALLOWED_ACTIONS = {  # per function and service: every action it may have (anything else fails)
    "Splitter": {
        "dynamodb": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
        "states": {"states:StartExecution", "states:ListExecutions", "states:DescribeExecution"},
        "lambda": {"lambda:InvokeFunction"},
        "sqs": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl", "sqs:SendMessage"},
    },
    "Analyser": {"dynamodb": {"dynamodb:UpdateItem"}},
    "Ladder": {"dynamodb": {"dynamodb:UpdateItem"}},
    "Encoder": {"dynamodb": {"dynamodb:UpdateItem"}},
    "Merger": {"dynamodb": {"dynamodb:UpdateItem"}},
    "Failure": {"dynamodb": {"dynamodb:GetItem", "dynamodb:UpdateItem"}, "events": {"events:PutEvents"},
                "sqs": {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}},
    "Watchdog": {"dynamodb": {"dynamodb:Query"}, "states": {"states:DescribeExecution"}, "lambda": {"lambda:InvokeFunction"}},
}


@pytest.mark.parametrize("name", HANDLERS)
def test_least_privilege_statements(synth, name):
    statements = synth.statements_of_role(synth.role_ids()[name])
    table_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.storage.jobs_table), "Arn"]}
    state_machine_ref = {"Ref": synth.logical_id(synth.stack.workflow.state_machine)}
    failure_arn = {"Fn::GetAtt": [synth.function_ids()["Failure"], "Arn"]}
    uploads = {"Fn::GetAtt": [synth.logical_id(synth.stack.intake.uploads_queue), "Arn"]}
    dead_letters = {"Fn::GetAtt": [synth.logical_id(synth.stack.intake.dead_letter_queue), "Arn"]}
    from infra.nag import flatten_cfn_reference

    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        assert not any("*" in action for action in actions), statement
        services = {action.split(":")[0] for action in actions}
        assert len(services) == 1, statement
        service = services.pop()
        if service == "xray":
            assert set(actions) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
            continue
        assert "*" not in resources, f"{name}: {service} actions on every resource: {statement}"
        if service == "logs":
            (group,) = resources
            assert group == {"Fn::GetAtt": [props(synth, name)["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]}
            continue
        if service == "s3":
            for resource in resources:
                text = str(resource)
                assert "Bucket" in text or "-input-" in text, resource
            continue
        assert set(actions) <= ALLOWED_ACTIONS[name].get(service, set()), f"unexpected for {name}: {statement}"
        if service == "dynamodb":
            if name == "Watchdog":
                assert [flatten_cfn_reference(r) for r in resources] == [
                    f"<{synth.logical_id(synth.stack.storage.jobs_table)}.Arn>/index/by_status"]
            else:
                assert resources == [table_arn]
        elif service == "states":
            flat = [flatten_cfn_reference(r) for r in resources]
            if "states:DescribeExecution" in actions:
                machine_name = f"<{synth.logical_id(synth.stack.workflow.state_machine)}.Name>"
                assert flat == [f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{machine_name}:*"]
            else:
                assert resources == [state_machine_ref]
        elif service == "lambda":
            assert resources == [failure_arn]
        elif service == "sqs":
            assert resources == ([uploads] if name == "Splitter" else [dead_letters])
        elif service == "events":
            assert [flatten_cfn_reference(r) for r in resources] == [
                "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:event-bus/default"]
            assert statement["Condition"] == {"StringEquals": {"events:source": "vtp.pipeline"}}


def test_every_resource_wildcard_is_alone_in_its_own_x_ray_or_log_delivery_policy(synth):
    """A `Resource: *` only where the actions take no resource, in a policy that holds
    nothing else: so its acknowledgement (on that policy) cannot hide a future wildcard."""
    roles = {**synth.role_ids(), "StateMachine": synth.logical_id(synth.stack.workflow.state_machine.role)}
    for name, role_id in roles.items():
        for policy_id, statements in synth.policies_of_role(role_id).items():
            wildcard = [s for s in statements if "*" in as_list(s["Resource"])]
            if not wildcard:
                continue
            assert wildcard == statements, f"{name}: {policy_id} mixes Resource * with other grants"
            for statement in statements:
                for action in as_list(statement["Action"]):
                    assert action.startswith("xray:") or action.split(":")[1] in {
                        "CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery",
                        "ListLogDeliveries", "PutResourcePolicy", "DescribeResourcePolicies", "DescribeLogGroups",
                    }, (name, action)


def _s3_grants(synth, name) -> dict[str, set[str]]:
    """action -> set of flattened resources, for one function's role."""
    from infra.nag import flatten_cfn_reference

    grants: dict[str, set[str]] = {}
    for statement in synth.statements_of_role(synth.role_ids()[name]):
        for action in as_list(statement["Action"]):
            if action.startswith("s3:"):
                grants.setdefault(action, set()).update(flatten_cfn_reference(r) for r in as_list(statement["Resource"]))
    return grants


def test_s3_grants_are_scoped_to_the_buckets_and_prefixes_each_function_uses(synth):
    work = synth.logical_id(synth.stack.storage.work_bucket)
    output = synth.logical_id(synth.stack.storage.output_bucket)
    work_jobs = f"<{work}.Arn>/jobs/*"
    stack_instance = '{"Fn::Select":[0,{"Fn::Split":["-",{"Fn::Select":[2,{"Fn::Split":["/",{"Ref":"AWS::StackId"}]}]}]}]}'
    input_objects = f"arn:<AWS::Partition>:s3:::videotranscodingpipeline-input-<AWS::AccountId>-{stack_instance}/*"

    # The splitter parses untrusted media: it reads the upload, writes the job's plan, and
    # cannot touch the output bucket (a refused input's FAILED manifest is the failure function's).
    splitter = _s3_grants(synth, "Splitter")
    assert splitter["s3:GetObject"] == splitter["s3:GetObjectVersion"] == {input_objects}
    assert splitter["s3:PutObject"] == {work_jobs}
    assert "s3:DeleteObject" not in splitter
    assert not any(output in r for rs in splitter.values() for r in rs)

    # The encoder reads its range of the upload (presigned GETs of one version) and writes its
    # segments; it removes them again when the job failed meanwhile.
    encoder = _s3_grants(synth, "Encoder")
    assert encoder["s3:GetObject"] == {input_objects, work_jobs} and encoder["s3:GetObjectVersion"] == {input_objects}
    assert encoder["s3:PutObject"] == {work_jobs, f"<{output}.Arn>/*"}
    assert encoder["s3:DeleteObject"] == {f"<{output}.Arn>/*"}

    merger = _s3_grants(synth, "Merger")
    assert merger["s3:GetObject"] == {work_jobs}
    assert merger["s3:PutObject"] == {f"<{output}.Arn>/*"}
    assert merger["s3:ListBucket"] == {f"<{work}.Arn>"}
    assert not any(input_objects in r for rs in merger.values() for r in rs)
    assert not _s3_grants(synth, "Watchdog")

    # The analyser (a fitted ladder) reads job.json and its chunk of the upload, and writes only
    # its trial points (jobs/<job_id>/analysis/); nothing of the output bucket.
    analyser = _s3_grants(synth, "Analyser")
    assert analyser["s3:GetObject"] == {input_objects, work_jobs} and analyser["s3:GetObjectVersion"] == {input_objects}
    assert analyser["s3:PutObject"] == {f"<{work}.Arn>/jobs/*/analysis/*"}
    assert set(analyser) == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"}
    assert not any(output in r for rs in analyser.values() for r in rs)

    # The ladder function reads the job, the analyses and the chunks' facts, rewrites job.json
    # and writes the rework Map's items: the work bucket only.
    ladder = _s3_grants(synth, "Ladder")
    assert ladder == {"s3:ListBucket": {f"<{work}.Arn>"}, "s3:GetObject": {work_jobs},
                      "s3:PutObject": {f"<{work}.Arn>/jobs/*/job.json", f"<{work}.Arn>/jobs/*/rework_chunks.json"}}

    failure = _s3_grants(synth, "Failure")
    assert failure["s3:DeleteObject"] == {f"<{output}.Arn>/*"}
    assert not any(work in r or input_objects in r for rs in failure.values() for r in rs)


def test_pipeline_settings_from_context_reach_every_function():
    from infra.config import _settings

    assert _settings("VTP_LADDER=720p,360p;VTP_PRESET=fast") == {"VTP_LADDER": "720p,360p", "VTP_PRESET": "fast"}
    assert _settings('{"VTP_GOP_S": 2}') == {"VTP_GOP_S": "2"}
    assert _settings(None) == {}
    import pytest

    with pytest.raises(ValueError, match="unknown settings"):
        _settings("VTP_NOPE=1")
