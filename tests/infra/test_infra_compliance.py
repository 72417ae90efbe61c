"""cdk-nag (AWS Solutions pack) and cfn-lint on the synthesized template."""

from __future__ import annotations


def _summary(violations):
    return "\n".join(
        f"{v['ruleName']}: {[c['constructPath'] for c in v.get('violatingConstructs', [])]}" for v in violations
    )


def test_cdk_nag_has_no_unacknowledged_findings(synth):
    assert synth.violations == [], _summary(synth.violations)
    assert synth.synth_error is None, synth.synth_error


def test_cdk_nag_clean_in_destroy_on_delete_mode_too(synth_destroy):
    assert synth_destroy.violations == [], _summary(synth_destroy.violations)
    assert synth_destroy.synth_error is None, synth_destroy.synth_error


def test_every_acknowledgment_has_a_reason(synth):
    from aws_cdk import Validations

    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found = 0
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key and entry.data:
                for rule_id, reason in dict(entry.data).items():
                    found += 1
                    assert isinstance(reason, str) and len(reason) > 30, (construct.node.path, rule_id)
    assert found > 0


def test_cfn_lint_passes_with_only_w3005_ignored(synth, synth_destroy):
    from cfnlint.api import ManualArgs, lint_file

    # W3005: CDK adds a DependsOn on each role that a GetAtt already implies (harmless).
    config = ManualArgs(regions=["us-east-1", "eu-west-1"], ignore_checks=["W3005"])
    for variant in (synth, synth_destroy):
        matches = lint_file(variant.template_path, config=config)
        assert [str(m) for m in matches] == [], variant.template_path.name


def test_every_iam5_acknowledgement_names_the_one_resource_it_covers(synth):
    """No blanket IAM5: each acknowledgement is one finding (`IAM5[Resource::<pattern>]`), and
    `Resource::*` is acknowledged only on the policies that hold nothing but X-Ray and
    log-delivery actions (see test_infra_functions: such policies hold nothing else)."""
    from aws_cdk import Validations
    from aws_cdk import aws_iam as iam

    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    star = []
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != key or not entry.data:
                continue
            for rule_id in dict(entry.data):
                rule_id = rule_id.removeprefix("Annotation::")
                if rule_id.startswith("AwsSolutions-IAM5"):
                    assert rule_id.startswith("AwsSolutions-IAM5[Resource::") and rule_id.endswith("]"), rule_id
                if rule_id == "AwsSolutions-IAM5[Resource::*]":
                    star.append(construct)
    assert all(isinstance(c, iam.Policy) and (c.node.id == "ObservabilityPolicy" or c.node.id.endswith("XRay"))
               for c in star), [c.node.path for c in star]
    assert len(star) == 8  # seven functions' X-Ray policies and the state machine's observability policy
