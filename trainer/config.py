"""A training run's configuration and the presets, without torch: the app and the command
line read them (choices, the writing a first model needs) without loading the trainer."""

from dataclasses import asdict, dataclass, field, fields, replace

CONFIG_FORMAT = 1
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", *MLP_PROJECTIONS)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


class NotEnoughWriting(ValueError):
    def __init__(self, words: int, needed: int):
        super().__init__(f"not enough writing yet: {words:,} words, and a model needs at "
                         f"least {needed:,}; add notes or import files first")
        self.words, self.needed = words, needed


def _field(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    rank: int = _field(48, "LoRA rank r: the adapter's capacity")
    alpha: float = _field(96.0, "LoRA alpha; the update is scaled by alpha / rank")
    dropout: float = _field(0.0, "dropout on the LoRA input (0 is fastest)")
    target_modules: tuple[str, ...] = _field(("down_proj",),
                                             "projections that get a LoRA adapter")
    epochs: float = _field(1.0, "passes over the training rows")
    learning_rate: float = _field(3e-3, "peak AdamW learning rate")
    max_steps: int = _field(0, "cap on optimizer steps (0: no cap)")
    max_minutes: float = _field(9.0, "time budget for training; the schedule is shortened "
                                      "to fit it (0: no budget)")
    warmup_ratio: float = _field(0.06, "fraction of the steps with a linear warmup")
    weight_decay: float = _field(0.0, "AdamW weight decay")
    batch_size: int = _field(2, "packed rows per optimizer step")
    seq_len: int = _field(1024, "tokens per packed row; an item never exceeds it")
    grad_clip: float = _field(1.0, "gradient norm clip (0: none)")
    retrieval_k: int = _field(1, "passages of older writing in each training prompt")
    answer_items: int = _field(96, "at most this many questions, with passages of the "
                                   "writing, answered by the base model and trained on too, "
                                   "so that chat with the adapter still answers (one per "
                                   "500 words; 0: none)")
    retrieval_min_score: float = _field(0.2, "passages less similar than this are left out")
    heldout_fraction: float = _field(0.15, "share of documents held out for evaluation")
    min_words: int = _field(1000, "training needs at least this many words of writing")
    seed: int = _field(0, "seed of the split, the row order and the LoRA initialization")
    device: str = _field("auto", "auto, cpu or cuda")
    precision: str = _field("auto", "auto (bf16 matmuls on CUDA and on CPUs where they are "
                                    "natively fast, such as with AMX; fp32 otherwise), "
                                    "fp32 or bf16")
    curve_points: int = _field(3, "held-out measurements during training, for the learning "
                                  "curve (their time is not counted as training time)")

    def __post_init__(self):
        targets = self.target_modules
        # one name, not its letters
        targets = (targets,) if isinstance(targets, str) else tuple(targets)
        object.__setattr__(self, "target_modules", targets)
        checks = [
            (self.rank >= 1, "rank must be at least 1"),
            (self.alpha > 0, "alpha must be positive"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (len(self.target_modules) > 0, "target_modules must not be empty"),
            (self.epochs > 0, "epochs must be positive"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (self.max_steps >= 0, "max_steps must be 0 or more"),
            (self.max_minutes >= 0, "max_minutes must be 0 or more"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be 0 or more"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (64 <= self.seq_len <= 32768, "seq_len must be between 64 and 32768"),
            (self.grad_clip >= 0, "grad_clip must be 0 or more"),
            (self.retrieval_k >= 0, "retrieval_k must be 0 or more"),
            (self.answer_items >= 0, "answer_items must be 0 or more"),
            (0 <= self.heldout_fraction < 1, "heldout_fraction must be in [0, 1)"),
            (self.min_words >= 1, "min_words must be at least 1"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.precision in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)}"),
            (0 <= self.curve_points <= 20, "curve_points must be between 0 and 20"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid training config: {message}")

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}

    def to_dict(self) -> dict:
        """JSON-ready, stamped with the config format and the app version."""
        from oppu.trainer.versions import app_version

        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return {**data, "format": CONFIG_FORMAT, "app_version": app_version()}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# "balanced" (the field defaults) is the default preset (Settings.training_preset), tuned
# by bench/personalization.py (its results file records every try) with the bundled 135M
# model on a 2-core CPU: rank 48 on one MLP projection, down. The held-out perplexity
# barely depends on which projections learn, given the parameters (Chesterton alone, cut of
# adapter + retrieval against the base: 21.2% with gate, up and down or gate and down at
# rank 16, 20.8% with up and down at rank 16 and 21.5% at rank 24, 21.4% with down alone at
# rank 48 (21.5% at rank 96) but 19.1% at rank 16; over the three authors down at rank 48
# cut 23.8% against 24.1% for up and down at rank 24 and 24.3% for all seven), while an
# attached adapter costs llama.cpp decode time per adapted projection more than per
# parameter (four graph nodes each: about 20% for all seven, 12% for three, 8-14% for two,
# 6-7% for down at rank 48 on an idle 2-core CPU; the app serves a merged copy at full
# strength, but any other strength attaches it). The attention projections alone, or only q
# and v, cost 2 and 4 points of the cut; rank 32 on all seven measured the same as 16. The
# other presets inherit the targets. One pass over the writing (with bf16 training two
# passes fit the budget, and the second one overfit: Chesterton's adapter reached 36.6
# held-out perplexity after one pass and 39.9 after two, and 1.5 passes were worse than one
# for every author; LoRA dropout 0.1 did not rescue two passes and measured the same at
# one, so it stays off); two rows per step (one row, twice the steps, measured the same and
# is slower); a learning rate of 3e-3 (it beat 1.5e-3 and 4e-4 at the same budget, and 6e-3
# was worse; clipping keeps it stable; LoRA+, B's rate 4x A's, cost Chesterton 3 points);
# one retrieved passage per item (k=2 measured the same at one pass and costs ~20% more
# compute); rows of 1024 tokens (rows of 512, a fresh prompt every ~300 tokens, raised the
# measured cut only because the base lost context: the adapter's own held-out perplexity
# got worse, 39.3 against 37.4); and a 9-minute budget, so that a large profile still
# trains in bounded time and the three-author benchmark stays under 45 minutes. A sweep of
# 18 tries on a GPU (bench/results/personalization_sweep.md) found none better by more
# than a point; more passes at more capacity overfit.
PRESETS: dict[str, TrainConfig] = {
    "quick": TrainConfig(rank=8, alpha=16.0, epochs=1.0, seq_len=512, max_minutes=3.0),
    "balanced": TrainConfig(),  # the field defaults
    "thorough": TrainConfig(rank=32, alpha=64.0, epochs=3.0, learning_rate=1e-3,
                            batch_size=4, retrieval_k=2, max_minutes=40.0),
}


def run_config(preset: str, device: str = "auto", overrides: dict | None = None) -> TrainConfig:
    """The configuration of a run: `preset` with the run's device and option overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown training preset {preset!r}")
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(TrainConfig.help()))
    if unknown:
        raise ValueError(f"unknown training option {', '.join(unknown)}; known: "
                         f"{', '.join(TrainConfig.help())}")
    return replace(PRESETS[preset], device=device, **overrides)
