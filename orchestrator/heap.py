"""The garbage collector of a server process, set for a long-running server (docs/decisions/004-garbage-collection.md).

Python's cycle collector runs whenever container allocations outnumber deallocations by 700, and
from time to time walks every object the process holds. A server holds a few hundred thousand
objects from start-up (Django, the MCP SDK, pydantic's schemas) that live as long as it does: each
full collection walked them all, 0.15–0.6 s with every thread stopped, which every call in flight then
waited out; and the frequent young collections re-walked the objects of the calls in flight, which
then aged into the older generations and made the full collections come round (bench/HISTORY.md,
issue 14 item 12). So, once the server has started:

- everything alive then is moved out of the collector's sight (`gc.freeze()`): it is never walked
  again, and full collections walk only what the process allocated since;
- the youngest generation is collected every `GC_YOUNG_THRESHOLD` net allocations instead of 700: most
  of what a call allocates is freed by reference counting before a collection sees it, so fewer
  collections walk fewer objects of calls still in flight.

Reference cycles are still collected, only less often.
"""

from __future__ import annotations

import gc

from django.conf import settings


def settle_after_startup() -> None:
    """Collect once, freeze what is left, and set the young generation's threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(settings.GC_YOUNG_THRESHOLD, middle, old)
