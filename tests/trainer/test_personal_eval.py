"""The four-configuration evaluation and `oppu eval`, on the tiny model, end to end."""

import math
import shutil

import pytest

from oppu.core.cli import main
from oppu.core.evaluation import (
    EvaluationError,
    evaluate_profile,
    stored_evaluation,
    unavailable_reason,
)
from oppu.core.training import run_training
from oppu.trainer.config import TrainConfig
from oppu.trainer.personal_eval import (
    CONFIGURATIONS,
    generation_items,
    heldout_layout,
    reduction,
    score_continuations,
)
from oppu.trainer.versions import read_meta, write_meta
from tests.support.training_setup import (  # noqa: F401 - fixtures
    FAST,
    base_cache_fixture,
    trainee_fixture,
    writing_template_fixture,
)


def test_layouts_score_the_same_text(trainee, tiny_gguf):
    from oppu.trainer.prepare import prepare_base

    tokenizer = prepare_base(tiny_gguf).load_tokenizer()
    ids = sorted(d.id for d in trainee.writing.documents())
    held = ids[-3:]
    config = TrainConfig(retrieval_k=2, seq_len=256)
    layout = heldout_layout(trainee.writing, tokenizer, config, held, retrieve_from_heldout=False)
    assert layout.plain.loss_tokens == layout.retrieval.loss_tokens > 0
    assert layout.retrieval.tokens > layout.plain.tokens  # the passages are in the prompts
    assert layout.retrieved_passages > 0

    held_texts = {trainee.writing.get(d).text for d in held}
    items = generation_items(trainee.writing, tokenizer, config, held, 3, exclude=set(held),
                             opening_words=20, continuation_words=20)
    assert len(items) == 3 and {i.document_id for i in items} <= set(held)
    for item in items:
        assert len(item.opening.split()) == len(item.continuation.split()) == 20
        assert (item.opening + " " + item.continuation) in " ".join(
            " ".join(t.split()) for t in held_texts)
        assert item.passages and not any(p in t for p in item.passages for t in held_texts)

    scores = score_continuations(items, [i.continuation for i in items])
    assert scores["rouge_l"] == pytest.approx(1.0) and scores["style"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="retrieval_k"):
        heldout_layout(trainee.writing, tokenizer, TrainConfig(retrieval_k=0), held)


def test_oppu_eval_measures_and_stores(trainee, capsys):
    with pytest.raises(EvaluationError, match="retrain first"):
        evaluate_profile(trainee)
    outcome = run_training(trainee, overrides=FAST | {"retrieval_k": 2, "learning_rate": 0.01})
    assert outcome.status == "succeeded", outcome.error

    progress = []
    result = evaluate_profile(trainee, outcome.version, generations=2, report=progress.append)
    assert set(result.perplexity) == set(CONFIGURATIONS)
    assert all(math.isfinite(p) and p > 1 for p in result.perplexity.values())
    assert result.perplexity["adapter"] != result.perplexity["base"]
    assert result.heldout_tokens > 0 and result.heldout_documents >= 1
    # Without retrieval, the adapter on the run's own held-out split is what the gate measured.
    gate = outcome.metrics
    assert result.perplexity["base+retrieval"] == pytest.approx(gate["base"]["perplexity"],
                                                               rel=1e-4)
    assert result.perplexity["adapter+retrieval"] == pytest.approx(gate["new"]["perplexity"],
                                                                  rel=1e-4)
    assert result.reduction_vs_base == pytest.approx(
        reduction(result.perplexity["adapter+retrieval"], result.perplexity["base"]))
    assert set(result.generation) == set(CONFIGURATIONS)
    for scores in result.generation.values():
        assert scores["items"] >= 1 and 0 <= scores["rouge_l"] <= 1 and 0 <= scores["style"] <= 1
        assert len(scores["examples"]) == scores["items"]
        assert all(isinstance(example["generated"], str) for example in scores["examples"])
    assert {p.phase for p in progress} >= {"prepare", "perplexity", "generate"}
    retrieval_changed_it = result.perplexity["base+retrieval"] != result.perplexity["base"]
    assert (result.retrieved_passages > 0) == retrieval_changed_it

    assert stored_evaluation(trainee, outcome.version) == result
    capsys.readouterr()
    assert main(["--profile", trainee.name, "eval", "--show", "--version", outcome.version]) == 0
    shown = capsys.readouterr().out
    assert "adapter + retrieval" in shown and f"{result.perplexity['base']:.2f}" in shown
    assert main(["--profile", trainee.name, "adapters"]) == 0
    listed = capsys.readouterr().out.splitlines()
    row = next(line for line in listed if f" {outcome.version} " in line)
    assert f" {result.reduction_vs_base:.0%} " in row  # the evaluation, in the versions list

    # A document longer than --max-words is cut to its opening words, not measured whole.
    smaller = evaluate_profile(trainee, outcome.version, generations=0, max_words=1)
    assert smaller.heldout_documents == 1 and smaller.generation == {}
    assert 0 < smaller.heldout_tokens < 10 < result.heldout_tokens


def test_eval_without_adapter_is_one_line(trainee, capsys):
    assert main(["--profile", trainee.name, "eval"]) == 1
    assert capsys.readouterr().err.strip() == (
        "oppu: no active adapter to evaluate: retrain first (Retrain my model, or `oppu train`)")
    assert main(["--profile", trainee.name, "eval", "--show"]) == 1
    assert "no active adapter to evaluate: retrain first" in capsys.readouterr().err
    assert main(["--profile", trainee.name, "eval", "--show", "--version", "v9"]) == 1
    assert "no adapter version 'v9'" in capsys.readouterr().err


def test_eval_refuses_what_it_cannot_measure_in_one_line(trainee, capsys):
    outcome = run_training(trainee, overrides=FAST)
    assert outcome.status == "succeeded", outcome.error
    assert unavailable_reason(trainee) is None
    measured = evaluate_profile(trainee, generations=0)
    folder = trainee.adapters_dir / outcome.version
    meta = read_meta(folder)

    def refused(match: str) -> None:
        assert match in unavailable_reason(trainee)
        capsys.readouterr()
        assert main(["--profile", trainee.name, "eval", "--generations", "0"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("oppu: ") and match in err and err.count("\n") == 1, err
        assert stored_evaluation(trainee) == measured  # the last result is kept

    for name in ("peft/adapter_model.safetensors", "adapter.gguf"):  # checked before any work
        moved = shutil.move(folder / name, folder.parent / "aside")
        refused(f"files are missing from {folder} ({name})")
        shutil.move(moved, folder / name)

    write_meta(folder, {**meta, "heldout_document_ids": []})
    refused("held out no writing to evaluate on")
    write_meta(folder, meta)

    for document_id in meta["heldout_document_ids"]:
        trainee.writing.forget(document_id)
    refused("all the writing adapter v1 held out has been deleted")


def test_an_opening_is_cut_in_the_words_the_store_counts(profile):
    from oppu.core.evaluation import _Openings

    unspaced, _ = profile.writing.add_text("note", "今日は雨でした。明日は晴れ。", "天気")
    spaced, _ = profile.writing.add_text("note", "Rain today, sun tomorrow.", "Weather")
    openings = _Openings(profile.writing, {unspaced: 3, spaced: 2})
    assert (openings.get(unspaced).text, openings.get(unspaced).words) == ("今日は", 3)
    assert (openings.get(spaced).text, openings.get(spaced).words) == ("Rain today,", 2)


def test_oppu_eval_says_when_no_passage_was_retrieved():
    from oppu.core.cli.eval_commands import format_evaluation
    from oppu.core.evaluation import Evaluation

    perplexity = dict.fromkeys(("base", "base+retrieval"), 84.9) | dict.fromkeys(
        ("adapter", "adapter+retrieval"), 63.7)
    shown = format_evaluation(Evaluation("v1", perplexity, 331, 1, {}, retrieved_passages=0))
    assert shown.splitlines()[-1] == ("note: no passage of your earlier writing was given as "
                                      "context with the held-out writing (none was similar "
                                      "enough, or none is older), so retrieval changed nothing "
                                      "here")
    assert "note:" not in format_evaluation(Evaluation("v1", perplexity, 331, 1, {}, 3))
