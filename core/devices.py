"""Which device training and chat will use, in words for the Settings page."""


def device_summary(training_setting: str) -> str:
    """One line: the device training will use, and how chat will run llama.cpp."""
    from oppu.engine.llm import cpu_threads, gpu_layers
    from oppu.trainer.lora import pick_device

    try:
        training = {"cuda": "the GPU (CUDA)", "cpu": "the CPU"}[pick_device(training_setting)]
    except ValueError as error:
        training = f"nothing: {error}"
    serving = ("the GPU (llama.cpp offload)" if gpu_layers() else
               f"the CPU ({cpu_threads()} threads)")
    return f"Training will use {training}. Chat will use {serving}."
