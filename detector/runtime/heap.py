"""Keep what a long-running process loaded at its start out of the garbage collector's full passes.

CPython's full collection (generation 2) walks every container object the process holds, with the GIL held. In
`detector serve`, once the model is loaded, that is about 147,000 objects (FastAPI, pydantic, OpenVINO, NumPy,
SciPy through supervision), almost all of them modules' functions, classes and tables that live as long as the
process, and one pass took 73-94 ms on the 2-core AMD EPYC host. Under load one ran every 5-10 s (c=8 on the
640 px INT8 model: 7 in a minute), each a stop of every request in flight and of the model workers' Python side.
`gc.freeze()` (CPython's own remedy, the one its documentation gives for this) moves them to a permanent
generation no pass visits: a full pass then took 0.002 ms on the same heap. Frozen objects are still freed by
reference counting when dropped; only reference cycles among them are never collected, and those are what lives
as long as the process anyway. Young objects (a request's) are collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect what starting left behind, then move every object still alive out of the collector's passes;
    returns how many objects are frozen. Call once, when the process has loaded what it keeps."""
    gc.collect()  # startup's garbage is freed first, not frozen with the rest
    gc.freeze()
    return gc.get_freeze_count()
