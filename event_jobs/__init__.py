"""Spec-change events: the outbox relay, the periodic reconcile loop and their leader locks."""

from event_jobs.pipeline import EventPipeline

__all__ = ["EventPipeline"]
