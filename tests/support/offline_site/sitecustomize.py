"""Put on PYTHONPATH by tests/test_offline_guard.py: every Python process of the guarded
run, the training child included, refuses connections from its first line and appends
what it tried, as one JSON line, to $OPPU_OFFLINE_GUARD_LOG when it exits."""

import atexit
import json
import os
import sys

from tests.support.network_guard import NetworkGuard

_guard = NetworkGuard().__enter__()


@atexit.register
def _report() -> None:
    with open(os.environ["OPPU_OFFLINE_GUARD_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"argv": sys.argv, "attempts": _guard.attempts}) + "\n")
