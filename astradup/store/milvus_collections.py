"""The Milvus collections' layout: one per modality, their schemas and indexes, made or checked, then loaded.

Collections (``<prefix>_frames``, ``<prefix>_audio``, and ``<prefix>_phash`` only with
``vectors.phash: on``) hold one row per frame or audio window with its ``video_id`` and time, so a
hit says which video *and where*. Vectors are L2-normalised upstream, so inner product equals
cosine and skips a normalisation.

Every row has a deterministic primary key, ``"<video_id>/<row>"`` (a VARCHAR; ``row`` is the
frame's or window's position, also stored as a field). Collections made with the earlier layout
(INT64 auto-id keys) still open and work, with a warning (``legacy``); ``astradup reindex``
re-creates them keyed.

pHash codes are 256-bit. No search path reads them from Milvus (scoring takes the codes from the
shards, and the frame KNN already finds near-exact copies), so by default (``vectors.phash:
auto``, the same as ``off``) no pHash collection is made, on Lite or on a server. With ``on`` a
server stores them as ``BINARY_VECTOR(256)`` searched with HAMMING over a BIN_FLAT index (exact);
Milvus Lite has no binary vectors, so there the bits are stored as a 256-d float vector of +-1
searched by inner product: ``ip = 256 - 2 * hamming``, which is exact and uses the same
matrix-product path as the frame search. (0/1 floats with L2 would also give Hamming, but Lite's
brute-force L2 materialises a [queries, rows, 256] difference tensor.) A pHash collection an
earlier version made is left alone (not written, not loaded) until ``reindex`` drops it.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from astradup.errors import ConfigError
from astradup.store.milvus_client import LOG, MilvusConnection
from astradup.store.milvus_expr import PK_MAX, VIDEO_ID_MAX

PHASH_BITS = 256
PHASH_BYTES = PHASH_BITS // 8


def unpack_bits(codes: np.ndarray) -> np.ndarray:
    """uint8 [N, 32] packbits pHash -> float32 [N, 256] of 0/1 (same bit order as np.packbits)."""
    return np.unpackbits(np.ascontiguousarray(codes, dtype=np.uint8), axis=1).astype(np.float32)


class VectorCollections:
    """The collections of one prefix on one Milvus: names, dims, which exist in which layout.

    ``legacy``: collections with auto-id INT64 keys (the pre-upsert layout). ``phash_binary``:
    whether the pHash codes are a BINARY_VECTOR (a server) or +-1 floats (Lite).
    """

    def __init__(self, conn: MilvusConnection, prefix: str, visual_dim: int, audio_dim: int,
                 index_type: str, phash_enabled: bool) -> None:
        self.conn, self.lite = conn, conn.lite
        self.visual_dim, self.audio_dim, self.index_type = visual_dim, audio_dim, index_type
        self.phash_enabled = phash_enabled
        self.frames, self.phash, self.audio = f"{prefix}_frames", f"{prefix}_phash", f"{prefix}_audio"
        self.legacy: set[str] = set()
        self.phash_binary = False

    @property
    def in_use(self) -> tuple[str, ...]:
        """The collections this store writes and counts."""
        return (self.frames, self.phash, self.audio) if self.phash_enabled else (self.frames, self.audio)

    def open(self, recreate: bool = False) -> None:
        """Create missing collections, check dims of existing ones, load those in use. ``recreate``
        drops this prefix's collections first (``reindex``: the shards refill them, whatever dims or
        layout the old ones had; a pHash collection made earlier goes too)."""
        if recreate:
            for name in (self.frames, self.phash, self.audio):
                if self.conn.call(f"has {name}", lambda c, n=name: c.has_collection(n)):
                    self.conn.call(f"drop {name}", lambda c, n=name: c.drop_collection(n))
        self.phash_binary = self._open_collections()
        self.conn.loaded = self.in_use

    def codes_to_field(self, codes: np.ndarray) -> list[Any]:
        """Packed pHash -> what the ``code`` field stores: bytes (binary) or +-1 floats (Lite)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, PHASH_BYTES)
        if self.phash_binary:
            return [c.tobytes() for c in codes]
        return list(unpack_bits(codes) * 2.0 - 1.0)

    def _open_collections(self) -> bool:
        """Create missing collections, check dims of existing ones, load all; returns pHash mode."""
        existing = set(self.conn.call("list_collections", lambda c: c.list_collections()))
        self.legacy = set()
        for name, field, dim in ((self.frames, "vector", self.visual_dim), (self.audio, "vector", self.audio_dim)):
            if name in existing:
                self._check_dim(name, field, dim)
            else:
                self._create(name, self._schema(name, field, DataType.FLOAT_VECTOR, dim), field, "IP")
        if not self.phash_enabled:
            if self.phash in existing:
                LOG.info("collection %s is not used (vectors.phash: off here; scoring reads the codes from "
                         "the shards): `astradup reindex` drops it", self.phash)
            self._load_all()
            return False
        if self.phash in existing:
            kind, dim = self._field(self.phash, "code")
            if dim != PHASH_BITS:
                raise ConfigError(f"collection {self.phash} has code dim {dim}, expected {PHASH_BITS}")
            binary = kind == DataType.BINARY_VECTOR
        else:
            binary = False
            if not self.lite:  # Lite rejects BINARY_VECTOR; a server may too (old or restricted)
                try:
                    self._create(self.phash, self._schema(self.phash, "code", DataType.BINARY_VECTOR, PHASH_BITS),
                                 "code", "HAMMING", index_type="BIN_FLAT")
                    binary = True
                except MilvusException:
                    binary = False
            if not binary:
                # No query path searches pHash codes (scoring reads them from the shards), so on
                # Lite an HNSW graph over them was 2.1 MB per hour of video for nothing: FLAT
                # keeps them searchable (exact) at the cost of the raw codes only.
                self._create(self.phash, self._schema(self.phash, "code", DataType.FLOAT_VECTOR, PHASH_BITS),
                             "code", "IP", index_type="FLAT" if self.lite else None)
        if not self.lite and self.phash not in existing:  # another writer may have created it first
            binary = self._field(self.phash, "code")[0] == DataType.BINARY_VECTOR
        self._load_all()
        return binary

    def _load_all(self) -> None:
        for name in self.in_use:
            if self._field(name, "id")[0] == DataType.INT64:
                self.legacy.add(name)
            # A reopened Lite database (and any server collection) starts released; search needs it
            # loaded. A collection another writer has just created may not have its index yet.
            self.conn.call(f"load {name}", lambda c, n=name: c.load_collection(n), retry_if=_index_pending)
        if self.legacy:
            LOG.warning("collections %s use auto-id keys: writes there are delete-then-insert, which two "
                        "concurrent writers can duplicate; run `astradup reindex` to re-create them with "
                        "per-row keys", sorted(self.legacy))

    def _schema(self, name: str, field: str, dtype: DataType, dim: int) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=PK_MAX)
        schema.add_field("video_id", DataType.VARCHAR, max_length=VIDEO_ID_MAX)
        schema.add_field("row", DataType.INT32)
        if name == self.audio:
            schema.add_field("t_start", DataType.FLOAT)
            schema.add_field("t_end", DataType.FLOAT)
        else:
            schema.add_field("t", DataType.FLOAT)
        schema.add_field(field, dtype, dim=dim)
        return schema

    def _create(self, name: str, schema: Any, field: str, metric: str, index_type: str | None = None) -> None:
        """Create a collection with its vector index; a failed create leaves no half-made collection
        (the pHash fallback to float codes re-creates the same name). Another process creating the
        same collection at the same moment (two jobs starting on an empty server) wins: this one
        then uses that collection as it finds it."""
        # Strong: a delete followed by an insert or a count is seen by the very next call.
        try:
            self.conn.call(f"create {name}",
                       lambda c: c.create_collection(name, schema=schema, consistency_level="Strong"))
        except MilvusException:
            if self.conn.call(f"has {name}", lambda c: c.has_collection(name)):
                return  # made by another writer just now: its creator builds its indexes
            raise
        try:
            params = self.conn.client.prepare_index_params()
            params.add_index(field_name=field, index_type=index_type or self.index_type, metric_type=metric)
            # pymilvus polls a created index every 0.5 s until built (3 s for our six indexes). Lite
            # builds it inside the RPC, so skip the poll there; a server gets the usual wait.
            try:
                self.conn.call(f"index {name}", lambda c: c.create_index(name, params, sync=not self.lite))
            except MilvusException as e:
                if "already exist" not in str(e.message).lower():
                    raise  # "already exists": a concurrent creator of the same collection was first
            self._index_video_id(name)
        except BaseException:
            self.conn.call(f"drop {name}", lambda c: c.drop_collection(name))
            raise

    def _index_video_id(self, name: str) -> None:
        """delete / get_frames / has_video filter on video_id; a scalar index keeps them off full scans.

        INVERTED exists from Milvus 2.4 (and in Lite); a 2.3 server only takes Trie on a VARCHAR.
        Without either the filters still work, by scan, so the last resort is no scalar index.
        """
        kinds = ("INVERTED", "Trie")
        if not self.lite and self.conn.server_version() < (2, 4):
            kinds = ("Trie",)  # asking for INVERTED first would only log a refused RPC
        for kind in kinds:
            params = self.conn.client.prepare_index_params()
            params.add_index(field_name="video_id", index_type=kind)
            try:
                self.conn.call(f"index {name}.video_id", lambda c, p=params: c.create_index(name, p, sync=not self.lite))
                return
            except MilvusException as e:
                logging.getLogger(__name__).info("%s: %s index on video_id refused (%s)", name, kind, e.message)

    def _field(self, name: str, field: str) -> tuple[Any, int]:
        for f in self.conn.call(f"describe {name}", lambda c: c.describe_collection(name))["fields"]:
            if f["name"] == field:
                return f["type"], int(f.get("params", {}).get("dim", 0))
        raise ConfigError(f"collection {name} has no field {field!r}; it was not created by AstraDup")

    def _check_dim(self, name: str, field: str, dim: int) -> None:
        _, have = self._field(name, field)
        if have != dim:
            raise ConfigError(
                f"collection {name} holds {have}-d vectors but {dim}-d were configured (another "
                f"embedder, or another vectors.projection). Run `astradup reindex` to rebuild the "
                f"collections from the shards, or use a new collection_prefix.")



def _index_pending(exc: BaseException) -> bool:
    """A load refused because the collection has no index yet (code 700): its creator is still
    building it."""
    return isinstance(exc, MilvusException) and (exc.code == 700 or "index not found" in str(exc.message).lower()
                                                  or "index doesn't exist" in str(exc.message).lower())



__all__ = ["PHASH_BITS", "PHASH_BYTES", "VectorCollections", "unpack_bits"]
