"""OpenVINO's usage telemetry, off in this project's processes.

OpenVINO's model converter (`ov.convert_model`, which the OpenVINO backend calls on every model load) and NNCF (the
INT8 export) post usage events to Google Analytics unless `~/intel/openvino_telemetry` says no (the
`openvino-telemetry` package; opt-out since OpenVINO 2023.2). This project sends nothing off the machine at run
time, and the sending is a hazard of its own: each event is posted from a process forked off ours, multi-threaded by
then. One such child deadlocked in `getaddrinfo` (a lock another thread held at the fork; DNS itself failed in 0.1 s
on that machine), outlived the SIGTERM meant to end it (most likely through a Python-level handler it inherited,
which a thread stuck in C never runs), and kept its parent from exiting: a test run that had passed never ended
(2026-12-06, 2-core AMD EPYC).

Every OpenVINO module and NNCF import the package inside `try/except ImportError` and fall back to their own no-op
stubs, so marking it unimportable (`sys.modules[name] = None`, Python's documented way) turns it off for this process
only; the user's consent file is left as it is.
"""

from __future__ import annotations

import sys

PACKAGE = "openvino_telemetry"


def turn_off() -> None:
    """Make OpenVINO's and NNCF's telemetry fall back to their no-op stubs in this process. Call it before OpenVINO's
    converter or NNCF is imported: a module that bound the package already keeps it."""
    sys.modules[PACKAGE] = None  # type: ignore[assignment]
