"""The `detector` command: the composition root, above every other package.

It is the only place that wires the layers together: `detector` (the library) at the bottom, `export` (build-time
tools) and `api` (the service) above it, `ui` beside them. Each command group lives in `cli/commands/<group>.py` and
imports what it runs only when it runs, so a missing extra says what to install instead of hiding the command.
"""
