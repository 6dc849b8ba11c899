//! ONNX model files written by smelt's own protobuf code.
//!
//! An `.onnx` file is one serialized `ModelProto` message (`onnx/onnx.proto`, proto2). Rather
//! than run `protoc` at build time, [`proto`] declares the subset smelt needs as `prost` derive
//! structs with the spec's field numbers, so the crate builds with cargo alone. [`GraphBuilder`]
//! assembles graphs (typed inputs with symbolic axes, little-endian `raw_data` initializers,
//! nodes with attributes); [`write_model`] stores a model crash-safely and [`read_model`] decodes
//! one.
//!
//! ```
//! use smelt_onnx::{Dim, GraphBuilder};
//! let mut g = GraphBuilder::new("relu");
//! g.input_f32("x", &[Dim::Symbolic("N".into()), Dim::Fixed(4)]) // (N, 4)
//!     .output_f32("y", &["N".into(), 4.into()]);
//! g.node("Relu", &["x"], &["y"]);
//! let model = g.finish(13, "smelt");
//! let bytes = smelt_onnx::encode_model(&model);
//! assert_eq!(smelt_onnx::read_model(&bytes).unwrap(), model);
//! ```
//!
//! The files are checked against the real tooling in `tests/onnx_oracle.rs`:
//! `onnx.checker.check_model(full_check=True)`, onnxruntime inference compared with a plain Rust
//! forward pass, and byte-identical re-serialization by the `onnx` package.

#![deny(missing_docs)]

pub mod builder;
pub mod proto;

use std::path::Path;

use prost::Message;

pub use builder::{Dim, GraphBuilder, NodeBuilder, raw_tensor};
pub use prost::DecodeError;
pub use proto::ModelProto;
pub use proto::tensor_proto::DataType;

/// The ONNX IR version smelt writes for opsets up to 18: 8 (2021-07-30), which onnxruntime
/// releases of the last years all load (13 is the first opset with per-axis
/// `QuantizeLinear`/`DequantizeLinear`). Later opsets need later IR versions
/// ([`ir_version_for`]).
pub const IR_VERSION: i64 = 8;

/// The IR version a model importing the default domain at `opset` needs, as onnx's own
/// version table pairs them (opset 19–20: IR 9 with FLOAT8; 21–22: IR 10 with INT4; 23 and
/// later: IR 11), and never below [`IR_VERSION`].
pub fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=18 => IR_VERSION,
        19..=20 => 9,
        21..=22 => 10,
        _ => 11,
    }
}

/// Serializes a model to the bytes of an `.onnx` file.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Writes `model` to `path` atomically: a temporary file in the same directory, fsync, rename
/// (see [`smelt_files::AtomicFile`]). Parent directories are created.
pub fn write_model(path: &Path, model: &ModelProto) -> std::io::Result<()> {
    smelt_files::write_atomic(path, &encode_model(model))
}

/// Decodes the bytes of an `.onnx` file. Fields outside [`proto`]'s subset are skipped.
pub fn read_model(bytes: &[u8]) -> Result<ModelProto, DecodeError> {
    ModelProto::decode(bytes)
}
