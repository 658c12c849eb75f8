//! Turning `--device` into a burn device, with a clear error when it is not available.

use anyhow::{Context, Result, bail};
use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{Device, DeviceKind, FloatDType};

use crate::cli::DeviceArg;

/// The device `arg` names, initialised.
pub fn open(arg: DeviceArg) -> Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::flex()),
        DeviceArg::Wgpu => wgpu(WgpuBackend::Auto, "wgpu"),
        DeviceArg::Vulkan => wgpu(WgpuBackend::Vulkan, "vulkan"),
        DeviceArg::Cuda => cuda(0),
    }
}

/// `count` devices of the kind `arg` names, for data parallel training: GPUs `0..count` (on
/// the CPU, `count` handles of the one CPU device).
pub fn open_many(arg: DeviceArg, count: usize) -> Result<Vec<Device>> {
    if count == 1 || arg == DeviceArg::Cpu {
        return (0..count).map(|_| open(arg)).collect();
    }
    (0..count)
        .map(|index| match arg {
            DeviceArg::Cpu => unreachable!("handled above"),
            DeviceArg::Wgpu | DeviceArg::Vulkan => {
                let api = if arg == DeviceArg::Vulkan {
                    WgpuBackend::Vulkan
                } else {
                    WgpuBackend::Auto
                };
                Device::wgpu_options()
                    .graphics_api(api)
                    .device_kind(DeviceKind::DiscreteGpu(index))
                    .init()
                    .with_context(|| {
                        format!("--devices {count}: there is no discrete GPU number {index}")
                    })
            }
            DeviceArg::Cuda => cuda(index),
        })
        .collect()
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
fn cuda(index: usize) -> Result<Device> {
    // cudarc panics when the driver is missing; look for it first.
    let driver = std::path::Path::new("/proc/driver/nvidia/version");
    if !driver.exists() {
        bail!(
            "--device cuda: no NVIDIA driver found ({} is missing)",
            driver.display()
        );
    }
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device> {
    bail!(
        "--device cuda: this cmdv was built without CUDA; rebuild with `cargo build --release \
         --features cuda` (the build downloads LLVM, so it needs network access)"
    )
}
