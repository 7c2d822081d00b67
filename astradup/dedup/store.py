"""The dedup job's output on disk, ``<data_dir>/dedup/``: the Parquet parts of pairs, the manifest
of finished batches, and the pairs read back (the better direction of each)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from astradup.config import Config
from astradup.dedup.pairs import pair_schema, row_to_match, with_all_columns
from astradup.records import VideoMatch

MANIFEST = "manifest.jsonl"
PARTS = "parts"


def dedup_dir(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "dedup"


def atomic_bytes(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all (a unique temp file, fsynced, renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Manifest:
    """What the job has joined: finished batches -> the query ids they searched and their part.

    On disk one JSON line per finished batch, appended (and fsynced) after its part is in place: a
    batch costs one short append however large the library (a rewritten file would cost the whole
    manifest per batch). A line torn by a kill mid-append is ignored on load (its batch is re-run)."""

    batches: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        try:
            text = (root / MANIFEST).read_text()
        except FileNotFoundError:
            return cls({})
        batches: dict[str, dict[str, Any]] = {}
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                batches[entry["batch"]] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
        return cls(batches)

    def append(self, root: Path, name: str, entry: dict[str, Any]) -> None:
        entry = {"batch": name, **entry}
        path = root / MANIFEST
        with open(path, "a+b") as f:
            if f.seek(0, os.SEEK_END):
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")  # after a torn line, start a fresh one
            f.write((json.dumps(entry) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        self.batches[name] = entry

    def save(self, root: Path) -> None:
        """The whole manifest at once (temp file + rename)."""
        atomic_bytes(root / MANIFEST, "".join(json.dumps({"batch": k, **v}) + "\n"
                                               for k, v in self.batches.items()).encode())

    def joined(self) -> set[str]:
        return {v for b in self.batches.values() for v in b["ids"]}


def batch_name(ids: list[str]) -> str:
    """A batch is named by its ids, so a re-run that makes the same batch finds its part."""
    return "b-" + hashlib.blake2b("\n".join(sorted(ids)).encode(), digest_size=10).hexdigest()


def plan_batches(todo: Iterable[str], batch_size: int) -> list[tuple[str, list[str]]]:
    ids = sorted(set(todo))
    chunks = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    return [(batch_name(c), c) for c in chunks]


def write_part(root: Path, name: str, rows: list[dict[str, Any]]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=pair_schema())
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    rel = f"{PARTS}/{name}.parquet"
    atomic_bytes(root / rel, sink.getvalue().to_pybytes())
    return rel


def read_pairs(cfg: Config, live: set[str] | None = None) -> dict[tuple[str, str], tuple[str, VideoMatch]]:
    """(a, b) -> (query id, best match) over every part in the manifest, pairs of live ids only;
    the direction with the higher fused score wins (on a tie, the search from ``a``).

    The choice is made in Arrow (filter, sort, first of each pair), so only the pairs kept become
    Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = dedup_dir(cfg)
    tables = [pq.read_table(root / e["part"]) for e in Manifest.load(root).batches.values()
              if (root / e["part"]).is_file()]
    tables = [with_all_columns(t) for t in tables if t.num_rows]
    if not tables:
        return {}
    t = pa.concat_tables(tables)
    if live is not None:
        ids = pa.array(sorted(live), type=pa.string())
        t = t.filter(pc.and_(pc.is_in(t["a"], value_set=ids), pc.is_in(t["b"], value_set=ids)))
    t = t.append_column("from_a", pc.cast(pc.equal(t["query_id"], t["a"]), pa.int8()))
    t = t.sort_by([("a", "ascending"), ("b", "ascending"), ("fused", "descending"), ("from_a", "descending")])
    a = np.asarray(t["a"].to_pylist(), dtype=object)
    b = np.asarray(t["b"].to_pylist(), dtype=object)
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    kept = t.filter(pa.array(first)).drop_columns(["from_a"])
    return {(r["a"], r["b"]): (r["query_id"], row_to_match(r)) for r in kept.to_pylist()}
