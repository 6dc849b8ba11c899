//! Compression drivers: training and quantization-aware training of small CNNs, static and
//! dynamic post-training quantization with calibration.
#![deny(missing_docs)]

pub mod llm;
pub mod ptq;
pub mod qat;
pub mod train;
