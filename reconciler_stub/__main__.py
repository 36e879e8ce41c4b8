"""``python -m reconciler_stub`` (the consumer is being built)."""

if __name__ == "__main__":
    raise SystemExit("reconciler_stub: not implemented yet")
