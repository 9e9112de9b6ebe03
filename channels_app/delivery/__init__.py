"""Deliver each inbound event to its agent exactly once (contract §6.3, §8).

Order: a pending `comms_wait_for_message` call of the agent → a push to its live MCP session (any
process, through orchestrator.agent_registry) → a signed POST to its callbackUrl (channels_app.callbacks,
retried by every server process and by the `deliver_callbacks` worker) → it waits for `waiting-messages`.

Every path first *claims* the row with a conditional UPDATE, so two processes (or two paths in one
process) never deliver the same message twice. The claim is a lease: `delivered_via` names the path
and `next_callback_at` says until when. A path that fails releases the row; a process that dies
mid-delivery lets its lease expire and the row becomes free again (delivered at least once, never
lost). Success sets `delivered_at` - only after the event was actually sent.

A freshly stored event gets its route before its transaction (delivery_route): for an agent whose
session lives in this process the row is *inserted* claimed, so after the commit the notification
goes out with no query before it; in a single process, one for an agent with a callbackUrl and no
session is inserted claimed for the callback; for an agent nobody can reach now (no waiter, no session,
no callback, a single process) nothing runs at all. Pushes and callbacks record their delivery in batches.

Row states (for undelivered rows, `delivered_at IS NULL`):
  free       delivered_via = ''                (next_callback_at, if set, is when the next callback is due)
  in flight  delivered_via = '<path>'          until next_callback_at; after that it counts as free

The stages, one module each: `claims` (the row leases every path takes, retention), `routing` (the route
an event gets before it is stored, and the hand-off after the commit), `live_push` (to the agent's MCP
session), `waiting` (the waiting queue and `comms_wait_for_message`'s long poll); the callback POSTs are
channels_app.callbacks.
"""
