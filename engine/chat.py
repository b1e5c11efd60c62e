"""Streaming generation: a reply arrives piece by piece and can be stopped at any token."""

import codecs
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from oppu.engine.errors import ContextTooSmall
from oppu.engine.llm import Engine


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked. temperature 0 is greedy (deterministic)."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None  # None: a fresh seed for every reply

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
            raise ValueError(f"invalid sampling settings: {asdict(self)}")

    @classmethod
    def greedy(cls, max_tokens: int = 512) -> "Sampling":
        return cls(temperature=0.0, repeat_penalty=1.0, max_tokens=max_tokens, seed=0)

    def llama_args(self) -> dict:
        return {"temp": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "min_p": self.min_p, "repeat_penalty": self.repeat_penalty}


@dataclass
class ReplyStats:
    prompt_tokens: int
    tokens: int = 0
    stop_reason: str = ""  # end | length | stopped
    first_token_s: float | None = None
    seconds: float = 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second after the first one (which includes the prompt)."""
        if self.first_token_s is None or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / max(self.seconds - self.first_token_s, 1e-9)


class ReplyStream:
    """Iterate for the reply's text, piece by piece; `stats` tells how it ended.

    `should_stop` is asked after every token, before the next one is computed, so a stop
    request costs at most the token already in flight.
    """

    def __init__(self, engine: Engine, prompt: list[int], sampling: Sampling,
                 should_stop: Callable[[], bool] = lambda: False):
        room = engine.n_ctx - len(prompt)
        if room < 1:
            raise ContextTooSmall(
                f"the prompt has {len(prompt)} tokens; the context holds {engine.n_ctx}")
        self.engine = engine
        self.prompt = prompt
        self.sampling = sampling
        self.should_stop = should_stop
        self.max_tokens = min(sampling.max_tokens, room)
        self.stats = ReplyStats(prompt_tokens=len(prompt))
        self.tokens: list[int] = []  # the reply's token ids, end token excluded

    def __iter__(self) -> Iterator[str]:
        with self.engine.lock:
            yield from self._run()

    def _run(self) -> Iterator[str]:
        engine, stats = self.engine, self.stats
        engine.set_seed(self.sampling.seed if self.sampling.seed is not None
                        else random.getrandbits(31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        if not engine.read_prompt(self.prompt, self.should_stop):
            stats.stop_reason = "stopped"
            stats.seconds = time.perf_counter() - started
            return
        tokens = engine.generate(self.prompt, self.sampling.llama_args())
        try:
            for token in tokens:
                if stats.first_token_s is None:
                    stats.first_token_s = time.perf_counter() - started
                if engine.is_end(token):
                    stats.stop_reason = "end"
                    break
                stats.tokens += 1
                self.tokens.append(token)
                piece = decoder.decode(engine.detokenize_bytes([token]))
                if piece:
                    yield piece
                if stats.tokens >= self.max_tokens:
                    stats.stop_reason = "length"
                    break
                if self.should_stop():
                    stats.stop_reason = "stopped"
                    break
            # Bytes still waiting in the decoder are a character cut short (by the length
            # limit, a stop, or the model): dropped, not shown as U+FFFD.
        finally:
            tokens.close()
            stats.seconds = time.perf_counter() - started

    def text(self) -> str:
        """Run to the end and return the whole reply."""
        return "".join(self)
