"""The plux plugin LocalStack finds through the entry point group
``localstack.lambda.runtime_executor`` (see ../pyproject.toml)."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin

from . import EXECUTOR_NAME


class VtpLocalProcessExecutorPlugin(RuntimeExecutorPlugin):
    name = EXECUTOR_NAME

    def load(self, *args, **kwargs):
        from .executor import LocalProcessRuntimeExecutor

        return LocalProcessRuntimeExecutor
