"""The shapes near-duplicate detection stores: the settings that key a signature, a cluster's
member as `duplicate_clusters` holds it, and the signature's value type.

They live in the store, below the judges' MinHash code (judges/near_duplicates.py) that
computes them, so that reading and writing signatures (store/signatures.py) needs nothing
from a layer above."""

from __future__ import annotations

import msgspec
import numpy as np

from rapport.config.constants import DEDUP_NUM_PERM, DEDUP_SHINGLE_WORDS, DEDUP_THRESHOLD

SIDES = ("assistant", "user")
SIGNATURE_DTYPE = np.dtype("<u4")  # datasketch's affine32 scheme: uint32 values, stored as they are


class DedupSettings(msgspec.Struct, frozen=True):
    threshold: float = DEDUP_THRESHOLD
    shingle_size: int = DEDUP_SHINGLE_WORDS
    num_perm: int = DEDUP_NUM_PERM


class ClusterMember(msgspec.Struct, frozen=True):
    conversation_id: str
    side: str
    cluster_id: str  # the kept member's conversation_id
    similarity: float  # estimated Jaccard to the kept member

    @property
    def kept(self) -> bool:
        return self.conversation_id == self.cluster_id
