"""GGUF files made from a good one with something changed, for refusal tests."""


def rewrite_gguf(source, target, architecture=None, drop=(), transpose=(), general_type=None,
                 values=None):
    """A copy of `source` with its architecture, type, metadata `values` (any type) or
    tensors changed."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    arch = architecture or reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(target), arch)
    values = dict(values or {}) | ({"general.type": general_type} if general_type else {})
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in values:
            continue
        writer.add_key_value(key, field.contents(), field.types[0])
    for key, value in values.items():
        writer.add_key_value(key, value, gguf.GGUFValueType.get_type(value))
    for tensor in reader.tensors:
        if tensor.name in drop:
            continue
        data = np.array(tensor.data)
        writer.add_tensor(tensor.name, data.T.copy() if tensor.name in transpose else data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
