"""Metadata copying shared by the gguf-py snippets of benches/llamacpp_golden.sh."""
import gguf


def copy_fields(reader, writer, arch=None, only=None):
    """Copies reader's metadata into writer as gguf_new_metadata.py does: every key but the
    architecture (the writer's own) and the GGUF.* header fields, `llama.*` keys renamed to
    `arch.*` when arch is given; only keys starting with `only` when that is given."""
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        if only is not None and not f.name.startswith(only):
            continue
        name = f.name
        if arch is not None and name.startswith("llama."):
            name = arch + name[len("llama"):]
        t = f.types[0]
        sub = f.types[-1] if t == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, f.contents(), t, sub_type=sub)
