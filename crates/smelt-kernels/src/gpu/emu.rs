//! Runs smelt's CUDA kernel sources on the CPU, so CI (which has no GPU) executes every kernel
//! against its reference with the same launch plans, arguments and checks as on a device.
//!
//! The kernel files are compiled unchanged by the system C++ compiler, with `emu/runtime.hpp`
//! in front: each CUDA thread is a fiber, `__syncthreads`/`__syncwarp`/warp shuffles are real
//! barriers, and a barrier that can never complete is an error. Buffers are host memory aligned
//! like device allocations (256 bytes) with a guard tail that must be intact after every
//! launch, so a kernel that writes past its output is caught. What the emulator cannot show:
//! timing, races that only the device's scheduling would expose, and FMA contraction (the
//! device may fuse `a*b+c` where these kernels do not ask for `__fmul_rn`; the reductions are
//! compared within a tolerance for that reason).

use std::alloc::Layout;
use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use cudarc::driver::LaunchConfig;

use super::GpuError;
use super::backend::{self as plan, Elem, Geometry, KernelBackend};
use super::compile::{self, COMMON, KernelSource};
use super::device::AddVariant;
use super::reference::GptqInt4;

/// The fiber runtime and CUDA stand-ins every emulated kernel file is compiled with.
pub const RUNTIME: &str = include_str!("emu/runtime.hpp");

/// SMs the emulator reports, so grid-stride kernels get a few dozen blocks.
const EMU_SMS: u32 = 4;
/// Alignment of every buffer (cudaMalloc gives at least 256).
const ALIGN: usize = 256;
/// Guard bytes after every buffer.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xA5;

/// Numbers the build folders of this process, so concurrent builds never share files.
static BUILDS: AtomicU32 = AtomicU32::new(0);

/// One emulated launch at a time in the whole process: the runtime's state is global.
static LAUNCH: Mutex<()> = Mutex::new(());

type Entry =
    unsafe extern "C" fn(*const u32, *const u32, *mut *mut c_void, *mut c_char, c_ulong) -> c_int;

/// Host memory standing in for a device buffer of `T`: 256-byte aligned, followed by guard
/// bytes that [`EmuBuf::guard_intact`] checks.
pub struct EmuBuf<T> {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    _t: PhantomData<T>,
}

impl<T: Elem> EmuBuf<T> {
    fn from_slice(v: &[T]) -> Result<Self, GpuError> {
        let bytes = std::mem::size_of_val(v);
        let layout = Layout::from_size_align(bytes + GUARD, ALIGN)
            .map_err(|_| GpuError::new("emulator buffer too large"))?;
        // SAFETY: the layout has a non-zero size (GUARD > 0).
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })
            .ok_or_else(|| GpuError::new("emulator buffer: out of memory"))?;
        // SAFETY: the allocation holds `bytes + GUARD` bytes; `v` holds `bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr().cast::<u8>(), ptr.as_ptr(), bytes);
            std::ptr::write_bytes(ptr.as_ptr().add(bytes), GUARD_BYTE, GUARD);
        }
        Ok(EmuBuf {
            ptr,
            len: v.len(),
            layout,
            _t: PhantomData,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::default(); self.len];
        // SAFETY: the allocation holds `len` values of T (written by from_slice or a kernel).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                self.len * size_of::<T>(),
            )
        };
        out
    }

    fn fill_zero(&mut self) {
        // SAFETY: zero bytes are a valid value of every Elem type; the range is in bounds.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, self.len * size_of::<T>()) };
    }

    /// Whether the guard bytes after the data are untouched.
    pub fn guard_intact(&self) -> bool {
        // SAFETY: the guard lies inside the allocation.
        let guard = unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(self.len * size_of::<T>()), GUARD)
        };
        guard.iter().all(|&b| b == GUARD_BYTE)
    }

    fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
}

impl<T> Drop for EmuBuf<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in from_slice with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// One kernel argument, in the kernel's parameter order and with its exact type.
pub enum EmuArg<'a> {
    /// A buffer the kernel only reads.
    In(u64, PhantomData<&'a ()>),
    /// A buffer the kernel writes; its guard is checked after the launch.
    Out(u64, &'a dyn GuardCheck),
    /// A null pointer.
    Null,
    /// `u32` by value.
    U32(u32),
    /// `u64` by value.
    U64(u64),
    /// `float` by value.
    F32(f32),
}

/// A buffer whose guard can be checked (any [`EmuBuf`]).
pub trait GuardCheck {
    /// See [`EmuBuf::guard_intact`].
    fn intact(&self) -> bool;
}

impl<T: Elem> GuardCheck for EmuBuf<T> {
    fn intact(&self) -> bool {
        self.guard_intact()
    }
}

/// `buf` as an input argument.
pub fn arg_in<T: Elem>(buf: &EmuBuf<T>) -> EmuArg<'_> {
    EmuArg::In(buf.addr(), PhantomData)
}

/// `buf` as an output argument.
pub fn arg_out<T: Elem>(buf: &mut EmuBuf<T>) -> EmuArg<'_> {
    EmuArg::Out(buf.addr(), buf)
}

/// The kernels compiled for the CPU, loaded as a shared library.
pub struct Emulator {
    lib: libloading::Library,
    max_blocks: AtomicU32,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Emulator")
    }
}

/// The C++ compiler the emulator uses: `$SMELT_CXX`, else `$CXX`, else `g++`.
pub fn cxx() -> String {
    std::env::var("SMELT_CXX")
        .or_else(|_| std::env::var("CXX"))
        .unwrap_or_else(|_| "g++".to_string())
}

/// Whether [`cxx`] runs.
pub fn cxx_present() -> bool {
    Command::new(cxx())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Emulator {
    /// Compiles smelt's kernel files ([`compile::SOURCES`]) for the CPU and loads them;
    /// `cache_dir` keeps the library between runs (keyed by a hash of every source).
    pub fn open(cache_dir: Option<&Path>) -> Result<Emulator, GpuError> {
        Self::with_sources(&compile::SOURCES, cache_dir)
    }

    /// [`Emulator::open`] for the given kernel files (tests pass altered ones).
    pub fn with_sources(
        sources: &[KernelSource],
        cache_dir: Option<&Path>,
    ) -> Result<Emulator, GpuError> {
        let mut key_text = vec![RUNTIME, COMMON];
        for s in sources {
            key_text.extend([s.file, s.text]);
            key_text.extend(s.functions.iter().copied());
        }
        let key = compile::fnv1a(key_text.join("\u{0}").as_bytes());
        let own_dir;
        let dir = match cache_dir {
            Some(d) => d.to_path_buf(),
            None => {
                own_dir = std::env::temp_dir().join(format!(
                    "smelt-cuda-emu-{}-{}",
                    std::process::id(),
                    BUILDS.fetch_add(1, Ordering::Relaxed)
                ));
                own_dir.clone()
            }
        };
        let lib_path = dir.join(format!("libsmelt-cuda-emu-{key:016x}.so"));
        if !lib_path.exists() {
            build(sources, &dir, &lib_path)?;
        }
        // SAFETY: the library is ours; loading runs no initialisers beyond C++ statics.
        let lib = unsafe { libloading::Library::new(&lib_path) }.map_err(|e| {
            GpuError::new(format!(
                "cannot load the CUDA emulator {}: {e}",
                lib_path.display()
            ))
        })?;
        if cache_dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(Emulator {
            lib,
            max_blocks: AtomicU32::new(0),
        })
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            sms: EMU_SMS,
            max_blocks: self.max_blocks.load(Ordering::Relaxed),
        }
    }

    /// Launches kernel `name` with `args` in its parameter order; errors when the kernel is
    /// unknown, a barrier can never complete, or an output's guard bytes were overwritten.
    pub fn launch(
        &self,
        name: &str,
        cfg: LaunchConfig,
        args: &[EmuArg<'_>],
    ) -> Result<(), GpuError> {
        let symbol = format!("smelt_emu_{name}\0");
        // SAFETY: every entry has the `Entry` signature (SMELT_EMU_ENTRY in runtime.hpp).
        let entry = unsafe { self.lib.get::<Entry>(symbol.as_bytes()) }
            .map_err(|_| GpuError::new(format!("the emulator has no kernel {name}")))?;
        let null = 0u64;
        let mut params: Vec<*mut c_void> = args
            .iter()
            .map(|a| {
                let p: *const c_void = match a {
                    EmuArg::In(addr, _) | EmuArg::Out(addr, _) => (addr as *const u64).cast(),
                    EmuArg::Null => (&null as *const u64).cast(),
                    EmuArg::U32(v) => (v as *const u32).cast(),
                    EmuArg::U64(v) => (v as *const u64).cast(),
                    EmuArg::F32(v) => (v as *const f32).cast(),
                };
                p.cast_mut()
            })
            .collect();
        let grid = [cfg.grid_dim.0, cfg.grid_dim.1, cfg.grid_dim.2];
        let block = [cfg.block_dim.0, cfg.block_dim.1, cfg.block_dim.2];
        let mut err = vec![0u8; 512];
        let status = {
            let _one = LAUNCH.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: params point at values of the kernel's parameter types, which live
            // until the call returns; buffers outlive the call (borrowed by `args`).
            unsafe {
                entry(
                    grid.as_ptr(),
                    block.as_ptr(),
                    params.as_mut_ptr(),
                    err.as_mut_ptr().cast(),
                    err.len() as c_ulong,
                )
            }
        };
        if status != 0 {
            let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
            return Err(GpuError::new(format!(
                "{name}: {}",
                String::from_utf8_lossy(&err[..end])
            )));
        }
        for (i, a) in args.iter().enumerate() {
            if let EmuArg::Out(_, buf) = a
                && !buf.intact()
            {
                return Err(GpuError::new(format!(
                    "{name}: wrote past the end of its output (argument {i})"
                )));
            }
        }
        Ok(())
    }
}

/// Writes one C++ file per kernel file into a fresh folder under `dir`, compiles them, and
/// renames the library to `lib_path`, so concurrent builds (two processes sharing a cache)
/// never read each other's half-written files.
fn build(sources: &[KernelSource], dir: &Path, lib_path: &Path) -> Result<(), GpuError> {
    let io = |e: std::io::Error| GpuError::new(format!("CUDA emulator build folder: {e}"));
    let work = dir.join(format!(
        "build-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&work).map_err(io)?;
    let built =
        compile_in(sources, &work).and_then(|lib| std::fs::rename(lib, lib_path).map_err(io));
    let _ = std::fs::remove_dir_all(&work);
    built
}

/// Compiles `sources` in `work`; returns the library's path there.
fn compile_in(sources: &[KernelSource], work: &Path) -> Result<PathBuf, GpuError> {
    let io = |e: std::io::Error| GpuError::new(format!("CUDA emulator build folder: {e}"));
    let dir = work;
    std::fs::write(dir.join("runtime.hpp"), RUNTIME).map_err(io)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for s in sources {
        let mut text = format!(
            "#include \"runtime.hpp\"\n#line 1 \"common.cuh\"\n{COMMON}\n#line 1 \"{}\"\n{}\n",
            s.file, s.text
        );
        for f in s.functions {
            text += &format!("SMELT_EMU_ENTRY({f})\n");
        }
        let path = dir.join(format!("{}.cpp", s.file));
        std::fs::write(&path, text).map_err(io)?;
        files.push(path);
    }
    let tmp = dir.join("libsmelt-cuda-emu.so");
    let out = Command::new(cxx())
        .args([
            "-std=c++17",
            "-O1",
            "-ffp-contract=off",
            "-fno-strict-aliasing",
            "-fvisibility=hidden",
            "-fno-gnu-unique",
            "-fPIC",
            "-shared",
            "-w",
            "-o",
        ])
        .arg(&tmp)
        .args(&files)
        .output()
        .map_err(|e| {
            GpuError::new(format!(
                "no C++ compiler for the CUDA emulator ({}: {e}); install g++ or set SMELT_CXX",
                cxx()
            ))
        })?;
    if !out.status.success() {
        return Err(GpuError::new(format!(
            "the CUDA emulator did not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(tmp)
}

/// A GPTQ int4 layer in emulator memory.
pub struct EmuGptq {
    k: usize,
    n: usize,
    qweight: EmuBuf<u32>,
    qzeros: EmuBuf<u32>,
    scales: EmuBuf<u16>,
    g_idx: EmuBuf<i32>,
}

impl EmuGptq {
    fn args<'a>(&'a self) -> [EmuArg<'a>; 4] {
        [
            arg_in(&self.qweight),
            arg_in(&self.qzeros),
            arg_in(&self.scales),
            arg_in(&self.g_idx),
        ]
    }
}

// Argument lists follow the CUDA wrappers in device.rs one for one.
impl KernelBackend for Emulator {
    type Buf<T: Elem> = EmuBuf<T>;
    type Gptq = EmuGptq;

    fn upload<T: Elem>(&self, v: &[T]) -> Result<EmuBuf<T>, GpuError> {
        EmuBuf::from_slice(v)
    }

    fn download<T: Elem>(&self, v: &EmuBuf<T>) -> Result<Vec<T>, GpuError> {
        Ok(v.to_vec())
    }

    fn upload_gptq(&self, q: &GptqInt4) -> Result<EmuGptq, GpuError> {
        q.validate().map_err(GpuError::new)?;
        Ok(EmuGptq {
            k: q.k,
            n: q.n,
            qweight: EmuBuf::from_slice(&q.qweight)?,
            qzeros: EmuBuf::from_slice(&q.qzeros)?,
            scales: EmuBuf::from_slice(&q.scales)?,
            g_idx: EmuBuf::from_slice(&q.g_idx)?,
        })
    }

    fn set_max_blocks(&self, blocks: Option<u32>) {
        self.max_blocks
            .store(blocks.unwrap_or(0), Ordering::Relaxed);
    }

    fn int8_add(
        &self,
        variant: AddVariant,
        a: &EmuBuf<i8>,
        b: &EmuBuf<i8>,
        out: &mut EmuBuf<i8>,
        sa: f32,
        sb: f32,
        inv_so: f32,
    ) -> Result<(), GpuError> {
        let n = a.len();
        if b.len() != n || out.len() != n {
            return Err(GpuError::new("int8_add: a, b and out must have one length"));
        }
        let cfg = plan::int8_add_plan(self.geometry(), variant, (n, n, n), n)?;
        let args = [
            arg_in(a),
            arg_in(b),
            arg_out(out),
            EmuArg::F32(sa),
            EmuArg::F32(sb),
            EmuArg::F32(inv_so),
            EmuArg::U64(n as u64),
        ];
        self.launch(variant.kernel(), cfg, &args)
    }

    fn dequant_ggml(
        &self,
        q4k: bool,
        src: &EmuBuf<u8>,
        out: &mut EmuBuf<f32>,
    ) -> Result<(), GpuError> {
        let n = out.len();
        let (name, cfg) = plan::dequant_ggml_plan(self.geometry(), q4k, src.len(), n)?;
        let args = [arg_in(src), arg_out(out), EmuArg::U64(n as u64)];
        self.launch(name, cfg, &args)
    }

    fn dequant_nf4(
        &self,
        packed: &EmuBuf<u8>,
        absmax: &EmuBuf<f32>,
        block: usize,
        out: &mut EmuBuf<f32>,
    ) -> Result<(), GpuError> {
        let n = out.len();
        let cfg = plan::dequant_nf4_plan(self.geometry(), packed.len(), absmax.len(), block, n)?;
        let args = [
            arg_in(packed),
            arg_in(absmax),
            arg_out(out),
            EmuArg::U64(n as u64),
            EmuArg::U32(block as u32),
        ];
        self.launch("dequant_nf4", cfg, &args)
    }

    fn dequant_gptq(&self, q: &EmuGptq, out: &mut EmuBuf<f32>) -> Result<(), GpuError> {
        let cfg = plan::dequant_gptq_plan(self.geometry(), (q.k, q.n), out.len())?;
        let [w, z, s, g] = q.args();
        let args = [
            w,
            z,
            s,
            g,
            arg_out(out),
            EmuArg::U32(q.k as u32),
            EmuArg::U32(q.n as u32),
        ];
        self.launch("dequant_gptq_int4", cfg, &args)
    }

    fn gemv_ggml(
        &self,
        q4k: bool,
        w: &EmuBuf<u8>,
        x: &EmuBuf<f32>,
        y: &mut EmuBuf<f32>,
    ) -> Result<(), GpuError> {
        let (k, rows) = (x.len(), y.len());
        let (name, cfg) = plan::gemv_ggml_plan(q4k, w.len(), k, rows)?;
        let args = [
            arg_in(w),
            arg_in(x),
            arg_out(y),
            EmuArg::U32(rows as u32),
            EmuArg::U32(k as u32),
        ];
        self.launch(name, cfg, &args)
    }

    fn gemv_nf4(
        &self,
        packed: &EmuBuf<u8>,
        absmax: &EmuBuf<f32>,
        x: &EmuBuf<f32>,
        y: &mut EmuBuf<f32>,
    ) -> Result<(), GpuError> {
        let (k, rows) = (x.len(), y.len());
        let cfg = plan::gemv_nf4_plan(packed.len(), absmax.len(), k, rows)?;
        let args = [
            arg_in(packed),
            arg_in(absmax),
            arg_in(x),
            arg_out(y),
            EmuArg::U32(rows as u32),
            EmuArg::U32(k as u32),
        ];
        self.launch("gemv_nf4", cfg, &args)
    }

    fn gemv_gptq(&self, q: &EmuGptq, x: &EmuBuf<f32>, y: &mut EmuBuf<f32>) -> Result<(), GpuError> {
        let cfg = plan::gemv_gptq_plan((q.k, q.n), (x.len(), y.len()))?;
        y.fill_zero();
        let [w, z, s, g] = q.args();
        let args = [
            w,
            z,
            s,
            g,
            arg_in(x),
            arg_out(y),
            EmuArg::U32(q.k as u32),
            EmuArg::U32(q.n as u32),
        ];
        self.launch("gemv_gptq_int4", cfg, &args)
    }

    fn gemm_int8(
        &self,
        a: &EmuBuf<i8>,
        b: &EmuBuf<i8>,
        (m, n, k): (usize, usize, usize),
        c: Option<&mut EmuBuf<i32>>,
        w8a8: Option<(&EmuBuf<f32>, &EmuBuf<f32>, &mut EmuBuf<f32>)>,
    ) -> Result<(), GpuError> {
        let cfg = plan::gemm_int8_plan(
            (m, n, k),
            (a.len(), b.len()),
            c.as_ref().map(|c| c.len()),
            w8a8.as_ref()
                .map(|(sa, sb, d)| (sa.len(), sb.len(), d.len())),
        )?;
        let mut args = vec![arg_in(a), arg_in(b)];
        args.push(c.map_or(EmuArg::Null, arg_out));
        match w8a8 {
            Some((sa, sb, d)) => args.extend([arg_in(sa), arg_in(sb), arg_out(d)]),
            None => args.extend([EmuArg::Null, EmuArg::Null, EmuArg::Null]),
        }
        args.extend([
            EmuArg::U32(m as u32),
            EmuArg::U32(n as u32),
            EmuArg::U32(k as u32),
        ]);
        self.launch("gemm_int8_dp4a", cfg, &args)
    }
}
