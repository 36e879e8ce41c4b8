"""The domain core of CLS Backend, owned by no process.

The services (the rules of clusters, nodepools and status reports), the Redis store and its Lua
scripts, and the building of events. ``api_service`` (HTTP), ``status_ingester`` (the broker's
status reports) and ``event_jobs`` (outbox relay, reconcile loop) all act through it.
"""
