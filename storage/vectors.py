"""Every vector of the index in memory, searched exactly.

Chroma's nearest-neighbour graph (HNSW) is approximate, and on a profile's writing it can
be badly so: a note unlike the thousands of passages around it may be reachable from none
of them, and then no query finds it, not even one of its own words (a 2,135-passage store
of repetitive files missed a note that scored 0.68 against 0.20 for everything else, at
any n_results short of all). A product a user searches for their own words must not.
A dot product with every vector is exact; at the sizes a person writes it costs a few
milliseconds, next to the query's embedding, so a search takes about as long as it did
through the graph (bench/results/ingest.md). Chroma keeps the vectors on disk.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: int
    score: float  # cosine similarity, 1 is identical


class VectorTable:
    """Unit vectors with their ids and document ids; rows are replaced by id. Room grows
    by doubling, so that many small additions (an import, chat messages) do not copy every
    vector each time."""

    def __init__(self):
        self.ids: list[str] = []
        self.row: dict[str, int] = {}
        self._vectors = np.empty((0, 0), dtype=np.float32)  # rows beyond len(ids) unused
        self._documents = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> np.ndarray:
        return self._vectors[:len(self)]

    @property
    def document_ids(self) -> np.ndarray:
        return self._documents[:len(self)]

    def put(self, ids: list[str], vectors, document_ids: list[int]) -> None:
        """Add rows, or replace those with the same id (the last of repeated ids wins)."""
        if not ids:
            return
        vectors = _unit(np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1))
        if not len(self):
            self._vectors = np.empty((0, vectors.shape[1]), dtype=np.float32)
        rows = []
        for chunk_id in ids:
            if chunk_id not in self.row:
                self.row[chunk_id] = len(self.ids)
                self.ids.append(chunk_id)
            rows.append(self.row[chunk_id])
        if len(self) > len(self._vectors):
            room = max(len(self), 2 * len(self._vectors))
            self._vectors = np.resize(self._vectors, (room, vectors.shape[1]))
            self._documents = np.resize(self._documents, room)
        self._vectors[rows] = vectors  # a repeated row takes its last vector
        self._documents[rows] = np.asarray(document_ids, dtype=np.int64)

    def remove(self, ids) -> None:
        gone = {self.row[i] for i in ids if i in self.row}
        if not gone:
            return
        keep = np.ones(len(self), dtype=bool)
        keep[list(gone)] = False
        kept = np.flatnonzero(keep)
        self._vectors[:len(kept)] = self._vectors[kept]
        self._documents[:len(kept)] = self._documents[kept]
        self.ids = [self.ids[r] for r in kept]
        self.row = {chunk_id: row for row, chunk_id in enumerate(self.ids)}

    def nearest(self, vector, k: int, before_document: int | None = None) -> list[Hit]:
        """The `k` most similar rows, best first; only those of documents before
        `before_document` when given."""
        if not len(self) or k <= 0:
            return []
        query = _unit(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        # einsum's own loop, not BLAS: right after the query's embedding, torch's worker
        # threads still spin, and BLAS's threads fighting them made the p95 4x slower.
        scores = np.einsum("ij,j->i", self.matrix, query)
        if before_document is not None:
            scores = np.where(self.document_ids < before_document, scores, -np.inf)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.ids[r], int(self.document_ids[r]), float(scores[r]))
                for r in top if scores[r] > -np.inf]


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
