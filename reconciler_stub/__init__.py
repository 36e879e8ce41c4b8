"""reconciler_stub"""
