//! The JavaScript face of the engine (wasm-bindgen). The page's Web Worker loads a model into a
//! [`Studio`] and asks it for clips; every call returns a promise.

use std::collections::HashMap;
use std::rc::Rc;

use burn::tensor::Device;
use cmd_model::pipelines::Stage;
use js_sys::{Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::engine::{Engine, Panels, Request};
use crate::limits;

/// A loaded model, ready to generate.
#[wasm_bindgen]
pub struct Studio {
    engine: Rc<Engine>,
    backend: String,
}

/// WebGPU, or why not.
#[cfg(target_arch = "wasm32")]
async fn webgpu() -> Result<Device, String> {
    use burn::tensor::wgpu::WgpuBackend;
    Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| format!("{e}"))
}

#[cfg(not(target_arch = "wasm32"))]
async fn webgpu() -> Result<Device, String> {
    Err("WebGPU exists only in browsers".into())
}

#[wasm_bindgen]
impl Studio {
    /// Loads a model bundle: `files` maps file names (`model.json`, `tokenizer.json`,
    /// `*.safetensors`) to their bytes. With `gpu`, runs on WebGPU when the browser offers an
    /// adapter whose buffers (at most `max_buffer` bytes, the smaller of the adapter's
    /// `maxBufferSize` and `maxStorageBufferBindingSize`; 0 when unknown) can hold the model,
    /// else (and without `gpu`) on the CPU; [`backend`](Self::backend) says which, and why.
    pub async fn load(files: js_sys::Map, gpu: bool, max_buffer: f64) -> Result<Studio, JsError> {
        #[cfg(target_arch = "wasm32")]
        console_error_panic_hook::set_once();
        let bytes = file_map(&files)?;
        let fits = match max_buffer {
            m if m > 0.0 => limits::check_fits(&bytes, m as u64),
            _ => Ok(()),
        };
        let (device, backend) = if let (true, Err(why)) = (gpu, &fits) {
            (Device::flex(), format!("CPU (WebAssembly): {why}"))
        } else if gpu {
            match webgpu().await {
                Ok(device) => (device, "WebGPU".to_string()),
                Err(why) => (
                    Device::flex(),
                    format!("CPU (WebAssembly): no WebGPU adapter ({why})"),
                ),
            }
        } else {
            (Device::flex(), "CPU (WebAssembly)".to_string())
        };
        let engine = Engine::load(bytes, device).map_err(|e| JsError::new(&e))?;
        Ok(Studio {
            engine: Rc::new(engine),
            backend,
        })
    }

    /// Where the model runs, in words.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Frame height in pixels.
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.engine.clip_size().0
    }

    /// Frame width in pixels.
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.engine.clip_size().1
    }

    /// Frames per clip.
    #[wasm_bindgen(getter)]
    pub fn frames(&self) -> usize {
        self.engine.clip_size().2
    }

    /// Loads the autoencoder that decomposes and transfers real clips from the files of its
    /// folder (`model.json`, `autoencoder.safetensors`); until then the bundle's own does.
    #[wasm_bindgen(js_name = loadClipAutoencoder)]
    pub fn load_clip_autoencoder(&self, files: js_sys::Map) -> Result<(), JsError> {
        self.engine
            .load_clip_autoencoder(file_map(&files)?)
            .map_err(|e| JsError::new(&e))
    }

    /// The size clips to decompose or transfer must have: `{width, height, frames,
    /// autoencoder}` (the name of the autoencoder that will do it).
    #[wasm_bindgen(js_name = clipSize)]
    pub fn clip_size(&self) -> Result<JsValue, JsError> {
        let (height, width, frames, name) = self.engine.decompose_size();
        let size = js_sys::Object::new();
        for (key, value) in [
            ("width", JsValue::from(width as u32)),
            ("height", JsValue::from(height as u32)),
            ("frames", JsValue::from(frames as u32)),
            ("autoencoder", JsValue::from(name)),
        ] {
            js_sys::Reflect::set(&size, &key.into(), &value).map_err(js_error)?;
        }
        Ok(size.into())
    }

    /// Text to video. `progress(stage, done, total)` is called as the work goes, with stage
    /// one of `text`, `content`, `motion`, `decode`. Resolves to a [`ClipPanels`].
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &self,
        prompt: String,
        seed: u32,
        steps: usize,
        motion_steps: usize,
        guidance: f64,
        motion_guidance: f64,
        progress: Function,
    ) -> Promise {
        let engine = self.engine.clone();
        let request = Request {
            prompt,
            seed: seed as u64,
            steps,
            motion_steps,
            guidance,
            motion_guidance,
        };
        future_to_promise(async move {
            let mut report = reporter(progress);
            answer(engine.generate(&request, &mut report).await)
        })
    }

    /// Image to video: `image` is one RGBA picture at the model's frame size (the content
    /// frame is given, so the content sampler's steps and guidance are not used).
    pub fn animate(
        &self,
        image: Vec<u8>,
        prompt: String,
        seed: u32,
        motion_steps: usize,
        motion_guidance: f64,
        progress: Function,
    ) -> Promise {
        let engine = self.engine.clone();
        let request = Request {
            prompt,
            seed: seed as u64,
            steps: 1,
            motion_steps,
            guidance: 1.0,
            motion_guidance,
        };
        future_to_promise(async move {
            let mut report = reporter(progress);
            answer(engine.animate(&image, &request, &mut report).await)
        })
    }

    /// Content and motion of a clip (RGBA frames of [`clip_size`](Self::clip_size), one after
    /// the other), and its reconstruction.
    pub fn decompose(&self, frames: Vec<u8>) -> Promise {
        let engine = self.engine.clone();
        future_to_promise(async move { answer(engine.decompose(&frames).await) })
    }

    /// The content of clip `a` with the motion of clip `b`.
    pub fn transfer(&self, a: Vec<u8>, b: Vec<u8>) -> Promise {
        let engine = self.engine.clone();
        future_to_promise(async move { answer(engine.transfer(&a, &b).await) })
    }
}

/// A clip and its teaching pictures, for JavaScript.
#[wasm_bindgen]
pub struct ClipPanels(Panels);

#[wasm_bindgen]
impl ClipPanels {
    /// Frames in the clip.
    #[wasm_bindgen(getter)]
    pub fn frames(&self) -> usize {
        self.0.clip.len()
    }

    /// Frame width.
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.0.clip.width()
    }

    /// Frame height.
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.0.clip.height()
    }

    /// The clip: RGBA frames one after the other.
    pub fn clip(&self) -> Vec<u8> {
        self.0.clip_rgba()
    }

    /// The clip decoded from its content frame alone (zero motion).
    #[wasm_bindgen(js_name = contentOnly)]
    pub fn content_only(&self) -> Vec<u8> {
        self.0.content_only_rgba()
    }

    /// The content frame (RGBA, frame size).
    pub fn content(&self) -> Vec<u8> {
        self.0.content.rgba.clone()
    }

    /// The importance-weight heat maps: `[width, height]` then RGBA bytes.
    pub fn weights(&self) -> Vec<u8> {
        with_size(&self.0.weights)
    }

    /// The motion planes: `[width, height]` (two little-endian u32) then RGBA bytes.
    pub fn motion(&self) -> Vec<u8> {
        with_size(&self.0.motion)
    }

    /// The clip as a looping GIF file.
    pub fn gif(&self) -> Vec<u8> {
        self.0.gif()
    }

    /// PSNR of a reconstruction against its input (dB), or undefined.
    #[wasm_bindgen(getter)]
    pub fn psnr(&self) -> Option<f64> {
        self.0.psnr
    }

    /// The prompt was cut at 75 tokens.
    #[wasm_bindgen(getter)]
    pub fn truncated(&self) -> bool {
        self.0.truncated
    }
}

/// A JavaScript `Map` of file names to bytes.
fn file_map(files: &js_sys::Map) -> Result<HashMap<String, Vec<u8>>, JsError> {
    let mut bytes = HashMap::new();
    for entry in files.entries() {
        let pair: js_sys::Array = entry.map_err(js_error)?.into();
        let name = pair.get(0).as_string().unwrap_or_default();
        bytes.insert(name, Uint8Array::new(&pair.get(1)).to_vec());
    }
    Ok(bytes)
}

/// A picture as `[width: u32 le, height: u32 le, rgba...]`.
fn with_size(picture: &crate::Picture) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + picture.rgba.len());
    out.extend((picture.width as u32).to_le_bytes());
    out.extend((picture.height as u32).to_le_bytes());
    out.extend(&picture.rgba);
    out
}

fn reporter(progress: Function) -> impl FnMut(Stage, usize, usize) {
    move |stage, done, total| {
        let stage = match stage {
            Stage::Text => "text",
            Stage::Content => "content",
            Stage::Motion => "motion",
            Stage::Decode => "decode",
        };
        // A failing progress callback must not stop the work.
        let _ = progress.call3(
            &JsValue::NULL,
            &stage.into(),
            &(done as u32).into(),
            &(total as u32).into(),
        );
    }
}

fn answer(result: Result<Panels, String>) -> Result<JsValue, JsValue> {
    result
        .map(|panels| ClipPanels(panels).into())
        .map_err(|e| JsError::new(&e).into())
}

fn js_error(e: JsValue) -> JsError {
    JsError::new(&format!("{e:?}"))
}
