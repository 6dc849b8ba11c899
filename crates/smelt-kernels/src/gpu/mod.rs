//! CUDA kernels for quantized ops, behind the `cuda` feature.
//!
//! cudarc loads libcuda and libnvrtc at run time (`dynamic-loading`), so a binary built with
//! the feature on a machine without CUDA still runs anywhere: [`open`] returns an error naming
//! what is missing and callers use the CPU. Kernels are CUDA C files (`src/gpu/cuda/`) compiled
//! by NVRTC at first use and cached as PTX. Each has a CPU reference in [`reference`] that
//! defines its exact result; `tests/cuda.rs` compares them on fresh random inputs (skipped
//! without a GPU) and `tests/cuda_compile.rs` compiles every file with NVRTC (no GPU needed).
//! [`emu`] runs the same kernel files on the CPU under a fiber-per-thread stand-in for CUDA,
//! so `tests/cuda_emu.rs` executes every kernel against its reference in CI as well.

pub mod reference;

#[cfg(feature = "cuda")]
pub mod backend;
#[cfg(feature = "cuda")]
pub mod bench;
#[cfg(feature = "cuda")]
pub mod check;
#[cfg(feature = "cuda")]
pub mod compile;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
pub mod emu;

#[cfg(feature = "cuda")]
pub use backend::KernelBackend;
#[cfg(feature = "cuda")]
pub use device::{AddVariant, GptqDevice, Gpu};

/// Why the GPU path is unavailable or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuError(String);

impl GpuError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        GpuError(msg.into())
    }
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GpuError {}

#[cfg(feature = "cuda")]
impl From<cudarc::driver::DriverError> for GpuError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        GpuError(format!("CUDA driver: {e}"))
    }
}

/// Opens GPU `ordinal`, or says in one line why there is none.
#[cfg(feature = "cuda")]
pub fn open(ordinal: usize, cache_dir: Option<std::path::PathBuf>) -> Result<Gpu, GpuError> {
    Gpu::open(ordinal, cache_dir)
}

/// The CUDA version the installed driver supports, e.g. `(13, 0)`: PTX from an NVRTC newer
/// than this does not load, so `smelt gpu info` prints both.
#[cfg(feature = "cuda")]
pub fn driver_version() -> Result<(i32, i32), GpuError> {
    // SAFETY: only tries to dlopen libcuda by its usual names.
    let present = std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() })
        .unwrap_or(false);
    if !present {
        return Err(GpuError::new("no CUDA driver (libcuda.so) found"));
    }
    let mut v = 0;
    // SAFETY: the library is present; the pointer is valid. cuDriverGetVersion needs no cuInit.
    let status = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    if status != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        return Err(GpuError::new(format!(
            "cuDriverGetVersion failed: {status:?}"
        )));
    }
    Ok((v / 1000, (v % 1000) / 10))
}

/// Without the `cuda` feature there is never a GPU.
#[cfg(not(feature = "cuda"))]
pub fn open(_ordinal: usize, _cache_dir: Option<std::path::PathBuf>) -> Result<Never, GpuError> {
    Err(GpuError::new(
        "this smelt was built without the `cuda` feature",
    ))
}

/// Stands in for the GPU handle in builds without the `cuda` feature; it cannot be made.
#[cfg(not(feature = "cuda"))]
#[derive(Debug)]
pub enum Never {}

/// An NVTX range (shown by Nsight Systems) that ends when dropped; a no-op without the `cuda`
/// feature or when no profiler is attached.
#[must_use = "the range ends when this is dropped"]
pub struct NvtxRange {
    #[cfg(feature = "cuda")]
    _guard: nvtx::RangeGuard,
}

/// Starts an NVTX range named `name`.
pub fn nvtx_range(name: &str) -> NvtxRange {
    let _ = name;
    NvtxRange {
        #[cfg(feature = "cuda")]
        _guard: nvtx::range!("{}", name),
    }
}
