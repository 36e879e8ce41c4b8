"""CLS Backend REST API: clusters and nodepools in Redis, events through a transactional outbox."""
