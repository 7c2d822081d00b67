"""Storage: the Parquet shards (the record of every video) and the Milvus vectors (its searchable copy)."""
