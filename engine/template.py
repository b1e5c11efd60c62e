"""The chat template stored in a GGUF (`tokenizer.chat_template`), rendered with Jinja."""

from collections.abc import Callable
from dataclasses import dataclass

from oppu.storage.prompting import rendered

# For a GGUF without a template: ChatML, which the bundled SmolLM2 also uses.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class ChatTemplate:
    source: str
    bos_token: str
    eos_token: str
    from_model: bool
    specials: frozenset[str] = frozenset()  # control tokens' text: inert in the messages

    @classmethod
    def from_metadata(cls, metadata: dict, token_text: Callable[[int], str],
                      specials: frozenset[str] = frozenset()) -> "ChatTemplate":
        source = metadata.get("tokenizer.chat_template") or ""

        def text_of(key: str) -> str:
            value = metadata.get(key)
            return token_text(int(value)) if value is not None else ""

        return cls(source or CHATML, text_of("tokenizer.ggml.bos_token_id"),
                   text_of("tokenizer.ggml.eos_token_id"), bool(source), specials)

    def __post_init__(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(self.source, self.eos_token, self.bos_token,
                                              add_generation_prompt=True)

    def render(self, messages: list[dict]) -> str:
        """The prompt text for `messages`, ending where the assistant's reply begins."""
        return rendered(lambda fitted: self._formatter(messages=fitted).prompt, messages,
                        self.specials)
