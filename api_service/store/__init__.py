"""Redis persistence: atomic guarded writes, records, indexes and the outbox."""

from api_service.store.records import ClusterRecord, NodePoolRecord
from api_service.store.redis_store import RedisStore, TxnFailed
from api_service.store.txn import Txn

__all__ = ["ClusterRecord", "NodePoolRecord", "RedisStore", "Txn", "TxnFailed"]
