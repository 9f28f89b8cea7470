"""`freeze_startup_objects`: what is alive when it runs leaves the collector's passes, garbage does not survive it,
and what comes later is collected as before. Run in a child process: freezing the test process's own objects
would keep them out of every later test's collections."""

from __future__ import annotations

import textwrap

from tests.child_process import python_child

CHILD = textwrap.dedent(
    """
    import gc, weakref
    from detector.runtime.heap import freeze_startup_objects

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    kept = cycle()                                 # loaded at startup, lives on
    garbage = weakref.ref(cycle())                 # startup's garbage: a cycle nobody holds
    frozen = freeze_startup_objects()
    assert garbage() is None, "startup's garbage was frozen instead of freed"
    assert frozen > 1000 and frozen == gc.get_freeze_count()
    tracked = gc.get_objects()
    assert not any(o is kept for o in tracked), "an object alive at the freeze is still visited by the collector"
    assert len(tracked) < frozen / 10, (len(tracked), frozen)
    later = weakref.ref(cycle())                   # a request's cycle, after the freeze
    gc.collect()
    assert later() is None, "garbage made after the freeze is no longer collected"
    assert kept.other.other is kept                # frozen objects are untouched
    print("ok", frozen)
    """
)


def test_objects_alive_at_the_freeze_leave_the_collector_and_later_garbage_is_still_collected() -> None:
    assert python_child(CHILD, timeout=60).startswith("ok ")
