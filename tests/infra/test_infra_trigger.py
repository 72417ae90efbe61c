"""The S3 trigger: ObjectCreated:* on the input bucket invokes the splitter, with no custom resource and no cycle."""

from __future__ import annotations


def _input_bucket(synth):
    bucket_id = synth.logical_id(synth.stack.storage.input_bucket)
    return bucket_id, synth.resources[bucket_id]


def test_notification_sends_every_object_created_event_to_the_splitter(synth):
    _, bucket = _input_bucket(synth)
    splitter_id = synth.function_ids()["Splitter"]
    config = bucket["Properties"]["NotificationConfiguration"]
    assert config == {
        "LambdaConfigurations": [
            {"Event": "s3:ObjectCreated:*", "Function": {"Fn::GetAtt": [splitter_id, "Arn"]}}
        ]
    }


def test_no_custom_resource_deploys_the_notification(synth):
    types = {resource["Type"] for resource in synth.resources.values()}
    assert not any(t.startswith("Custom::") for t in types), types
    assert "AWS::CloudFormation::CustomResource" not in types
    # Only the four pipeline functions: no hidden notification-handler Lambda.
    assert len(synth.of_type("AWS::Lambda::Function")) == 4


def test_s3_may_invoke_the_splitter_only_from_the_input_bucket(synth):
    bucket_id, bucket = _input_bucket(synth)
    splitter_id = synth.function_ids()["Splitter"]
    (permission_id, permission), = synth.of_type("AWS::Lambda::Permission").items()
    props = permission["Properties"]
    assert props["Action"] == "lambda:InvokeFunction"
    assert props["Principal"] == "s3.amazonaws.com"
    assert props["FunctionName"] == {"Fn::GetAtt": [splitter_id, "Arn"]}
    assert props["SourceAccount"] == {"Ref": "AWS::AccountId"}
    # SourceArn names the bucket by the same explicit name the bucket is created with...
    name_parts = bucket["Properties"]["BucketName"]["Fn::Join"][1]
    arn_parts = props["SourceArn"]["Fn::Join"][1]
    assert arn_parts[0] == "arn:" and arn_parts[1] == {"Ref": "AWS::Partition"}
    assert arn_parts[2] == ":s3:::" + name_parts[0]
    assert arn_parts[3:] == name_parts[1:]
    # ...and does not refer to the bucket resource, which depends on the permission.
    assert bucket_id not in str(props)
    assert permission_id in bucket["DependsOn"]


def test_input_bucket_name_is_derived_from_the_stack(synth, synth_destroy):
    _, bucket = _input_bucket(synth)
    assert bucket["Properties"]["BucketName"]["Fn::Join"][1] == [
        "videotranscodingpipeline-input-", {"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}
    ]
    _, other = _input_bucket(synth_destroy)
    assert other["Properties"]["BucketName"]["Fn::Join"][1][0] == "vtp-it-stack2-input-"


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


def test_splitter_refers_to_the_input_bucket_by_name_only(synth):
    bucket_id, _ = _input_bucket(synth)
    ids = synth.function_ids()
    splitter = synth.resources[ids["Splitter"]]
    assert bucket_id not in str(splitter["Properties"])
    assert bucket_id not in str(synth.statements_of_role(synth.role_ids()["Splitter"]))
