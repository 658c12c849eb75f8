//! Sets `cfg(threads)` where the CPU kernels may split their work over rayon's thread pool:
//! native builds, and WebAssembly builds with shared memory (`+atomics`), whose pool the page
//! starts on Web Workers. A wasm build without shared memory has one thread.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(threads)");
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let wasm = family.split(',').any(|f| f == "wasm");
    let atomics = features.split(',').any(|f| f == "atomics");
    if !wasm || atomics {
        println!("cargo::rustc-cfg=threads");
    }
}
