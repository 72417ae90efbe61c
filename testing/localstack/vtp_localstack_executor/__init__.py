"""vtp's LocalStack Lambda runtime executor: runs Python handlers as local
child processes instead of Docker containers. Test infrastructure only.

Importing this package does not import LocalStack; the plugin class lives in
``plugin.py`` and the executor in ``executor.py`` (both need localstack-core).
``bootstrap.py`` is the child side and uses only the standard library.
"""

EXECUTOR_NAME = "vtp-local-process"
ENTRY_POINT_GROUP = "localstack.lambda.runtime_executor"

