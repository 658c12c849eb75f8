//! UNet2DConditionModel parity with diffusers 0.35.2 (`tests/reference/make_unet_fixture.py`)
//! for the SD1.5 layout (conv projections) and the SD2.1 layout (linear projections, per-block
//! heads), loaded from diffusers `unet/` folders through the same code users use.

mod common;

use burn::tensor::Device;
use cmd_model::unet::UnetConfig;
use cmd_model::weights::load_safetensors;
use safetensors::SafeTensors;

#[test]
fn unets_match_diffusers() {
    let device = Device::flex();
    for name in ["unet_sd15", "unet_sd21"] {
        let dir = common::reference(name);
        let config: UnetConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let mut unet = config.init(&device).unwrap();
        let weights = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
        load_safetensors(&mut unet, weights, name, &[], &config.key_remapping()).unwrap();

        let io = std::fs::read(dir.join("io.safetensors")).unwrap();
        let io = SafeTensors::deserialize(&io).unwrap();
        let x = common::tensor::<4>(&io, "sample", &device);
        let t: Vec<f64> = common::f32s(&io, "timesteps")
            .0
            .iter()
            .map(|v| *v as f64)
            .collect();
        let text = common::tensor::<3>(&io, "text", &device);
        let got = common::host(unet.forward(x, &t, &text));
        common::assert_l2_close(&got, &common::f32s(&io, "eps").0, 1e-4, name);
    }
}

#[test]
fn unsupported_unet_configs_name_the_field() {
    let config = UnetConfig {
        down_block_types: vec!["SimpleCrossAttnDownBlock2D".into(); 4],
        ..UnetConfig::default()
    };
    let err = config.init(&Device::flex()).unwrap_err().to_string();
    assert!(
        err.contains("'down_block_types'") && err.contains("SimpleCrossAttnDownBlock2D"),
        "{err}"
    );
}

#[test]
fn full_size_layouts_have_the_real_parameter_counts() {
    // diffusers 0.35.2: UNet2DConditionModel(cross_attention_dim=768) and the SD2.1 variant,
    // counted on the meta device (see tests/reference/README.md).
    use burn::module::Module;
    let device = Device::flex();
    assert_eq!(
        UnetConfig::sd15().init(&device).unwrap().num_params(),
        859_520_964
    );
    assert_eq!(
        UnetConfig::sd21().init(&device).unwrap().num_params(),
        865_910_724
    );
}
