"""What every CLS process needs to run: settings, logging, signal handling, GC tuning and the
broker connection. ``shared_models`` holds the contracts; this package is how a process lives.
"""
