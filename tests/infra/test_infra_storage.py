"""Buckets, the jobs table, removal policies and stack outputs."""

from __future__ import annotations

from aws_cdk.assertions import Match


def _buckets(synth):
    storage = synth.stack.storage
    return {
        name: synth.logical_id(getattr(storage, attr))
        for name, attr in (
            ("input", "input_bucket"),
            ("work", "work_bucket"),
            ("output", "output_bucket"),
            ("logs", "access_log_bucket"),
        )
    }


def test_every_bucket_blocks_public_access_is_encrypted_and_ssl_only(synth):
    buckets = _buckets(synth)
    assert len(synth.of_type("AWS::S3::Bucket")) == len(buckets)
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in synth.of_type("AWS::S3::BucketPolicy").values()}
    for name, bucket_id in buckets.items():
        props = synth.resources[bucket_id]["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", name
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        statements = policies[bucket_id]["Properties"]["PolicyDocument"]["Statement"]
        deny_http = [
            s for s in statements
            if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert deny_http, f"{name} bucket does not deny plain HTTP"
        if name != "logs":
            assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": buckets["logs"]}


def test_work_bucket_expires_job_files_and_aborts_multipart_uploads(synth):
    work = synth.resources[_buckets(synth)["work"]]["Properties"]
    rules = work["LifecycleConfiguration"]["Rules"]
    assert {"Id": "ExpireJobFiles", "Prefix": "jobs/", "ExpirationInDays": 7, "Status": "Enabled"} in rules
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") for r in rules)


def test_jobs_table_is_on_demand_with_pitr_and_encryption(synth):
    synth.assertions.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    )


def test_jobs_table_finds_jobs_by_upload_key_and_the_running_ones(synth):
    (table,) = synth.of_type("AWS::DynamoDB::Table").values()
    indexes = {index["IndexName"]: index for index in table["Properties"]["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by_input", "by_status"}
    for name, partition in (("by_input", "input"), ("by_status", "status")):
        assert indexes[name]["KeySchema"] == [{"AttributeName": partition, "KeyType": "HASH"},
                                              {"AttributeName": "created_at", "KeyType": "RANGE"}]
        assert indexes[name]["Projection"] == {"ProjectionType": "ALL"}


def test_input_bucket_is_versioned_and_old_versions_expire(synth):
    props = synth.resources[_buckets(synth)["input"]]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireOldVersions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}


def test_data_is_retained_by_default(synth):
    for bucket_id in _buckets(synth).values():
        assert synth.resources[bucket_id]["DeletionPolicy"] == "Retain"
    synth.assertions.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_destroy_on_delete_context_removes_everything(synth_destroy):
    for bucket_id in _buckets(synth_destroy).values():
        assert synth_destroy.resources[bucket_id]["DeletionPolicy"] == "Delete"
    synth_destroy.assertions.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Delete"})
    # Buckets are emptied on delete (CDK's auto-delete custom resource, only in this mode).
    synth_destroy.assertions.resource_count_is("Custom::S3AutoDeleteObjects", 4)


def test_stack_outputs(synth):
    outputs = synth.template["Outputs"]
    for name in ("InputBucketName", "OutputBucketName", "WorkBucketName", "JobsTableName", "StateMachineArn",
                 "AlarmTopicArn", "UploadsQueueUrl", "DeadLetterQueueUrl"):
        assert name in outputs
    assert outputs["StateMachineArn"]["Value"] == {"Ref": synth.logical_id(synth.stack.workflow.state_machine)}
    assert outputs["InputBucketName"]["Value"] == {"Ref": _buckets(synth)["input"]}


def test_stack_name_default_and_override(synth, synth_destroy):
    assert synth.stack.stack_name == "VideoTranscodingPipeline"
    assert synth_destroy.stack.stack_name == "vtp-it-Stack2"


def test_monitoring_alarms(synth):
    alarms = synth.of_type("AWS::CloudWatch::Alarm")
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert ("AWS/States", "ExecutionsFailed") in metrics
    assert ("AWS/States", "ExecutionsTimedOut") in metrics
    lambda_error_alarms = [a for a in alarms.values() if a["Properties"]["MetricName"] == "Errors"]
    assert len(lambda_error_alarms) == 7  # one per function
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms.values()}
    # Failed jobs, counted by the failure function on every path (powertools: namespace vtp, dimension service).
    for name in ("JobsFailed", "JobsOverdue"):
        assert by_metric[name]["Namespace"] == "vtp"
        assert by_metric[name]["Dimensions"] == [{"Name": "service", "Value": "vtp"}]
        assert by_metric[name]["Threshold"] == 1
    assert by_metric["JobsOverdue"]["Period"] == 600 and by_metric["JobsOverdue"]["Statistic"] == "Maximum"
    # Anything in the dead-letter queue.
    dead_letters = by_metric["ApproximateNumberOfMessagesVisible"]
    assert dead_letters["Namespace"] == "AWS/SQS" and dead_letters["Threshold"] == 1
    assert dead_letters["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": [synth.logical_id(synth.stack.intake.dead_letter_queue), "QueueName"]}
    assert len(alarms) == 12
    topic_id = synth.logical_id(synth.stack.monitoring.topic)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    synth.assertions.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    synth.assertions.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": Match.any_value()})
