"""Altered copies of an exported adapter zip, for import tests."""

import zipfile

WEIGHTS = "peft/adapter_model.safetensors"


def rezip(source, target, change):
    """`source` rewritten to `target` with its members {name: bytes} passed through `change`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        contents = {name: old.read(name) for name in old.namelist()}
        for name, data in change(contents).items():
            new.writestr(name, data)
    return target


def weights_changed(transform):
    """A `rezip` change applying `transform(name, array)` to every adapter tensor."""
    from safetensors.numpy import load, save

    def change(contents: dict) -> dict:
        tensors = load(contents[WEIGHTS])
        return contents | {WEIGHTS: save({k: transform(k, v) for k, v in tensors.items()})}

    return change


def lora_b_doubled(name, array):
    """A different adapter of the same shapes."""
    return array * 2 if ".lora_B." in name else array
