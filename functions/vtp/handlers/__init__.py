"""Lambda entry points: parse the event, call vtp.aws.pipeline, return a small JSON."""
