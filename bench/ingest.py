"""Ingest throughput and search latency of the user's store (issue 2).

    .venv/bin/python bench/ingest.py [CORPUS_DIR] [--ingest-words N] [--sizes 1000,10000,50000]

Ingest: the corpus (*.txt) is cut into documents of about 350 words, written as files, and
imported through the real `Writing.add_paths` (read, chunk, embed with the packaged
MiniLM, SQLite + Chroma), embedding included. Baseline in the same run: the same files
one document at a time through `Writing.add_file` (one model call and one transaction per
document), which is what `add_paths` did before it embedded across files.

Search: `Index.search` (query embedding + exact search over the vectors in memory, k=4) at
each index size, and the index alone (`Index.search_vector`). The index is filled with
`Index.add` in bulk: vectors of real passages of the corpus and, to reach 10k and 50k
without embedding 50k passages, mixtures of two random real vectors plus a little noise,
renormalized. Baseline: Chroma's own nearest-neighbour query (HNSW, at its default graph
settings), which the index used before, on a second index of the same vectors in its own
folder; recall of both against exact numpy cosine. Building and forgetting (a compaction
after one delete) are timed for both.

Writes bench/results/ingest.md and bench/results/ingest.json.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np

from oppu.core.profile import Profile
from oppu.storage.chunking import split_passages
from oppu.storage.index import Index, default_embedder

RESULTS = Path(__file__).resolve().parent / "results"
DOCUMENT_WORDS = 350
K = 4
QUERIES = 60


def documents(corpus: Path, budget_words: int) -> list[str]:
    """The corpus as documents of about DOCUMENT_WORDS words, taken round-robin by book."""
    books = []
    for path in sorted(corpus.glob("*.txt")):
        pieces, current, words = [], [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            current.append(line)
            words += len(line.split())
            if words >= DOCUMENT_WORDS:
                pieces.append("\n\n".join(current))
                current, words = [], 0
        books.append(pieces)
    picked, words = [], 0
    for group in zip(*books):
        for piece in group:
            if words >= budget_words:
                return picked
            picked.append(piece)
            words += len(piece.split())
    return picked


def write_files(texts: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, text in enumerate(texts):
        paths.append(folder / f"doc-{i:05}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    return paths


def ingest_once(paths: list[Path], root: Path, name: str, batched: bool) -> dict:
    with Profile(name, root=root, embedder=default_embedder()) as profile:
        writing = profile.writing
        start = time.perf_counter()
        if batched:
            results = writing.add_paths(paths)
        else:
            results = [writing.add_file(p) for p in paths]
        seconds = time.perf_counter() - start
        assert all(r.status == "added" for r in results), "the bench files must all be new"
        words = sum(r.words for r in results)
        chunks = profile.index.count()
    return {"words": words, "documents": len(results), "chunks": chunks, "seconds": seconds,
            "words_per_s": words / seconds}


def synthetic_vectors(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors near the real ones: mixtures of two plus a little noise."""
    if count <= len(real):
        return real[:count]
    extra = count - len(real)
    a, b = rng.integers(0, len(real), (2, extra))
    weight = rng.uniform(0.2, 0.8, (extra, 1)).astype(np.float32)
    mixed = weight * real[a] + (1 - weight) * real[b]
    mixed += rng.normal(0, 0.02, mixed.shape).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.concatenate([real, mixed])


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def chromas_default_graph():
    """Indexes made meanwhile build Chroma's default nearest-neighbour graph (M 16,
    construction ef 100), as the index did before it searched the vectors itself."""
    import oppu.storage.index as index_module

    return patch.object(index_module, "CHEAP_GRAPH", {})


def timed_build(folder: Path, embedder, vectors: np.ndarray, texts: list[str]):
    """A fresh index in `folder` filled with `vectors` by `Index.add`, and its seconds."""
    size = len(vectors)
    index = Index(folder, embedder)
    start = time.perf_counter()
    index.add([f"c{i}" for i in range(size)], [texts[i % len(texts)] for i in range(size)],
              [i // 3 for i in range(size)], vectors)
    seconds = time.perf_counter() - start
    assert index.count() == size
    return index, seconds


def timed_forget(index: Index) -> float:
    """Seconds to compact `index` after deleting one vector: what a forget costs it."""
    index.delete(["c0"])
    start = time.perf_counter()
    index.compact()
    return time.perf_counter() - start


def embedding_precision(embedder, passages: list[str]) -> dict:
    """The embedding model as the product runs it (bf16 matmuls where the CPU does those
    fast) against fp32, on the same passages: words/s (best of 2) and the closeness."""
    from oppu.storage import cpu_bf16

    def best(runs: int = 2):
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            vectors = embedder.embed(passages)
            timings.append(time.perf_counter() - start)
        return vectors, words / min(timings)

    words = sum(len(p.split()) for p in passages)
    product, product_rate = best()
    with patch.object(cpu_bf16, "cpu_bf16_speedup", lambda: 0.0):  # as if bf16 were slow
        fp32, fp32_rate = best()
    return {"bf16": cpu_bf16.cpu_bf16_is_fast(), "words_per_s": product_rate,
            "fp32_words_per_s": fp32_rate,
            "min_cosine_to_fp32": float((product * fp32).sum(axis=1).min())}


def search_at(size: int, real: np.ndarray, texts: list[str], queries: list[str],
              folder: Path, rng: np.random.Generator) -> dict:
    embedder = default_embedder()
    vectors = synthetic_vectors(real, size, rng)
    index, build_s = timed_build(folder, embedder, vectors, texts)
    with chromas_default_graph():
        baseline, baseline_build_s = timed_build(folder.with_name(f"{folder.name}-defaults"),
                                                 embedder, vectors, texts)
    start = time.perf_counter()
    index.search_vector(real[0], K)  # the first search reads every vector into memory
    table_load_ms = (time.perf_counter() - start) * 1000
    table_mb = index._vectors.matrix.nbytes / 2**20

    timings = {name: [] for name in ("search", "embed", "index", "filtered", "chroma",
                                     "chroma_filter")}
    recall = {"index": [], "chroma": []}

    def timed(name, call, *args, **kwargs):
        start = time.perf_counter()
        value = call(*args, **kwargs)
        timings[name].append((time.perf_counter() - start) * 1000)
        return value

    def chroma(q, where=None):
        found = baseline._collection.query(query_embeddings=[q], n_results=K, where=where,
                                           include=["distances"])
        return [1.0 - d for d in found["distances"][0]]

    # Index-only timings apart from any embedding: right after a model call, torch's idle
    # worker threads still spin for a while and would slow whatever runs next.
    embedded = [timed("embed", embedder.embed, [query])[0] for query in queries]
    for q in embedded:
        hits = timed("index", index.search_vector, q, K, -1.0)
        timed("filtered", index.search_vector, q, K, -1.0, size // 6)
        hnsw = timed("chroma", chroma, q)
        timed("chroma_filter", chroma, q, {"document_id": {"$lt": size // 6}})
        # A hit counts if it is as close as the exact k-th: ties are common among the
        # mixed vectors, and either of two equally close passages is a right answer.
        kth = float(vectors[top_k(vectors, q)[-1]] @ q) - 1e-4
        recall["index"].append(sum(h.score >= kth for h in hits) / K)
        recall["chroma"].append(sum(score >= kth for score in hnsw) / K)
    for query in queries:
        timed("search", index.search, query, K, -1.0)
    start = time.perf_counter()
    index.ids()  # what every open's reconcile reads
    ids_ms = (time.perf_counter() - start) * 1000
    forget_s = timed_forget(index)
    with chromas_default_graph():
        baseline_forget_s = timed_forget(baseline)
    index.close()
    baseline.close()
    result = {"chunks": size, "build_s": build_s, "chroma_build_s": baseline_build_s,
              "forget_s": forget_s, "chroma_forget_s": baseline_forget_s,
              "list_ids_ms": ids_ms,
              "table_load_ms": table_load_ms, "table_mb": table_mb,
              "recall_at_4": statistics.mean(recall["index"]),
              "chroma_recall_at_4": statistics.mean(recall["chroma"])}
    for name, samples in timings.items():
        result[f"{name}_p50_ms"], result[f"{name}_p95_ms"] = percentiles(samples)
    return result


def top_k(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    scores = vectors @ query
    best = np.argpartition(-scores, K)[:K]
    return best[np.argsort(-scores[best])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=Path("/work/shared/corpora"))
    parser.add_argument("--ingest-words", type=int, default=20_000,
                        help="words imported per ingest run")
    parser.add_argument("--repeats", type=int, default=2, help="ingest runs of each kind")
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not sorted(args.corpus.glob("*.txt")):
        print(f"no *.txt files in {args.corpus}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    embedder = default_embedder()
    start = time.perf_counter()
    embedder.embed(["warm up"])
    load_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="oppu-bench-") as scratch:
        scratch = Path(scratch)
        texts = documents(args.corpus, args.ingest_words)
        paths = write_files(texts, scratch / "files")
        runs = {"batched": [], "one_at_a_time": []}
        for r in range(args.repeats):  # alternate, so machine noise hits both alike
            for kind in (["batched", "one_at_a_time"] if r % 2 == 0
                         else ["one_at_a_time", "batched"]):
                runs[kind].append(ingest_once(paths, scratch / "homes", f"{kind}-{r}",
                                              kind == "batched"))
                print(f"ingest {kind:<14} {runs[kind][-1]['words_per_s']:8.0f} words/s",
                      flush=True)
        batched = max(runs["batched"], key=lambda x: x["words_per_s"])
        naive = max(runs["one_at_a_time"], key=lambda x: x["words_per_s"])

        passages = [p for text in texts for p in split_passages(text)]
        real = np.asarray(embedder.embed(passages), dtype=np.float32)
        precision = embedding_precision(embedder, passages)
        print(f"embedding {precision['words_per_s']:.0f} words/s, fp32 "
              f"{precision['fp32_words_per_s']:.0f} words/s", flush=True)
        queries = [" ".join(p.split()[:12]) for p in rng.choice(passages, QUERIES)]
        searches = []
        for size in [int(s) for s in args.sizes.split(",")]:
            searches.append(search_at(size, real, passages, queries,
                                      scratch / f"index-{size}", rng))
            s = searches[-1]
            print(f"search {size:>6} chunks  p50 {s['search_p50_ms']:6.1f} ms  p95 "
                  f"{s['search_p95_ms']:6.1f} ms; index only p95 {s['index_p95_ms']:5.2f} ms "
                  f"(recall {s['recall_at_4']:.2f}), Chroma HNSW p95 {s['chroma_p95_ms']:5.2f} "
                  f"ms (recall {s['chroma_recall_at_4']:.2f})", flush=True)

    report = {
        "ingest_words_per_s": round(batched["words_per_s"], 1),
        "search_p95_ms": by_size(searches, "search_p95_ms", 2),
        "search_p50_ms": by_size(searches, "search_p50_ms", 2),
        "index_only_p95_ms": by_size(searches, "index_p95_ms", 3),
        "chroma_hnsw_p95_ms": by_size(searches, "chroma_p95_ms", 3),
        "recall_at_4": by_size(searches, "recall_at_4", 3),
        "chroma_hnsw_recall_at_4": by_size(searches, "chroma_recall_at_4", 3),
        "index_build_s": by_size(searches, "build_s", 2),
        "chroma_defaults_build_s": by_size(searches, "chroma_build_s", 2),
        "forget_s": by_size(searches, "forget_s", 2),
        "chroma_defaults_forget_s": by_size(searches, "chroma_forget_s", 2),
        "ingest_baseline_one_at_a_time_words_per_s": round(naive["words_per_s"], 1),
        "ingest_speedup_vs_baseline": round(batched["words_per_s"] / naive["words_per_s"], 2),
        "ingest_runs": runs,
        "search": searches,
        "real_passage_vectors": len(real),
        "embedder_load_s": round(load_s, 2),
        "embedding_precision": precision,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_before": load_before,
                    "load_avg_after": os.getloadavg()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "ingest.md").write_text(markdown(report, batched, naive))
    print(f"wrote {args.out / 'ingest.md'} and ingest.json")
    return 0


def by_size(searches: list[dict], key: str, digits: int) -> dict[str, float]:
    """One measurement of every index size, by the size, rounded."""
    return {str(s["chunks"]): round(s[key], digits) for s in searches}


def markdown(report: dict, batched: dict, naive: dict) -> str:
    machine = report["machine"]
    embedding = report["embedding_precision"]
    how = ("bf16 matmuls, which this CPU does fast" if embedding["bf16"]
           else "fp32: bf16 is not fast on this CPU")
    lines = [
        "# Ingest and search (bench/ingest.py)",
        "",
        (f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; "
        f"load average {machine['load_avg_before'][0]:.1f} before and "
        f"{machine['load_avg_after'][0]:.1f} after (other work shared the cores)."),
        "",
        "## Ingest (embedding included)",
        "",
        (f"{batched['documents']} documents of about {DOCUMENT_WORDS} words "
        f"({batched['words']} words, {batched['chunks']} passages) from the corpus, imported "
        "into a fresh profile; best of the runs in `ingest_runs`. The embedder was loaded "
        f"beforehand ({report['embedder_load_s']} s, not counted)."),
        "",
        "| path | words/s | seconds |",
        "| --- | ---: | ---: |",
        (f"| `Writing.add_paths` (passages of many files per model call) | "
        f"{batched['words_per_s']:.0f} | {batched['seconds']:.1f} |"),
        (f"| baseline: `Writing.add_file` one document at a time | "
        f"{naive['words_per_s']:.0f} | {naive['seconds']:.1f} |"),
        "",
        f"Speed-up: **{report['ingest_speedup_vs_baseline']}x**.",
        "",
        (f"The embedding model alone on those passages: {embedding['words_per_s']:.0f} "
         f"words/s as the product runs it ({how}) against {embedding['fp32_words_per_s']:.0f} "
         f"in fp32, {embedding['words_per_s'] / embedding['fp32_words_per_s']:.2f}x; smallest "
         f"cosine between a passage's two vectors {embedding['min_cosine_to_fp32']:.4f}."),
        "",
        "## Search latency (k=4)",
        "",
        (f"Index filled with `Index.add` in bulk: {report['real_passage_vectors']} vectors of "
        "real corpus passages, the rest mixtures of two random real vectors plus noise "
        "(renormalized). `search` is `Index.search(query)`: the query embedding plus the "
        "search, what a user waits for. `index only` is the search given the embedded query "
        "(`Index.search_vector`): a dot product with every vector, held in memory "
        "(`storage/vectors.py`; `load` is the first search after opening, which reads them "
        "from Chroma). Baseline: Chroma's own nearest-neighbour query (HNSW, default graph "
        "settings), which the index used before, on a second index of the same vectors in "
        "its own folder. `build s` is `Index.add` of them, whose graph is built as cheaply as "
        "Chroma allows since no search uses it; `forget s` the compaction after one delete, "
        "which rebuilds it; `Chroma …` the same with Chroma's default graph. Recall: the share of the top 4 at least "
        "as close as the exact 4th (ties count). `earlier-only` is `before_document` "
        "(retrieve only from earlier documents, as training does) keeping a sixth of the "
        "documents; Chroma's is its `where` filter. `list ids` is the id scan that every "
        "open's reconcile makes."),
        "",
        ("| chunks | search p50 ms | search p95 ms | query embed p50 ms | index only p50 ms "
        "| index only p95 ms | recall@4 | Chroma HNSW p50 ms | Chroma HNSW p95 ms "
        "| Chroma recall@4 | Chroma / index (p95) | earlier-only p95 ms "
        "| Chroma earlier-only p95 ms | load ms | memory MB | build s | Chroma build s "
        "| forget s | Chroma forget s | list ids ms |"),
        "|" + " ---: |" * 20,
    ]
    for s in report["search"]:
        lines.append(
            f"| {s['chunks']} | {s['search_p50_ms']:.1f} | {s['search_p95_ms']:.1f} | "
            f"{s['embed_p50_ms']:.1f} | {s['index_p50_ms']:.2f} | {s['index_p95_ms']:.2f} | "
            f"{s['recall_at_4']:.2f} | {s['chroma_p50_ms']:.2f} | {s['chroma_p95_ms']:.2f} | "
            f"{s['chroma_recall_at_4']:.2f} | {s['chroma_p95_ms'] / s['index_p95_ms']:.1f}x | "
            f"{s['filtered_p95_ms']:.2f} | {s['chroma_filter_p95_ms']:.2f} | "
            f"{s['table_load_ms']:.0f} | {s['table_mb']:.1f} | {s['build_s']:.1f} | "
            f"{s['chroma_build_s']:.1f} | {s['forget_s']:.1f} | {s['chroma_forget_s']:.1f} | "
            f"{s['list_ids_ms']:.0f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
