"""Every Qt list model of the app passes QAbstractItemModelTester through resets."""

from datetime import datetime
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester

from oppu.app.list_models import (
    ItemRole,
    conversations_model,
    documents_model,
    versions_model,
)
from oppu.core.adapters import AdapterVersion
from oppu.core.conversations import ConversationSummary
from oppu.storage.writing import DocumentSummary

NOW = datetime(2025, 5, 1, 12, 30)


def documents(n: int) -> list[DocumentSummary]:
    return [DocumentSummary(i, "note", f"Note {i}", 10 * i, NOW, f"preview {i}")
            for i in range(1, n + 1)]


def conversations(n: int) -> list[ConversationSummary]:
    return [ConversationSummary(i, f"Chat {i}", NOW, NOW, 2 * i) for i in range(1, n + 1)]


def versions(n: int) -> list[AdapterVersion]:
    return [AdapterVersion(f"v{i}", Path(f"/a/v{i}"), "base.gguf", "ab" * 32,
                           "trained", {"base": {"loss": 3.0}, "new": {"loss": 2.5 - i / 10}},
                           1000 * i, i == n, False, NOW, NOW if i == n else None)
            for i in range(n, 0, -1)]


@pytest.mark.parametrize("make_model, make_items", [
    (documents_model, documents), (conversations_model, conversations),
    (versions_model, versions),
])
def test_model_passes_the_tester_through_resets(qtbot, make_model, make_items):
    model = make_model()
    QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    for count in (0, 3, 1, 5, 0):
        model.set_items(make_items(count))
        assert model.rowCount() == count
        assert model.rowCount(model.index(0, 0)) == 0
        for row in range(count):
            index = model.index(row, 0)
            assert model.data(index, ItemRole) is model.item(row)
            assert isinstance(model.data(index, Qt.ItemDataRole.DisplayRole), str)
        assert model.data(model.index(count, 0), Qt.ItemDataRole.DisplayRole) is None
        assert model.data(QModelIndex()) is None


def test_versions_show_perplexity_and_the_active_marker():
    model = versions_model()
    model.set_items(versions(2))
    shown = [[model.data(model.index(r, c)) for c in range(model.columnCount())]
             for r in range(model.rowCount())]
    assert shown[0][0] == "v2  ● active" and shown[1][0] == "v1"
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert shown[0][headers.index("Perplexity")] == f"{model.item(0).perplexity():,.2f}"
    assert shown[0][headers.index("Base perplexity")] == "20.09"  # exp(3.0)
