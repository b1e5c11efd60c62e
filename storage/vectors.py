"""Every vector of the index in memory, searched exactly.

Chroma's nearest-neighbour graph (HNSW) is approximate, and on a profile's writing it can
be badly so: a note unlike the thousands of passages around it may be reachable from none
of them, and then no query finds it, not even one of its own words (a 2,135-passage store
of repetitive files missed a note that scored 0.68 against 0.20 for everything else, at
any n_results short of all). A product a user searches for their own words must not.
A dot product with every vector is exact and, at the sizes a person writes, faster than
the graph (bench/results/ingest.md); Chroma keeps the vectors on disk.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: int
    score: float  # cosine similarity, 1 is identical


class VectorTable:
    """Unit vectors with their ids and document ids; rows are replaced by id."""

    def __init__(self, dimension: int = 0):
        self.ids: list[str] = []
        self.row: dict[str, int] = {}
        self.document_ids = np.empty(0, dtype=np.int64)
        self.matrix = np.empty((0, dimension), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def put(self, ids: list[str], vectors, document_ids: list[int]) -> None:
        """Add rows, or replace those with the same id (the last of repeated ids wins)."""
        vectors = _unit(np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1))
        if not len(self):
            self.matrix = np.empty((0, vectors.shape[1]), dtype=np.float32)
        new_rows = []
        for position, chunk_id in enumerate(ids):
            row = self.row.get(chunk_id)
            if row is None:
                self.row[chunk_id] = len(self.ids)
                self.ids.append(chunk_id)
                new_rows.append(position)
            elif row < len(self.matrix):
                self.matrix[row] = vectors[position]
                self.document_ids[row] = document_ids[position]
            else:  # repeated within this call: the later one wins
                new_rows[row - len(self.matrix)] = position
        self.matrix = np.concatenate([self.matrix, vectors[new_rows]])
        self.document_ids = np.concatenate(
            [self.document_ids, np.asarray(document_ids, dtype=np.int64)[new_rows]])

    def remove(self, ids) -> None:
        gone = {self.row[i] for i in ids if i in self.row}
        if not gone:
            return
        kept = np.array([r for r in range(len(self.ids)) if r not in gone], dtype=np.int64)
        self.ids = [self.ids[r] for r in kept]
        self.row = {chunk_id: row for row, chunk_id in enumerate(self.ids)}
        self.matrix = self.matrix[kept]
        self.document_ids = self.document_ids[kept]

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
