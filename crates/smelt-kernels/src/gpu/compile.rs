//! NVRTC compilation of smelt's CUDA kernels at first use, with an on-disk PTX cache.
//!
//! Every kernel file is compiled with [`COMMON`] in front of it. NVRTC needs no GPU, so CI
//! compiles every file (`tests/cuda_compile.rs`) with NVRTC from PyPI and catches errors before
//! a GPU machine ever sees the code.

use std::path::Path;

use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::GpuError;

/// Helpers every kernel file is compiled with.
pub const COMMON: &str = include_str!("cuda/common.cuh");

/// One CUDA source file and the `extern "C"` kernels it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name under `src/gpu/cuda/`.
    pub file: &'static str,
    /// The CUDA C text.
    pub text: &'static str,
    /// Kernel entry points.
    pub functions: &'static [&'static str],
}

/// INT8 vector add with scaling.
pub const INT8_ADD: KernelSource = KernelSource {
    file: "int8_add.cu",
    text: include_str!("cuda/int8_add.cu"),
    functions: &["int8_add_scalar", "int8_add_vec4", "int8_add_vec16"],
};
/// Dequantize kernels.
pub const DEQUANT: KernelSource = KernelSource {
    file: "dequant.cu",
    text: include_str!("cuda/dequant.cu"),
    functions: &[
        "dequant_q8_0",
        "dequant_q4_k",
        "dequant_nf4",
        "dequant_gptq_int4",
    ],
};
/// Fused dequantize-GEMV kernels.
pub const GEMV: KernelSource = KernelSource {
    file: "gemv.cu",
    text: include_str!("cuda/gemv.cu"),
    functions: &["gemv_q4_k", "gemv_q8_0", "gemv_nf4", "gemv_gptq_int4"],
};
/// INT8 GEMM (dp4a) for W8A8.
pub const GEMM_INT8: KernelSource = KernelSource {
    file: "gemm_int8.cu",
    text: include_str!("cuda/gemm_int8.cu"),
    functions: &["gemm_int8_dp4a"],
};

/// Every kernel file.
pub const SOURCES: [KernelSource; 4] = [INT8_ADD, DEQUANT, GEMV, GEMM_INT8];

/// Whether libnvrtc can be loaded (cudarc panics on first use otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// NVRTC's version, e.g. `(13, 0)`.
pub fn nvrtc_version() -> Result<(i32, i32), GpuError> {
    if !nvrtc_present() {
        return Err(GpuError::new(NO_NVRTC));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); both pointers are valid.
    let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if status != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(GpuError::new(format!("nvrtcVersion failed: {status:?}")));
    }
    Ok((major, minor))
}

/// Message when libnvrtc is missing.
pub const NO_NVRTC: &str = "NVRTC (libnvrtc.so.13) not found: install the CUDA toolkit or \
     `pip install nvidia-cuda-nvrtc==13.0.*` and put its nvidia/cu13/lib folder on LD_LIBRARY_PATH";

/// Compiles `src` to PTX for `arch` (e.g. `compute_90`).
pub fn compile(src: &KernelSource, arch: &str) -> Result<String, GpuError> {
    if !nvrtc_present() {
        return Err(GpuError::new(NO_NVRTC));
    }
    let text = format!("{COMMON}\n#line 1 \"{}\"\n{}", src.file, src.text);
    let opts = CompileOptions {
        name: Some(src.file.to_string()),
        options: vec![
            format!("--gpu-architecture={arch}"),
            "--generate-line-info".to_string(),
        ],
        ..Default::default()
    };
    let ptx = std::panic::catch_unwind(|| compile_ptx_with_opts(text, opts))
        .map_err(|_| GpuError::new(format!("NVRTC panicked compiling {}", src.file)))?
        .map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => GpuError::new(format!(
                "NVRTC could not compile {}:\n{}",
                src.file,
                log.to_string_lossy()
            )),
            other => GpuError::new(format!("NVRTC failed on {}: {other:?}", src.file)),
        })?;
    Ok(ptx.to_src())
}

/// What ptxas reports for `src` compiled to machine code for `sm` (e.g. `sm_90`): per kernel,
/// registers, spill bytes and shared memory. No GPU needed; tests use it to keep the kernels
/// free of spills and within their launch bounds.
pub fn ptxas_report(src: &KernelSource, sm: &str) -> Result<String, GpuError> {
    use cudarc::nvrtc::result;
    use std::ffi::{CStr, CString};
    if !nvrtc_present() {
        return Err(GpuError::new(NO_NVRTC));
    }
    let text = CString::new(format!("{COMMON}\n{}", src.text))
        .map_err(|_| GpuError::new("kernel source holds a NUL byte"))?;
    let name = CString::new(src.file).map_err(|_| GpuError::new("file name holds a NUL byte"))?;
    let prog = result::create_program(&text, Some(&name))
        .map_err(|e| GpuError::new(format!("nvrtcCreateProgram: {e:?}")))?;
    let opts = [
        format!("--gpu-architecture={sm}"),
        "--ptxas-options=--verbose".to_string(),
    ];
    // SAFETY: `prog` is a live program; the log is read before it is destroyed.
    let (status, log) = unsafe {
        let status = result::compile_program(prog, &opts);
        let log = result::get_program_log(prog);
        let _ = result::destroy_program(prog);
        (status, log)
    };
    let log = log
        .map(|l| {
            // SAFETY: NVRTC's log is NUL-terminated.
            unsafe { CStr::from_ptr(l.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    status.map_err(|e| {
        GpuError::new(format!(
            "NVRTC could not compile {}: {e:?}\n{log}",
            src.file
        ))
    })?;
    Ok(log)
}

/// Registers and spill bytes of each kernel in a [`ptxas_report`]: (name, registers, spills).
pub fn ptxas_kernels(report: &str) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    let mut name = None;
    let mut spills = 0;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            name = rest.split('\'').next().map(str::to_string);
            spills = 0;
        } else if line.contains("bytes spill stores") {
            spills = line
                .split_whitespace()
                .zip(line.split_whitespace().skip(1))
                .filter(|(_, unit)| *unit == "bytes")
                .filter_map(|(n, _)| n.parse::<u32>().ok())
                .sum();
        } else if let Some(rest) = line.split("Used ").nth(1)
            && let Some(regs) = rest.split_whitespace().next().and_then(|r| r.parse().ok())
            && let Some(n) = name.take()
        {
            out.push((n, regs, spills));
        }
    }
    out
}

/// [`compile`] through a cache folder: PTX files named by a hash of the source, the
/// architecture and NVRTC's version, written to a temporary name and renamed.
pub fn compile_cached(
    src: &KernelSource,
    arch: &str,
    cache_dir: Option<&Path>,
) -> Result<String, GpuError> {
    let Some(dir) = cache_dir else {
        return compile(src, arch);
    };
    let (major, minor) = nvrtc_version()?;
    let key = fnv1a(
        [COMMON, src.text, arch, &format!("nvrtc {major}.{minor}")]
            .join("\u{0}")
            .as_bytes(),
    );
    let path = dir.join(format!("{}-{arch}-{key:016x}.ptx", src.file));
    if let Ok(ptx) = std::fs::read_to_string(&path)
        && ptx.contains(".entry")
    {
        return Ok(ptx);
    }
    let ptx = compile(src, arch)?;
    // A cache that cannot be written only costs a recompile next time.
    if std::fs::create_dir_all(dir).is_ok() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &ptx).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(ptx)
}

/// 64-bit FNV-1a: a stable cache key (std's hasher may change between Rust releases).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
