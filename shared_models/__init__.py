"""Contracts shared by every CLS Backend service.

Everything a producer and a consumer must agree on lives here: the names of Redis keys,
exchanges and queues, resource and spec models, status reports, events, the error envelope and
the status aggregation rule. Nothing in this package talks to the network or reads the
environment: a process's settings, logging and broker connection are in ``cls_runtime``.
"""
