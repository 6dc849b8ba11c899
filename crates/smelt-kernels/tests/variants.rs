//! The kernel tests run every variant this CPU can run ([`available_variants`]), so a feature
//! detection that found less than the CPU has would skip variants without a word.
//! `scripts/test` names, in `SMELT_REQUIRE_VARIANTS`, the variants whose instructions the
//! operating system reports (the flags in `/proc/cpuinfo`), and this test fails where one of
//! them is missing. Unset, it requires nothing.

use smelt_kernels::available_variants;

const KNOWN: [&str; 4] = ["reference", "avx2", "avx-vnni", "avx512-vnni"];

#[test]
fn required_variants_are_detected() {
    let Ok(want) = std::env::var("SMELT_REQUIRE_VARIANTS") else {
        eprintln!("SMELT_REQUIRE_VARIANTS is unset: no variant is required");
        return;
    };
    let have: Vec<&str> = available_variants().iter().map(|v| v.name()).collect();
    for name in want.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        assert!(
            KNOWN.contains(&name),
            "SMELT_REQUIRE_VARIANTS names {name:?}; the variants are {KNOWN:?}"
        );
        assert!(
            have.contains(&name),
            "SMELT_REQUIRE_VARIANTS requires {name:?}, but this process detected only {have:?}"
        );
    }
    eprintln!("required variants [{want}] detected; this CPU runs {have:?}");
}

#[test]
fn every_variant_name_is_known() {
    for v in available_variants() {
        assert!(KNOWN.contains(&v.name()), "{:?} is missing from KNOWN", v);
    }
}
