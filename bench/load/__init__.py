"""Load generators run in a separate process: wrk when installed, else a Python asyncio client."""
