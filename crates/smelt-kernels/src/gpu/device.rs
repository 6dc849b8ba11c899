//! The CUDA device handle and one launch wrapper per kernel. Every wrapper checks its lengths
//! and the layout conditions its kernel assumes, so bad input is an error, not a fault.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, PushKernelArg};
use cudarc::nvrtc::Ptx;

use super::GpuError;
use super::backend::{self as plan, Geometry};
use super::compile::{self, KernelSource};

/// Which INT8-add kernel to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddVariant {
    /// One value per thread per step.
    Scalar,
    /// Four values (one 32-bit word) per thread per step.
    Vec4,
    /// Sixteen values (one 16-byte load) per thread per step.
    Vec16,
}

impl AddVariant {
    /// All variants, slowest first.
    pub const ALL: [AddVariant; 3] = [AddVariant::Scalar, AddVariant::Vec4, AddVariant::Vec16];

    /// The kernel's name.
    pub fn kernel(self) -> &'static str {
        match self {
            AddVariant::Scalar => "int8_add_scalar",
            AddVariant::Vec4 => "int8_add_vec4",
            AddVariant::Vec16 => "int8_add_vec16",
        }
    }
}

/// A GPU with its context, a stream, and the kernels compiled so far.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    arch: String,
    sms: u32,
    total_mem: usize,
    cache_dir: Option<PathBuf>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Upper limit on the blocks of grid-stride kernels (0: none), so tests can make every
    /// thread loop several times.
    max_blocks: AtomicU32,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.describe())
    }
}

impl Gpu {
    /// Opens device `ordinal`. Errors (never panics) when the driver, NVRTC or a device is
    /// missing; `cache_dir` keeps compiled PTX between runs.
    pub fn open(ordinal: usize, cache_dir: Option<PathBuf>) -> Result<Gpu, GpuError> {
        // SAFETY: only tries to dlopen libcuda by its usual names.
        let driver =
            std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() })
                .unwrap_or(false);
        if !driver {
            return Err(GpuError::new("no CUDA driver (libcuda.so) found"));
        }
        if !compile::nvrtc_present() {
            return Err(GpuError::new(compile::NO_NVRTC));
        }
        let opened = std::panic::catch_unwind(|| -> Result<Gpu, GpuError> {
            let count = CudaContext::device_count()?;
            if count <= 0 || ordinal >= count as usize {
                return Err(GpuError::new(format!(
                    "no CUDA device {ordinal} ({count} found)"
                )));
            }
            let ctx = CudaContext::new(ordinal)?;
            let (major, minor) = ctx.compute_capability()?;
            let sms =
                ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
            Ok(Gpu {
                name: ctx.name()?,
                arch: format!("compute_{major}{minor}"),
                sms: sms.max(1) as u32,
                total_mem: ctx.total_mem()?,
                stream: ctx.default_stream(),
                ctx,
                cache_dir,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                max_blocks: AtomicU32::new(0),
            })
        });
        opened.unwrap_or_else(|_| Err(GpuError::new("the CUDA driver panicked while opening")))
    }

    /// One line: name, architecture, SMs, memory.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {} SMs, {:.0} GiB)",
            self.name,
            self.arch.replace("compute_", "sm_"),
            self.sms,
            self.total_mem as f64 / (1u64 << 30) as f64
        )
    }

    /// The device's name as the driver reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context (allocations, pinned host memory, new streams).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every wrapper launches on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Number of streaming multiprocessors.
    pub fn sms(&self) -> u32 {
        self.sms
    }

    /// Kernel `name` of `src`, compiled (or read from the cache) and loaded on first use;
    /// later calls are one map lookup.
    pub fn function(&self, src: &KernelSource, name: &str) -> Result<CudaFunction, GpuError> {
        let key = format!("{}:{name}", src.file);
        if let Some(f) = self.functions.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            match modules.get(src.file) {
                Some(m) => m.clone(),
                None => {
                    let ptx = compile::compile_cached(src, &self.arch, self.cache_dir.as_deref())?;
                    let m = self.ctx.load_module(Ptx::from_src(ptx))?;
                    modules.insert(src.file, m.clone());
                    m
                }
            }
        };
        let f = module.load_function(name)?;
        self.functions
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, f.clone());
        Ok(f)
    }

    /// Caps grid-stride kernels at `blocks` blocks (`None`: sized to the device), so a check
    /// can make every thread take several steps.
    pub fn set_max_blocks(&self, blocks: Option<u32>) {
        self.max_blocks
            .store(blocks.unwrap_or(0), Ordering::Relaxed);
    }

    /// Copies a host slice to a new device buffer.
    pub fn upload<T: cudarc::driver::DeviceRepr>(&self, v: &[T]) -> Result<CudaSlice<T>, GpuError> {
        Ok(self.stream.clone_htod(v)?)
    }

    /// Copies a device buffer back to the host.
    pub fn download<T: cudarc::driver::DeviceRepr>(
        &self,
        v: &CudaSlice<T>,
    ) -> Result<Vec<T>, GpuError> {
        Ok(self.stream.clone_dtoh(v)?)
    }

    /// Waits for everything queued on the stream.
    pub fn sync(&self) -> Result<(), GpuError> {
        Ok(self.stream.synchronize()?)
    }

    /// What grid-stride grids are sized from.
    fn geometry(&self) -> Geometry {
        Geometry {
            sms: self.sms,
            max_blocks: self.max_blocks.load(Ordering::Relaxed),
        }
    }

    /// `out = saturate(round((a·sa + b·sb)·inv_so))` (see [`super::reference::int8_add`]).
    #[allow(clippy::too_many_arguments)]
    pub fn int8_add(
        &self,
        variant: AddVariant,
        a: &CudaSlice<i8>,
        b: &CudaSlice<i8>,
        out: &mut CudaSlice<i8>,
        sa: f32,
        sb: f32,
        inv_so: f32,
    ) -> Result<(), GpuError> {
        if b.len() != a.len() || out.len() != a.len() {
            return Err(GpuError::new("int8_add: a, b and out must have one length"));
        }
        self.int8_add_on(&self.stream, variant, a, b, out, a.len(), (sa, sb, inv_so))
    }

    /// [`Gpu::int8_add`] on the first `n` values of the buffers, on `stream`.
    #[allow(clippy::too_many_arguments)]
    pub fn int8_add_on(
        &self,
        stream: &Arc<CudaStream>,
        variant: AddVariant,
        a: &CudaSlice<i8>,
        b: &CudaSlice<i8>,
        out: &mut CudaSlice<i8>,
        n: usize,
        (sa, sb, inv_so): (f32, f32, f32),
    ) -> Result<(), GpuError> {
        let cfg = plan::int8_add_plan(self.geometry(), variant, (a.len(), b.len(), out.len()), n)?;
        let f = self.function(&compile::INT8_ADD, variant.kernel())?;
        let n = n as u64;
        let mut l = stream.launch_builder(&f);
        l.arg(a)
            .arg(b)
            .arg(out)
            .arg(&sa)
            .arg(&sb)
            .arg(&inv_so)
            .arg(&n);
        // SAFETY: argument types and order match the kernel; lengths checked above.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// Dequantizes `n` values of ggml Q8_0 (`q4k = false`) or Q4_K bytes.
    pub fn dequant_ggml(
        &self,
        q4k: bool,
        src: &CudaSlice<u8>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let (name, cfg) = plan::dequant_ggml_plan(self.geometry(), q4k, src.len(), out.len())?;
        let f = self.function(&compile::DEQUANT, name)?;
        let n = out.len() as u64;
        let mut l = self.stream.launch_builder(&f);
        l.arg(src).arg(out).arg(&n);
        // SAFETY: as above.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// Dequantizes smelt's NF4 layout (`block` values per absmax).
    pub fn dequant_nf4(
        &self,
        packed: &CudaSlice<u8>,
        absmax: &CudaSlice<f32>,
        block: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let n = out.len();
        let cfg = plan::dequant_nf4_plan(self.geometry(), packed.len(), absmax.len(), block, n)?;
        let f = self.function(&compile::DEQUANT, "dequant_nf4")?;
        let (n, block) = (n as u64, block as u32);
        let mut l = self.stream.launch_builder(&f);
        l.arg(packed).arg(absmax).arg(out).arg(&n).arg(&block);
        // SAFETY: as above.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// Dequantizes a GPTQ int4 layer to `(k, n)`.
    pub fn dequant_gptq(&self, q: &GptqDevice, out: &mut CudaSlice<f32>) -> Result<(), GpuError> {
        let cfg = plan::dequant_gptq_plan(self.geometry(), (q.k, q.n), out.len())?;
        let f = self.function(&compile::DEQUANT, "dequant_gptq_int4")?;
        let (k, n) = (q.k as u32, q.n as u32);
        let mut l = self.stream.launch_builder(&f);
        l.arg(&q.qweight)
            .arg(&q.qzeros)
            .arg(&q.scales)
            .arg(&q.g_idx)
            .arg(out);
        l.arg(&k).arg(&n);
        // SAFETY: lengths validated when the layer was uploaded.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// `y = W·x` for `rows` rows of ggml Q4_K (`q4k`) or Q8_0 bytes; K must be a multiple
    /// of 256.
    pub fn gemv_ggml(
        &self,
        q4k: bool,
        w: &CudaSlice<u8>,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let (k, rows) = (x.len(), y.len());
        let (name, cfg) = plan::gemv_ggml_plan(q4k, w.len(), k, rows)?;
        let f = self.function(&compile::GEMV, name)?;
        let (rows32, k32) = (rows as u32, k as u32);
        let mut l = self.stream.launch_builder(&f);
        l.arg(w).arg(x).arg(y).arg(&rows32).arg(&k32);
        // SAFETY: lengths checked above; argument order matches the kernel.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// `y = W·x` for NF4 rows (block 64, K a multiple of 64).
    pub fn gemv_nf4(
        &self,
        packed: &CudaSlice<u8>,
        absmax: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let (k, rows) = (x.len(), y.len());
        let cfg = plan::gemv_nf4_plan(packed.len(), absmax.len(), k, rows)?;
        let f = self.function(&compile::GEMV, "gemv_nf4")?;
        let (rows32, k32) = (rows as u32, k as u32);
        let mut l = self.stream.launch_builder(&f);
        l.arg(packed)
            .arg(absmax)
            .arg(x)
            .arg(y)
            .arg(&rows32)
            .arg(&k32);
        // SAFETY: lengths checked above; argument order matches the kernel.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// `y[j] = Σ_i W(i, j)·x[i]` for a GPTQ int4 layer (y is zeroed here first).
    pub fn gemv_gptq(
        &self,
        q: &GptqDevice,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        let cfg = plan::gemv_gptq_plan((q.k, q.n), (x.len(), y.len()))?;
        self.stream.memset_zeros(y)?;
        let f = self.function(&compile::GEMV, "gemv_gptq_int4")?;
        let (k, n) = (q.k as u32, q.n as u32);
        let mut l = self.stream.launch_builder(&f);
        l.arg(&q.qweight)
            .arg(&q.qzeros)
            .arg(&q.scales)
            .arg(&q.g_idx)
            .arg(x)
            .arg(y);
        l.arg(&k).arg(&n);
        // SAFETY: layout validated at upload; lengths checked above.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// INT8 GEMM `a (m × k) · b (n × k)ᵀ`: int32 into `c` when given, and/or the W8A8 float
    /// output `(acc · sa[m]) · sb[n]` into `d` with its scales. K must be a multiple of 16.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_int8(
        &self,
        a: &CudaSlice<i8>,
        b: &CudaSlice<i8>,
        (m, n, k): (usize, usize, usize),
        c: Option<&mut CudaSlice<i32>>,
        w8a8: Option<(&CudaSlice<f32>, &CudaSlice<f32>, &mut CudaSlice<f32>)>,
    ) -> Result<(), GpuError> {
        let cfg = plan::gemm_int8_plan(
            (m, n, k),
            (a.len(), b.len()),
            c.as_ref().map(|c| c.len()),
            w8a8.as_ref()
                .map(|(sa, sb, d)| (sa.len(), sb.len(), d.len())),
        )?;
        let f = self.function(&compile::GEMM_INT8, "gemm_int8_dp4a")?;
        let null = 0u64;
        let (m32, n32, k32) = (m as u32, n as u32, k as u32);
        let mut l = self.stream.launch_builder(&f);
        l.arg(a).arg(b);
        match c {
            Some(c) => l.arg(c),
            None => l.arg(&null),
        };
        match w8a8 {
            Some((sa, sb, d)) => l.arg(sa).arg(sb).arg(d),
            None => l.arg(&null).arg(&null).arg(&null),
        };
        l.arg(&m32).arg(&n32).arg(&k32);
        // SAFETY: lengths checked above; a null pointer is passed for an absent output,
        // which the kernel tests before writing.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }
}

fn poisoned() -> GpuError {
    GpuError::new("kernel cache lock poisoned")
}

/// A GPTQ int4 layer on the device.
pub struct GptqDevice {
    /// Input features.
    pub k: usize,
    /// Output features.
    pub n: usize,
    /// `(k / 8, n)` packed codes.
    pub qweight: CudaSlice<u32>,
    /// `(groups, n / 8)` packed zero points minus one.
    pub qzeros: CudaSlice<u32>,
    /// `(groups, n)` f16 bits.
    pub scales: CudaSlice<u16>,
    /// `(k,)` group per input.
    pub g_idx: CudaSlice<i32>,
}

impl GptqDevice {
    /// Validates `q` and copies it to the device.
    pub fn upload(gpu: &Gpu, q: &super::reference::GptqInt4) -> Result<GptqDevice, GpuError> {
        q.validate().map_err(GpuError::new)?;
        Ok(GptqDevice {
            k: q.k,
            n: q.n,
            qweight: gpu.upload(&q.qweight)?,
            qzeros: gpu.upload(&q.qzeros)?,
            scales: gpu.upload(&q.scales)?,
            g_idx: gpu.upload(&q.g_idx)?,
        })
    }

    /// Bytes the kernels read for the weights.
    pub fn weight_bytes(&self) -> usize {
        4 * (self.qweight.len() + self.qzeros.len() + self.g_idx.len()) + 2 * self.scales.len()
    }
}
