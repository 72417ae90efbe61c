"""Helpers to acknowledge cdk-nag findings (cdk-nag 3.x, CDK ``Validations`` API) with reasons.

cdk-nag 3 identifies each IAM wildcard finding as ``AwsSolutions-IAM5[Resource::<flat>]``
where ``<flat>`` is the resolved CloudFormation value flattened the way cdk-nag does
(``Ref`` -> ``<Id>``, ``Fn::GetAtt`` -> ``<Id.Attr>``, ``Fn::Join`` concatenated). The
helpers below compute that string from the very token the code grants, so each
acknowledgment names exactly one resource pattern, never the whole rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

IAM5 = "AwsSolutions-IAM5"


def flatten_cfn_reference(node: object) -> str:
    """Python port of cdk-nag's ``flattenCfnReference``."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_cfn_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_cfn_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_cfn_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one rule (or one finding ``Rule[Finding]``) on scope and everything under it."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def wildcard_finding(scope: IConstruct, resource: str) -> str | None:
    """The IAM5 finding id a granted resource produces, or None when it has no wildcard."""
    flat = flatten_cfn_reference(Stack.of(scope).resolve(resource))
    return f"{IAM5}[Resource::{flat}]" if "*" in flat else None


def acknowledge_wildcard_resources(scope: IConstruct, resources: Iterable[str], reason: str) -> list[str]:
    """Acknowledge the IAM5 finding of each wildcard resource; return the ids acknowledged."""
    done: list[str] = []
    for resource in resources:
        finding = wildcard_finding(scope, resource)
        if finding and finding not in done:
            acknowledge(scope, finding, reason)
            done.append(finding)
    return done
