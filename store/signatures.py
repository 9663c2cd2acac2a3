"""Near-duplicates in the store: each side's text of the conversations not hashed yet, read in
batches; the MinHash signatures (`minhash_signatures`) and the corpus's clusters
(`duplicate_clusters`) written back."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from rapport.store.arrow_rows import TIMESTAMP, insert_table
from rapport.store.dedup_rows import SIDES, SIGNATURE_DTYPE, ClusterMember, DedupSettings
from rapport.store.rows import utc_now
from rapport.store.transaction import transaction

_SIGNATURES = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("side", pa.string()),
        ("shingle_size", pa.int32()),
        ("num_perm", pa.int32()),
        ("signature", pa.binary()),
        ("created_at", TIMESTAMP),
    ]
)
_CLUSTERS = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("side", pa.string()),
        ("cluster_id", pa.string()),
        ("similarity", pa.float64()),
        ("threshold", pa.float64()),
        ("shingle_size", pa.int32()),
        ("num_perm", pa.int32()),
        ("created_at", TIMESTAMP),
    ]
)
_COMPLETE = "SELECT conversation_id FROM corpus_conversations WHERE status = 'complete'"


def unhashed_conversations(conn: duckdb.DuckDBPyConnection, settings: DedupSettings) -> list[str]:
    """The complete corpus conversations without signatures for these settings, in id order."""
    return [
        row[0]
        for row in conn.execute(
            f"""
            SELECT conversation_id FROM ({_COMPLETE}) c
            WHERE NOT EXISTS (
                SELECT 1 FROM minhash_signatures s
                WHERE s.conversation_id = c.conversation_id
                  AND s.shingle_size = ? AND s.num_perm = ?)
            ORDER BY conversation_id
            """,
            [settings.shingle_size, settings.num_perm],
        ).fetchall()
    ]


def side_texts(conn: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[tuple[str, str], str]:
    """(conversation_id, side) → that side's turns joined, for `ids` (sorted: the id range lets
    DuckDB skip the row groups outside it)."""
    rows = conn.execute(
        """
        SELECT conversation_id, role, string_agg(content, chr(10) ORDER BY turn_index)
        FROM messages
        WHERE conversation_id BETWEEN ? AND ?
          AND conversation_id IN (SELECT unnest(?::VARCHAR[]))
          AND role IN ('assistant', 'user')
        GROUP BY ALL
        """,
        [ids[0], ids[-1], list(ids)],
    ).fetchall()
    return {(cid, role): text for cid, role, text in rows}


def save_signatures(
    conn: duckdb.DuckDBPyConnection,
    keys: Sequence[tuple[str, str]],
    values: Sequence[np.ndarray | None],
    settings: DedupSettings,
) -> None:
    """Store each (conversation_id, side)'s signature (NULL for a side without words)."""
    now = utc_now()
    table = pa.Table.from_arrays(
        [
            pa.array([k[0] for k in keys], pa.string()),
            pa.array([k[1] for k in keys], pa.string()),
            pa.array([settings.shingle_size] * len(keys), pa.int32()),
            pa.array([settings.num_perm] * len(keys), pa.int32()),
            pa.array([None if v is None else v.tobytes() for v in values], pa.binary()),
            pa.array([now] * len(keys), TIMESTAMP),
        ],
        schema=_SIGNATURES,
    )
    insert_table(conn, "minhash_signatures", table, "INSERT OR REPLACE")


def load_signatures(
    conn: duckdb.DuckDBPyConnection,
    side: str,
    settings: DedupSettings,
    ids: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """The ids (in order) and signature matrix (one row each) of a side's complete corpus
    conversations with words, or of `ids` only."""
    assert side in SIDES
    only = "AND s.conversation_id IN (SELECT unnest(?::VARCHAR[]))" if ids is not None else ""
    if ids is not None and not ids:
        return [], np.empty((0, settings.num_perm), SIGNATURE_DTYPE)
    table = conn.sql(
        f"""
        SELECT s.conversation_id, s.signature FROM minhash_signatures s
        WHERE s.side = ? AND s.shingle_size = ? AND s.num_perm = ? AND s.signature IS NOT NULL
          AND s.conversation_id IN ({_COMPLETE}) {only}
        ORDER BY s.conversation_id
        """,
        params=[side, settings.shingle_size, settings.num_perm, *([list(ids)] if ids else [])],
    ).to_arrow_table()
    found = table.column("conversation_id").to_pylist()
    width = settings.num_perm * SIGNATURE_DTYPE.itemsize
    fixed = table.column("signature").combine_chunks().cast(pa.binary(width))  # no copy per row
    values = np.frombuffer(
        fixed.buffers()[1], dtype=SIGNATURE_DTYPE, count=len(found) * settings.num_perm
    )
    return found, values.reshape(len(found), settings.num_perm)


def judged_scores(conn: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Each judged conversation's mean judge score (what decides which member a cluster keeps)."""
    return dict(
        conn.execute("SELECT conversation_id, mean_score FROM conversation_judgement").fetchall()
    )


def replace_clusters(
    conn: duckdb.DuckDBPyConnection, members: Sequence[ClusterMember], settings: DedupSettings
) -> None:
    """`duplicate_clusters` becomes `members`, in one transaction."""
    now = utc_now()
    table = pa.Table.from_arrays(
        [
            pa.array([m.conversation_id for m in members], pa.string()),
            pa.array([m.side for m in members], pa.string()),
            pa.array([m.cluster_id for m in members], pa.string()),
            pa.array([m.similarity for m in members], pa.float64()),
            pa.array([settings.threshold] * len(members), pa.float64()),
            pa.array([settings.shingle_size] * len(members), pa.int32()),
            pa.array([settings.num_perm] * len(members), pa.int32()),
            pa.array([now] * len(members), TIMESTAMP),
        ],
        schema=_CLUSTERS,
    )
    with transaction(conn):
        conn.execute("DELETE FROM duplicate_clusters")
        insert_table(conn, "duplicate_clusters", table)
