//! Fuzz target: any byte string through the GGUF header parser, then every tensor the parser
//! accepted through the block decoders. A crash, an abort or an out-of-memory is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = smelt_gguf::Header::parse(data) {
        for t in &h.tensors {
            let bytes = h.tensor_data(data, t);
            let _ = smelt_gguf::blocks::dequantize(t.ggml_type, bytes, t.elements() as usize);
        }
    }
});
