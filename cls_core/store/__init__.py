"""Redis persistence: atomic guarded writes, records, indexes and the outbox."""

from cls_core.store.records import ClusterRecord, NodePoolRecord, StoredDoc
from cls_core.store.redis_store import RedisStore, TxnFailed
from cls_core.store.txn import Txn

__all__ = ["ClusterRecord", "NodePoolRecord", "RedisStore", "StoredDoc", "Txn", "TxnFailed"]
