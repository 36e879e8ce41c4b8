"""Benchmarks of CLS Backend against bare baselines measured in the same run (``make bench``)."""
