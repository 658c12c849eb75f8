//! Turning `--device` into a burn device, with a clear error when it is not available.

use anyhow::{Context, Result, bail};
use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{Device, FloatDType};

use crate::cli::DeviceArg;

/// The device `arg` names, initialised.
pub fn open(arg: DeviceArg) -> Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::flex()),
        DeviceArg::Wgpu => wgpu(WgpuBackend::Auto, "wgpu"),
        DeviceArg::Vulkan => wgpu(WgpuBackend::Vulkan, "vulkan"),
        DeviceArg::Cuda => cuda(),
    }
}

/// The device `arg` names, computing in f16 when `half` is set.
pub fn open_with_precision(arg: DeviceArg, half: bool) -> Result<Device> {
    let mut device = open(arg)?;
    if half {
        device
            .configure(FloatDType::F16)
            .map_err(|e| anyhow::anyhow!("--half: this device cannot compute in f16: {e}"))?;
    }
    Ok(device)
}

fn wgpu(api: WgpuBackend, name: &str) -> Result<Device> {
    Device::wgpu_options()
        .graphics_api(api)
        .init()
        .with_context(|| {
            format!(
                "--device {name}: no usable GPU adapter (on Debian, `apt-get install \
             mesa-vulkan-drivers` gives a software Vulkan device)"
            )
        })
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    // cudarc panics when the driver is missing; look for it first.
    let driver = std::path::Path::new("/proc/driver/nvidia/version");
    if !driver.exists() {
        bail!(
            "--device cuda: no NVIDIA driver found ({} is missing)",
            driver.display()
        );
    }
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    bail!(
        "--device cuda: this cmdv was built without CUDA; rebuild with `cargo build --release \
         --features cuda` (the build downloads LLVM, so it needs network access)"
    )
}
