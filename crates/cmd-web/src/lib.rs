//! # cmd-web
//!
//! The browser app's engine: the shipped CMD model (the same bundle files `cmdv` uses) on
//! burn's WebGPU backend, or on its CPU backend where a browser has no WebGPU, run inside a
//! Web Worker. [`Engine`] is plain Rust (tested natively); [`Studio`] is its JavaScript face.
//!
//! Every read of a tensor back to the host is asynchronous (a synchronous read fails on
//! WebGPU), and the samplers wait for the device after each step, so progress is real.

#![warn(missing_docs)]

mod bindings;
mod engine;
pub mod helper;
pub mod limits;
mod pixels;

pub use bindings::Studio;
pub use engine::{Engine, Panels, Picture, Request};

/// The threaded build's `initThreadPool(threads)`: starts the rayon pool (Web Workers sharing
/// this engine's memory) that the CPU backend and kernels split their work over; the worker
/// calls it once, right after loading the engine.
#[cfg(target_feature = "atomics")]
pub use wasm_bindgen_rayon::init_thread_pool;
