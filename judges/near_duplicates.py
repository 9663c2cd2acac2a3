"""Near-duplicate conversations: MinHash signatures of word shingles (datasketch), candidate
pairs from LSH, clusters as connected components of the pairs whose estimated Jaccard reaches
the threshold, and in each cluster the member to keep (highest score, then lowest id).

The Jaccard similarity is the MinHash estimate (the share of equal signature values), not the
exact one over shingle sets: a pass over a grown corpus then needs only the stored signatures,
never the old conversations' text. With 128 permutations its standard error is at most 0.045.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rapport.config.constants import (
    DEDUP_LSH_MAX_THRESHOLD,
    DEDUP_LSH_WEIGHTS,
    DEDUP_SEED,
)
from rapport.store.dedup_rows import SIGNATURE_DTYPE, ClusterMember, DedupSettings

SCHEME = "affine32"  # datasketch 2's default: uint32 hash values, stored as they are


def shingles(text: str, size: int) -> list[bytes]:
    """The text's word `size`-shingles (case-folded, split on whitespace); a text shorter than
    `size` words is one shingle, an empty one none."""
    words = text.lower().split()
    if len(words) <= size:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)]


def signatures(texts: Iterable[str], settings: DedupSettings) -> list[np.ndarray | None]:
    """Each text's MinHash hash values (uint32, `num_perm` of them); None for a text without
    words. Texts are shingled one at a time (a batch's shingles at once would take hundreds of
    megabytes). CRC-32 (C, in the standard library) hashes the shingles: with SHA-1,
    datasketch's default, MinHash took 1.65× as long, and the affine32 scheme mixes the input
    hash with MurmurHash3's finalizer before permuting it anyway."""
    found: list[np.ndarray | None] = []

    def shingle_sets() -> Iterator[list[bytes]]:
        for text in texts:
            words = shingles(text, settings.shingle_size)
            if words:
                yield words
            else:  # lands in order: the generator asks for a text only once the last
                found.append(None)  # text's sketch is appended

    for sketch in MinHash.generator(
        shingle_sets(), num_perm=settings.num_perm, seed=DEDUP_SEED, hashfunc=zlib.crc32
    ):
        found.append(sketch.hashvalues.astype(SIGNATURE_DTYPE))
    return found


def _lean(values: np.ndarray) -> LeanMinHash:
    return LeanMinHash(seed=DEDUP_SEED, hashvalues=values, scheme=SCHEME)


def similar_pairs(matrix: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, estimated Jaccard) for i < j: the LSH candidates at or above `threshold`."""
    count, num_perm = matrix.shape
    if count < 2:
        return []
    lsh = MinHashLSH(
        threshold=min(threshold, DEDUP_LSH_MAX_THRESHOLD),
        num_perm=num_perm,
        weights=DEDUP_LSH_WEIGHTS,
    )
    with lsh.insertion_session() as session:
        for index, row in enumerate(matrix):
            session.insert(index, _lean(row), check_duplication=False)
    pairs = []
    for i, row in enumerate(matrix):  # sketches made again rather than held: less memory
        candidates = [j for j in lsh.query(_lean(row)) if j > i]
        if not candidates:
            continue
        estimates = (matrix[candidates] == matrix[i]).mean(axis=1)
        pairs += [(i, j, float(e)) for j, e in zip(candidates, estimates, strict=True)]
    return [pair for pair in pairs if pair[2] >= threshold]


def clusters(
    side: str,
    ids: Sequence[str],
    matrix: np.ndarray,
    scores: Mapping[str, float | None],
    threshold: float,
) -> list[ClusterMember]:
    """The members of every cluster of two or more (connected components of the similar
    pairs), each with its estimated Jaccard to the cluster's kept member: the highest score
    (unjudged conversations last), then the lowest conversation id."""
    pairs = similar_pairs(matrix, threshold)
    if not pairs:
        return []
    rows = np.array([p[0] for p in pairs])
    columns = np.array([p[1] for p in pairs])
    graph = coo_matrix((np.ones(len(pairs)), (rows, columns)), shape=(len(ids), len(ids)))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index in sorted({*rows.tolist(), *columns.tolist()}):
        members.setdefault(int(labels[index]), []).append(index)
    found = []
    for group in members.values():
        kept = min(group, key=lambda i: (-_score(scores.get(ids[i])), ids[i]))
        similarity = (matrix[group] == matrix[kept]).mean(axis=1)
        found += [
            ClusterMember(ids[i], side, ids[kept], float(s))
            for i, s in zip(group, similarity, strict=True)
        ]
    return sorted(found, key=lambda m: (m.cluster_id, not m.kept, m.conversation_id))


def _score(score: float | None) -> float:
    return float("-inf") if score is None else score
