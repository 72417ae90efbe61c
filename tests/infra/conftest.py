"""Synthesize the pipeline stack once per session, the way app.py does, for the infra tests.

The built-in CloudFormation validation of CDK is switched off (it costs ~6 s per
process and cfn-lint runs here anyway), asset staging is disabled (the 150 MB
ffmpeg layer is not copied into every temporary cloud assembly), and the code
asset is packaged without its pip dependencies (``vtp:skip-dependency-bundle``);
test_packaging.py builds the real bundle. cdk.json's context (feature flags) is
loaded into the App, as the CDK CLI would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ["CDK_VALIDATION"] = "false"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STACK_NAME = "VideoTranscodingPipeline"
FUNCTION_NAMES = ("Splitter", "Analyser", "Ladder", "Encoder", "Merger", "Failure", "Watchdog")


def load_app_module():
    spec = importlib.util.spec_from_file_location("vtp_cdk_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Synth:
    stack: object
    template: dict
    assertions: object  # aws_cdk.assertions.Template
    template_path: Path
    violations: list[dict] = field(default_factory=list)
    synth_error: str | None = None

    @property
    def resources(self) -> dict:
        return self.template["Resources"]

    def of_type(self, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def logical_id(self, construct) -> str:
        return self.stack.get_logical_id(construct.node.default_child)

    # ---- helpers for the tests -------------------------------------------------------

    @property
    def definition(self) -> dict:
        """The state machine's ASL with each CloudFormation intrinsic replaced by a readable marker."""
        (machine,) = self.of_type("AWS::StepFunctions::StateMachine").values()
        body = machine["Properties"]["DefinitionString"]
        if isinstance(body, str):
            return json.loads(body)
        parts = []
        for part in body["Fn::Join"][1]:
            if isinstance(part, str):
                parts.append(part)
            elif "Ref" in part:
                parts.append(f"REF:{part['Ref']}")
            elif "Fn::GetAtt" in part:
                parts.append(f"GETATT:{part['Fn::GetAtt'][0]}")
            else:
                parts.append("INTRINSIC")
        text = "".join(parts)
        # A Ref to the Number parameter sits unquoted in the JSON text.
        text = text.replace('"MaxConcurrency":REF:MaxConcurrency', '"MaxConcurrency":"REF:MaxConcurrency"')
        return json.loads(text)

    def function_ids(self) -> dict[str, str]:
        """Construct name -> logical id of the seven functions."""
        return {name: self.logical_id(self.stack.functions.functions[name]) for name in FUNCTION_NAMES}

    def role_ids(self) -> dict[str, str]:
        return {name: self.logical_id(self.stack.functions.roles[name]) for name in FUNCTION_NAMES}

    def statements_of_role(self, role_id: str) -> list[dict]:
        statements = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        for inline in self.resources[role_id]["Properties"].get("Policies", []):
            statements.extend(inline["PolicyDocument"]["Statement"])
        return statements

    def policies_of_role(self, role_id: str) -> dict[str, list[dict]]:
        """Logical id of each AWS::IAM::Policy attached to the role -> its statements."""
        return {
            policy_id: policy["Properties"]["PolicyDocument"]["Statement"]
            for policy_id, policy in self.of_type("AWS::IAM::Policy").items()
            if {"Ref": role_id} in policy["Properties"].get("Roles", [])
        }



def synthesize(outdir: Path, **context) -> Synth:
    import aws_cdk as cdk
    from aws_cdk import assertions

    app_module = load_app_module()
    ctx = app_module.cdk_json_context()
    ctx.update({"aws:cdk:disable-asset-staging": True, "vtp:skip-dependency-bundle": True})
    ctx.update(context)
    app = cdk.App(context=ctx, outdir=str(outdir), builtin_cloud_formation_validation=False)
    stack = app_module.build(app)
    error = None
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings fail the synth; the report says which
        error = str(exc)
    report_path = outdir / "validation-report.json"
    violations: list[dict] = []
    if report_path.exists():
        for plugin in json.loads(report_path.read_text()).get("pluginReports", []):
            violations.extend(plugin.get("violations", []))
    template_path = outdir / f"{stack.stack_name}.template.json"
    template = json.loads(template_path.read_text())
    return Synth(
        stack=stack,
        template=template,
        # from_json checks the template for dependency cycles.
        assertions=assertions.Template.from_json(template),
        template_path=template_path,
        violations=violations,
        synth_error=error,
    )


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-out-default"))


@pytest.fixture(scope="session")
def synth_destroy(tmp_path_factory) -> Synth:
    """The other variant: destroy on delete, fault injection on, a key filter, a short splitter timeout."""
    return synthesize(
        tmp_path_factory.mktemp("cdk-out-destroy"),
        **{
            "vtp:destroy-on-delete": "true",
            "vtp:test-fault-injection": "true",
            "vtp:stack-name": "vtp-it-Stack2",
            "vtp:key-prefix": "uploads/",
            "vtp:key-suffix": ".mp4",
            "vtp:splitter-timeout-s": "30",
            "vtp:queue-retry-delay-s": "5",
            "vtp:encoder-memory-mb": "10240",
        },
    )

