//! Micro-timing of the slice kernels on a cache-resident row (development aid):
//! `cargo run --release -p smelt-quant --example quant_micro`.
use smelt_quant::{INT8, QParams, Scheme, rng::Rng, simd};
use std::time::Instant;

fn main() {
    let x = Rng::new(1).normals(8192);
    let p = QParams::from_range(-4.0, 4.0, INT8, Scheme::Symmetric { restricted: true }).unwrap();
    let mut out = vec![0i8; 8192];
    let mut f = vec![0f32; 8192];
    let reps = 20_000;
    let t = Instant::now();
    for _ in 0..reps {
        let mut mm = (f32::INFINITY, f32::NEG_INFINITY);
        simd::min_max(std::hint::black_box(&x), &mut mm);
        std::hint::black_box(mm);
    }
    let ns = t.elapsed().as_nanos() as f64 / (reps * 8192) as f64;
    println!("min_max    {ns:.3} ns/elem");
    let t = Instant::now();
    for _ in 0..reps {
        simd::quantize(&p, std::hint::black_box(&x), &mut out);
        std::hint::black_box(&out);
    }
    println!(
        "quantize   {:.3} ns/elem",
        t.elapsed().as_nanos() as f64 / (reps * 8192) as f64
    );
    let t = Instant::now();
    for _ in 0..reps {
        simd::dequantize(&p, std::hint::black_box(&out), true, &mut f);
        std::hint::black_box(&f);
    }
    println!(
        "dequantize {:.3} ns/elem",
        t.elapsed().as_nanos() as f64 / (reps * 8192) as f64
    );
    let t = Instant::now();
    for _ in 0..reps / 4 {
        simd::nf4_codes(std::hint::black_box(&x), 0.25, &mut out);
        std::hint::black_box(&out);
    }
    println!(
        "nf4_codes  {:.3} ns/elem",
        t.elapsed().as_nanos() as f64 / (reps / 4 * 8192) as f64
    );
}
