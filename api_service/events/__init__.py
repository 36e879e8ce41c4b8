"""Spec-change events: the outbox relay, the periodic reconcile loop and their leader locks."""

from api_service.events.pipeline import EventPipeline

__all__ = ["EventPipeline"]
