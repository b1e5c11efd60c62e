"""Which device training and chat will use, in words for the Settings page."""

ARITHMETIC = {"bf16": "fast 16-bit arithmetic (bf16)", "fp32": "32-bit arithmetic (fp32)"}


def device_summary(training_setting: str) -> str:
    """One line: the device (and arithmetic) training will use, and how chat will run
    llama.cpp."""
    from oppu.engine.llm import cpu_threads, gpu_layers
    from oppu.trainer.lora import pick_device
    from oppu.trainer.precision import resolve_precision

    try:
        device = pick_device(training_setting)
        where = {"cuda": "the GPU (CUDA)", "cpu": "the CPU"}[device]
        training = (f"Training will use {where} with "
                    f"{ARITHMETIC[resolve_precision('auto', device)]}.")
    except ValueError as error:
        training = (f"Training cannot run: {error}. Choose auto (the GPU when there is one) "
                    "or cpu.")
    serving = ("the GPU (llama.cpp offload)" if gpu_layers() else
               f"the CPU ({cpu_threads()} threads)")
    return f"{training} Chat will use {serving}."
