"""The GPU sweep's summary: the benchmark's headline numbers computed from raw rows."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def summarize(monkeypatch):
    """The report's `summarize`, loaded from its file with bench/ on the path only for the
    test: left there, bench's train.py or convert.py could shadow modules of those names."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(
        "personalization_sweep_report", BENCH / "personalization_sweep_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report.summarize


BASE = {"a": (40.0, 39.0), "b": (20.0, 20.0)}


def rows(cross: dict[str, dict[str, float]], own_with_retrieval: dict[str, float]) -> list:
    found = [{"author": a, "base": p, "base+retrieval": r} for a, (p, r) in BASE.items()]
    found += [{"try": "t", "author": a, "adapter+retrieval": own_with_retrieval[a],
               "cross": cross[a], "steps": 5, "tokens": 1000, "epochs": 2.0, "gpu_s": 1.0}
              for a in BASE]
    return found


def test_cuts_margins_and_diagonal_follow_the_benchmarks_definitions(summarize):
    cross = {"a": {"a": 30.0, "b": 19.0}, "b": {"a": 38.0, "b": 15.0}}
    result = summarize(rows(cross, {"a": 28.0, "b": 16.0}), ["t"])["tries"]["t"]
    assert result["ppl_reduction_vs_base"] == pytest.approx((0.30 + 0.20) / 2)
    assert result["ppl_reduction_vs_rag"] == pytest.approx((1 - 28 / 39 + 0.20) / 2)
    # a: own gain 25%, gain on b 5%; b: own gain 25%, gain on a 5%
    assert result["specificity_margin_min"] == pytest.approx(0.20)
    assert result["diagonal_best"] is True
    assert result["largest_tokens_trained"] == 2000


def test_a_column_won_by_another_authors_adapter_is_not_diagonal_best(summarize):
    cross = {"a": {"a": 30.0, "b": 14.0}, "b": {"a": 38.0, "b": 15.0}}
    result = summarize(rows(cross, {"a": 28.0, "b": 16.0}), ["t"])["tries"]["t"]
    assert result["diagonal_best"] is False
    assert result["specificity_margin_min"] < 0


def test_a_try_missing_an_author_is_left_out(summarize):
    cross = {"a": {"a": 30.0, "b": 19.0}, "b": {"a": 38.0, "b": 15.0}}
    incomplete = rows(cross, {"a": 28.0, "b": 16.0})[:-1]
    assert summarize(incomplete, ["t"])["tries"] == {}
