"""The CDK app's constructs. infra shares one contract with the functions' runtime
(``functions/vtp/contract.py``, standard library only): make it importable without
installing the project."""

import sys
from pathlib import Path

_FUNCTIONS = str(Path(__file__).resolve().parents[1] / "functions")
if _FUNCTIONS not in sys.path:
    sys.path.append(_FUNCTIONS)
