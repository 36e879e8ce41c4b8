"""``python -m status_ingester`` (the consumer is being built)."""

if __name__ == "__main__":
    raise SystemExit("status_ingester: not implemented yet")
