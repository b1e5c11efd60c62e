"""LoRA training: the config, the fused pieces against their plain versions, real runs."""

import math
import time
from dataclasses import fields, replace

import pytest
import torch
import torch.nn.functional as F

from oppu.core.settings import Settings
from oppu.trainer.config import ALL_LINEAR, PRESETS, TrainConfig
from oppu.trainer.dataset import build_dataset
from oppu.trainer.evaluate import heldout_metrics
from oppu.trainer.fused import (
    COPY,
    fuse,
    fused_rotary,
    keep_frozen_copies,
    release_frozen_copies,
    weight_as,
)
from oppu.trainer.lora import Stopped, train_lora, wrap_lora
from oppu.trainer.loss import linear_cross_entropy
from tests.support.sample_writing import add_notes

# fp32 pinned, so that these runs do the same on every CPU (bf16 has tests of its own);
# epochs enough that `max_steps` decides the length.
# Every projection adapted (not the product's default targets): the trainer's numerics are
# under test here, and six steps on the random tiny model then move its loss clearly.
FAST = TrainConfig(seq_len=256, batch_size=2, retrieval_k=0, min_words=200, max_steps=6,
                   epochs=2.0, learning_rate=3e-3, heldout_fraction=0.2, precision="fp32",
                   rank=16, alpha=32.0, target_modules=ALL_LINEAR)


@pytest.fixture(scope="module")
def notes_dataset(tmp_path_factory, embedder, tiny_tokenizer):
    from oppu.core.profile import Profile

    root = tmp_path_factory.mktemp("trainee")
    with Profile("trainee", root=root, embedder=embedder) as profile:
        add_notes(profile, count=8, words_each=120, seed=5)
        return build_dataset(profile.writing, tiny_tokenizer, FAST)


def test_the_config_validates_early_and_explains_every_field():
    assert all(TrainConfig.help()[f.name] for f in fields(TrainConfig))
    for bad, message in [({"rank": 0}, "rank must be at least 1"),
                         ({"learning_rate": 2.0}, "learning_rate"),
                         ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
                         ({"heldout_fraction": 1.0}, "heldout_fraction"),
                         ({"seq_len": 8}, "seq_len"),
                         ({"precision": "fp16"}, "precision must be one of auto, fp32, bf16")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)
    saved = PRESETS["thorough"].to_dict()
    assert saved["format"] == 1 and saved["app_version"]
    assert TrainConfig.from_dict(saved) == PRESETS["thorough"]
    assert Settings().training_preset == "balanced"
    assert set(PRESETS) == {"quick", "balanced", "thorough"}
    assert TrainConfig(target_modules="down_proj").target_modules == ("down_proj",)


def test_the_chunked_loss_matches_full_logits_in_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=generator, requires_grad=True)
    weight = torch.randn(100, 16, generator=generator)
    targets = torch.randint(0, 100, (37,), generator=generator)
    chunked = linear_cross_entropy(hidden, weight, targets, chunk_rows=8)
    (grad,) = torch.autograd.grad(chunked * 0.5, hidden)
    full = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (expected,) = torch.autograd.grad(full * 0.5, hidden)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="frozen"):
        linear_cross_entropy(hidden, weight.requires_grad_(), targets)


def test_the_fused_rotary_embedding_matches_the_stock_formula():
    from transformers.models.llama.modeling_llama import rotate_half

    generator = torch.Generator().manual_seed(2)
    q = torch.randn(2, 4, 9, 16, generator=generator, requires_grad=True)
    k = torch.randn(2, 2, 9, 16, generator=generator, requires_grad=True)
    angles = torch.randn(2, 9, 8, generator=generator)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    fast = fused_rotary(q, k, cos, sin)
    stock = [x * cos[:, None] + rotate_half(x) * sin[:, None] for x in (q, k)]
    weights = [torch.randn(x.shape, generator=generator) for x in (q, k)]
    fast_grads = torch.autograd.grad(sum((w * y).sum() for w, y in zip(weights, fast)), (q, k))
    stock_grads = torch.autograd.grad(sum((w * y).sum() for w, y in zip(weights, stock)), (q, k))
    for got, expected in zip([*fast, *fast_grads], [*stock, *stock_grads]):
        torch.testing.assert_close(got, expected)


def _lora_outputs(tiny_base, fused: bool, autocast: bool = False):
    """Logits and LoRA gradients of the tiny model with a non-trivial adapter."""
    ids = torch.randint(0, 49152, (1, 40), generator=torch.Generator().manual_seed(1))
    model = wrap_lora(tiny_base.load_model(), TrainConfig(seed=3, target_modules=ALL_LINEAR))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; make the adapter matter
            torch.nn.init.normal_(parameter, std=0.1, generator=torch.Generator()
                                  .manual_seed(len(name)))
    if fused:
        assert fuse(model) == 2 * 7 + 2 * 2 + 1 + 2  # LoRA projections, norms, MLPs
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids, use_cache=False).logits.float()
    logits.square().mean().backward()
    return model, logits.detach(), {n: p.grad for n, p in model.named_parameters()
                                    if p.requires_grad}


def test_the_fused_layers_compute_what_peft_computes(tiny_base):
    _, plain, plain_grads = _lora_outputs(tiny_base, fused=False)
    _, fast, fast_grads = _lora_outputs(tiny_base, fused=True)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
    assert plain_grads.keys() == fast_grads.keys() and len(plain_grads) == 28
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-5, rtol=1e-3)


def test_under_bf16_autocast_the_fused_layers_agree_with_peft_and_keep_fp32_masters(tiny_base):
    _, reference, reference_grads = _lora_outputs(tiny_base, fused=False)
    _, plain, plain_grads = _lora_outputs(tiny_base, fused=False, autocast=True)
    model, fast, fast_grads = _lora_outputs(tiny_base, fused=True, autocast=True)

    def relative_error(got, expected):
        return float((got - expected).norm() / expected.norm())

    # bf16 keeps about 3 significant digits (gradients here are off by 3-7% with peft's
    # own forward too): the fused path must be as close to fp32 as peft's is.
    assert relative_error(fast, reference) < 0.02
    assert relative_error(fast, reference) < 1.25 * relative_error(plain, reference) + 0.002
    for name, grad in reference_grads.items():
        assert fast_grads[name].dtype == torch.float32  # fp32 masters get fp32 gradients
        assert relative_error(fast_grads[name], grad) < 0.1, name
        assert relative_error(fast_grads[name], grad) < 1.25 * relative_error(
            plain_grads[name], grad) + 0.01, name
    assert not any(COPY in m.__dict__ for m in model.modules())  # none outside training


def test_training_keeps_bf16_copies_of_the_frozen_weights_only_while_it_runs(tiny_base):
    model = wrap_lora(tiny_base.load_model(), TrainConfig(seed=3, target_modules=ALL_LINEAR))
    model.get_base_model().get_output_embeddings().weight.requires_grad_(False)
    assert keep_frozen_copies(model, torch.bfloat16) == 2 * 7 + 1  # projections, output
    copies = [m.__dict__[COPY] for m in model.modules() if COPY in m.__dict__]
    assert all(c.dtype == torch.bfloat16 and not c.requires_grad for c in copies)
    projection = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert weight_as(projection, torch.bfloat16) is projection.__dict__[COPY]
    assert weight_as(projection, torch.float32) is projection.weight
    release_frozen_copies(model)
    assert not any(COPY in m.__dict__ for m in model.modules())
    fresh = weight_as(projection, torch.bfloat16)  # no kept copy: a cast, made anew
    torch.testing.assert_close(fresh.float(), projection.weight, atol=0.02, rtol=0.01)
    trainable = torch.nn.Linear(4, 4)  # a cast of a trainable weight keeps its gradient
    assert weight_as(trainable, torch.bfloat16).requires_grad


def test_auto_precision_picks_bf16_only_where_the_cpu_runs_it_fast(monkeypatch):
    from oppu.storage import cpu_bf16
    from oppu.trainer import precision

    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        precision.resolve_precision("fp8", "cpu")
    monkeypatch.setattr(cpu_bf16, "cpu_bf16_speedup", lambda: 7.7)  # AMX
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(cpu_bf16, "cpu_bf16_speedup", lambda: 0.4)  # emulated bf16
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.undo()
    measured = cpu_bf16.cpu_bf16_speedup()  # the real measurement, on this CPU
    assert math.isfinite(measured) and measured > 0


def test_training_lowers_the_loss_and_reports_each_step(tiny_base, notes_dataset):
    model = tiny_base.load_model()
    before = heldout_metrics(model, notes_dataset.train)["loss"]
    reports = []
    result = train_lora(model, notes_dataset, FAST, reports.append, lambda: False)

    assert [r["step"] for r in reports] == list(range(1, 7))
    assert all(r["phase"] == "train" and r["total"] == 6 for r in reports)
    assert all(math.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in reports)
    assert reports[-1]["eta_s"] == 0
    assert result.steps == 6 and [p[0] for p in result.loss_curve] == list(range(1, 7))
    rows = notes_dataset.train
    assert result.tokens <= 6 * FAST.batch_size * rows.input_ids.shape[1]
    assert 0 < result.loss_tokens < result.tokens and result.seconds > 0
    after = heldout_metrics(result.peft_model, notes_dataset.train)["loss"]
    assert after < before - 1.0
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    trainable = [n for n, p in result.peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_bf16_training_follows_the_fp32_run_step_for_step(tiny_base, notes_dataset):
    runs = {}
    for precision in ("fp32", "bf16"):
        runs[precision] = train_lora(tiny_base.load_model(), notes_dataset,
                                     replace(FAST, precision=precision), lambda _r: None,
                                     lambda: False)
    bf16, fp32 = runs["bf16"], runs["fp32"]
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert bf16.tokens == fp32.tokens and bf16.steps == fp32.steps
    for (_, got), (_, expected) in zip(bf16.loss_curve, fp32.loss_curve, strict=True):
        assert got == pytest.approx(expected, rel=0.03)
    assert bf16.loss_curve[-1][1] < bf16.loss_curve[0][1] - 1.0
    assert not any(COPY in m.__dict__ for m in bf16.peft_model.modules())


def test_a_stop_request_ends_training_before_the_next_micro_batch(tiny_base, notes_dataset):
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) >= 3

    with pytest.raises(Stopped):
        train_lora(tiny_base.load_model(), notes_dataset, FAST, lambda _r: None, should_stop)
    assert len(asked) == 3  # checked before every micro-batch, acted on at once


def test_a_time_budget_shortens_the_schedule_instead_of_failing(tiny_base, notes_dataset):
    reports = []
    result = train_lora(tiny_base.load_model(), notes_dataset,
                        replace(FAST, max_minutes=1e-6), reports.append, lambda: False)
    assert result.steps == 2 and result.ended_by == "time budget"
    assert result.planned_steps == 6 and reports[-1]["total"] == 2


def test_time_spent_in_report_is_not_training_time(tiny_base, notes_dataset):
    """A caller that measures inside `report` (the learning curve) does not eat the budget."""
    def slow_report(_progress):
        time.sleep(1.5)  # 6 steps: 9 s of "measuring" against a 6 s budget

    result = train_lora(tiny_base.load_model(), notes_dataset,
                        replace(FAST, max_minutes=0.1), slow_report, lambda: False)
    assert result.steps == result.planned_steps == 6 and result.ended_by == "schedule"
    assert result.seconds < 6


@pytest.mark.slow
def test_the_bundled_model_prepares_and_trains_a_few_steps(bundled_base, profile):
    base = bundled_base
    assert (base.n_layer, base.n_head, base.n_head_kv) == (30, 9, 3)
    add_notes(profile, count=10, words_each=150, seed=7)
    config = replace(PRESETS["balanced"], seq_len=512, max_steps=3, batch_size=1,
                     min_words=500, learning_rate=1e-3)
    dataset = build_dataset(profile.writing, base.load_tokenizer(), config)
    model = base.load_model()
    before = heldout_metrics(model, dataset.heldout)
    result = train_lora(model, dataset, config, lambda _r: None, lambda: False)
    after = heldout_metrics(result.peft_model, dataset.heldout)
    assert result.steps == 3 and all(math.isfinite(loss) for _, loss in result.loss_curve)
    assert 1.0 < before["perplexity"] < 1000 and after["tokens"] == before["tokens"] > 0
    assert after["loss"] < before["loss"]
