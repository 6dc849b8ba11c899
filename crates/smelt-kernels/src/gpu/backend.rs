//! What a kernel launch needs besides its buffers, shared by the CUDA device and the CPU
//! emulator: each `*_plan` checks the lengths and layout conditions its kernel assumes (bad
//! input is an error, not a fault) and sizes the grid. [`KernelBackend`] is the set of kernel
//! calls `check.rs` drives, so the same checks run on a GPU and, in CI, on the emulator.

use cudarc::driver::LaunchConfig;
use smelt_gguf::GgmlType;

use super::GpuError;
use super::device::{AddVariant, GptqDevice, Gpu};
use super::reference::GptqInt4;

/// An element type that kernels read or write.
pub trait Elem: cudarc::driver::DeviceRepr + Copy + Default + 'static {}
impl Elem for i8 {}
impl Elem for u8 {}
impl Elem for u16 {}
impl Elem for i32 {}
impl Elem for u32 {}
impl Elem for f32 {}

/// The device facts grids are sized from.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Upper limit on the blocks of grid-stride kernels (0: none).
    pub max_blocks: u32,
}

impl Geometry {
    /// A grid for a grid-stride loop over `work` items: enough blocks to fill every SM
    /// `waves` times over, never more than the work needs.
    fn stride(self, work: usize, threads: u32, waves: u32) -> LaunchConfig {
        let need = work.div_ceil(threads as usize).max(1);
        let cap = match self.max_blocks {
            0 => (self.sms * waves) as usize,
            m => m as usize,
        };
        LaunchConfig {
            grid_dim: (need.min(cap) as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

impl AddVariant {
    fn per_thread(self) -> usize {
        match self {
            AddVariant::Scalar => 1,
            AddVariant::Vec4 => 4,
            AddVariant::Vec16 => 16,
        }
    }
}

/// INT8 add on the first `n` values; `lens` are (a, b, out).
pub(crate) fn int8_add_plan(
    geo: Geometry,
    variant: AddVariant,
    lens: (usize, usize, usize),
    n: usize,
) -> Result<LaunchConfig, GpuError> {
    if lens.0 < n || lens.1 < n || lens.2 < n {
        return Err(GpuError::new("int8_add: buffers shorter than n"));
    }
    Ok(geo.stride(n.div_ceil(variant.per_thread()), 256, 16))
}

/// (values, bytes) per block of Q4_K (`q4k`) or Q8_0, from the GGUF type table.
fn ggml_block(q4k: bool) -> (usize, usize) {
    let ty = if q4k { GgmlType::Q4_K } else { GgmlType::Q8_0 };
    let (values, bytes) = ty.block();
    (values as usize, bytes as usize)
}

/// Q8_0 (`q4k = false`) or Q4_K dequantize of `n` values from `src_len` bytes: the kernel's
/// name and grid.
pub(crate) fn dequant_ggml_plan(
    geo: Geometry,
    q4k: bool,
    src_len: usize,
    n: usize,
) -> Result<(&'static str, LaunchConfig), GpuError> {
    let name = if q4k { "dequant_q4_k" } else { "dequant_q8_0" };
    let (block, bytes) = ggml_block(q4k);
    if !n.is_multiple_of(block) || src_len != n / block * bytes {
        return Err(GpuError::new(format!(
            "{name}: {n} values need a multiple of {block} and {} bytes, got {src_len}",
            n / block * bytes,
        )));
    }
    Ok((name, geo.stride(n, 256, 32)))
}

/// NF4 dequantize of `n` values, `block` per absmax.
pub(crate) fn dequant_nf4_plan(
    geo: Geometry,
    packed_len: usize,
    absmax_len: usize,
    block: usize,
    n: usize,
) -> Result<LaunchConfig, GpuError> {
    if block == 0 || packed_len != n.div_ceil(2) || absmax_len != n.div_ceil(block) {
        return Err(GpuError::new(format!(
            "dequant_nf4: {n} values need {} code bytes and {} absmax values",
            n.div_ceil(2),
            n.div_ceil(block.max(1))
        )));
    }
    Ok(geo.stride(n, 256, 32))
}

/// GPTQ int4 dequantize of a `k × n` layer into `out_len` values.
pub(crate) fn dequant_gptq_plan(
    geo: Geometry,
    (k, n): (usize, usize),
    out_len: usize,
) -> Result<LaunchConfig, GpuError> {
    if out_len != k * n {
        return Err(GpuError::new(
            "dequant_gptq_int4: out must hold k x n values",
        ));
    }
    Ok(geo.stride(k * n, 256, 32))
}

/// Blocks of 256 threads, one warp per row.
fn row_cfg(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(8) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Q4_K or Q8_0 GEMV, `y (rows) = W (rows × k) · x (k)`: the kernel's name and grid.
pub(crate) fn gemv_ggml_plan(
    q4k: bool,
    w_len: usize,
    k: usize,
    rows: usize,
) -> Result<(&'static str, LaunchConfig), GpuError> {
    let name = if q4k { "gemv_q4_k" } else { "gemv_q8_0" };
    let (block, bytes) = ggml_block(q4k);
    if rows == 0 || k == 0 || !k.is_multiple_of(256) || w_len != rows * (k / block) * bytes {
        return Err(GpuError::new(format!(
            "{name}: K = {k} must be a positive multiple of 256 and W must hold \
             {rows} x {} bytes",
            k / block * bytes
        )));
    }
    Ok((name, row_cfg(rows)))
}

/// NF4 GEMV (block 64).
pub(crate) fn gemv_nf4_plan(
    packed_len: usize,
    absmax_len: usize,
    k: usize,
    rows: usize,
) -> Result<LaunchConfig, GpuError> {
    if rows == 0
        || k == 0
        || !k.is_multiple_of(64)
        || packed_len != rows * k / 2
        || absmax_len != rows * k / 64
    {
        return Err(GpuError::new(format!(
            "gemv_nf4: K = {k} must be a positive multiple of 64, with {} code bytes and \
             {} absmax values (block 64)",
            rows * k / 2,
            rows * k / 64
        )));
    }
    Ok(row_cfg(rows))
}

/// GPTQ int4 GEMV over a `k × n` layer; `lens` are (x, y).
pub(crate) fn gemv_gptq_plan(
    (k, n): (usize, usize),
    lens: (usize, usize),
) -> Result<LaunchConfig, GpuError> {
    if lens.0 != k || lens.1 != n {
        return Err(GpuError::new(
            "gemv_gptq_int4: x must hold k and y n values",
        ));
    }
    Ok(LaunchConfig {
        grid_dim: ((n / 4).div_ceil(128) as u32, k.div_ceil(256) as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// INT8 GEMM `a (m × k) · b (n × k)ᵀ`; `lens` are (a, b), `c_len` the int32 output's length
/// when given, `w8a8` the lengths of (sa, sb, d) when given.
pub(crate) fn gemm_int8_plan(
    (m, n, k): (usize, usize, usize),
    lens: (usize, usize),
    c_len: Option<usize>,
    w8a8: Option<(usize, usize, usize)>,
) -> Result<LaunchConfig, GpuError> {
    if m == 0 || n == 0 || k == 0 || !k.is_multiple_of(16) || lens.0 != m * k || lens.1 != n * k {
        return Err(GpuError::new(format!(
            "gemm_int8_dp4a: a must be m x k and b n x k with K a positive multiple of 16 \
             (m {m}, n {n}, k {k})"
        )));
    }
    if c_len.is_some_and(|c| c != m * n)
        || w8a8.is_some_and(|(sa, sb, d)| sa != m || sb != n || d != m * n)
    {
        return Err(GpuError::new(
            "gemm_int8_dp4a: output or scale lengths do not match",
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The kernel calls `check.rs` makes, on a GPU ([`Gpu`]) or on the CPU emulator
/// ([`super::emu::Emulator`]). Each has the meaning of the `Gpu` method of the same name.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub trait KernelBackend {
    /// A buffer of `T` the kernels can read and write.
    type Buf<T: Elem>;
    /// A GPTQ int4 layer in kernel memory.
    type Gptq;

    /// Copies a host slice to a new buffer.
    fn upload<T: Elem>(&self, v: &[T]) -> Result<Self::Buf<T>, GpuError>;
    /// Copies a buffer back to the host.
    fn download<T: Elem>(&self, v: &Self::Buf<T>) -> Result<Vec<T>, GpuError>;
    /// Validates `q` and copies it over.
    fn upload_gptq(&self, q: &GptqInt4) -> Result<Self::Gptq, GpuError>;
    /// Caps grid-stride kernels at `blocks` blocks (`None`: sized to the device).
    fn set_max_blocks(&self, blocks: Option<u32>);
    /// See [`Gpu::int8_add`].
    fn int8_add(
        &self,
        variant: AddVariant,
        a: &Self::Buf<i8>,
        b: &Self::Buf<i8>,
        out: &mut Self::Buf<i8>,
        sa: f32,
        sb: f32,
        inv_so: f32,
    ) -> Result<(), GpuError>;
    /// See [`Gpu::dequant_ggml`].
    fn dequant_ggml(
        &self,
        q4k: bool,
        src: &Self::Buf<u8>,
        out: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError>;
    /// See [`Gpu::dequant_nf4`].
    fn dequant_nf4(
        &self,
        packed: &Self::Buf<u8>,
        absmax: &Self::Buf<f32>,
        block: usize,
        out: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError>;
    /// See [`Gpu::dequant_gptq`].
    fn dequant_gptq(&self, q: &Self::Gptq, out: &mut Self::Buf<f32>) -> Result<(), GpuError>;
    /// See [`Gpu::gemv_ggml`].
    fn gemv_ggml(
        &self,
        q4k: bool,
        w: &Self::Buf<u8>,
        x: &Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError>;
    /// See [`Gpu::gemv_nf4`].
    fn gemv_nf4(
        &self,
        packed: &Self::Buf<u8>,
        absmax: &Self::Buf<f32>,
        x: &Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError>;
    /// See [`Gpu::gemv_gptq`].
    fn gemv_gptq(
        &self,
        q: &Self::Gptq,
        x: &Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError>;
    /// See [`Gpu::gemm_int8`].
    fn gemm_int8(
        &self,
        a: &Self::Buf<i8>,
        b: &Self::Buf<i8>,
        dims: (usize, usize, usize),
        c: Option<&mut Self::Buf<i32>>,
        w8a8: Option<(&Self::Buf<f32>, &Self::Buf<f32>, &mut Self::Buf<f32>)>,
    ) -> Result<(), GpuError>;
}

#[allow(clippy::type_complexity)]
impl KernelBackend for Gpu {
    type Buf<T: Elem> = cudarc::driver::CudaSlice<T>;
    type Gptq = GptqDevice;

    fn upload<T: Elem>(&self, v: &[T]) -> Result<Self::Buf<T>, GpuError> {
        Gpu::upload(self, v)
    }
    fn download<T: Elem>(&self, v: &Self::Buf<T>) -> Result<Vec<T>, GpuError> {
        Gpu::download(self, v)
    }
    fn upload_gptq(&self, q: &GptqInt4) -> Result<GptqDevice, GpuError> {
        GptqDevice::upload(self, q)
    }
    fn set_max_blocks(&self, blocks: Option<u32>) {
        Gpu::set_max_blocks(self, blocks)
    }
    fn int8_add(
        &self,
        variant: AddVariant,
        a: &Self::Buf<i8>,
        b: &Self::Buf<i8>,
        out: &mut Self::Buf<i8>,
        sa: f32,
        sb: f32,
        inv_so: f32,
    ) -> Result<(), GpuError> {
        Gpu::int8_add(self, variant, a, b, out, sa, sb, inv_so)
    }
    fn dequant_ggml(
        &self,
        q4k: bool,
        src: &Self::Buf<u8>,
        out: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError> {
        Gpu::dequant_ggml(self, q4k, src, out)
    }
    fn dequant_nf4(
        &self,
        packed: &Self::Buf<u8>,
        absmax: &Self::Buf<f32>,
        block: usize,
        out: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError> {
        Gpu::dequant_nf4(self, packed, absmax, block, out)
    }
    fn dequant_gptq(&self, q: &GptqDevice, out: &mut Self::Buf<f32>) -> Result<(), GpuError> {
        Gpu::dequant_gptq(self, q, out)
    }
    fn gemv_ggml(
        &self,
        q4k: bool,
        w: &Self::Buf<u8>,
        x: &Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError> {
        Gpu::gemv_ggml(self, q4k, w, x, y)
    }
    fn gemv_nf4(
        &self,
        packed: &Self::Buf<u8>,
        absmax: &Self::Buf<f32>,
        x: &Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError> {
        Gpu::gemv_nf4(self, packed, absmax, x, y)
    }
    fn gemv_gptq(
        &self,
        q: &GptqDevice,
        x: &Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<(), GpuError> {
        Gpu::gemv_gptq(self, q, x, y)
    }
    fn gemm_int8(
        &self,
        a: &Self::Buf<i8>,
        b: &Self::Buf<i8>,
        dims: (usize, usize, usize),
        c: Option<&mut Self::Buf<i32>>,
        w8a8: Option<(&Self::Buf<f32>, &Self::Buf<f32>, &mut Self::Buf<f32>)>,
    ) -> Result<(), GpuError> {
        Gpu::gemm_int8(self, a, b, dims, c, w8a8)
    }
}
