//! The JavaScript face of the engine (wasm-bindgen). The page's Web Worker loads a model into a
//! [`Studio`] and asks it for clips; every call returns a promise.

use std::collections::HashMap;
use std::rc::Rc;

use burn::tensor::Device;
use cmd_model::pipelines::Stage;
use js_sys::{Array, Float32Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::engine::{Engine, Panels, Request};
use crate::helper::{Helper, NullCall, Reply};
use crate::limits;

/// A loaded model, ready to generate.
#[wasm_bindgen]
pub struct Studio {
    engine: Rc<Engine>,
    backend: String,
}

/// WebGPU, or why not.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
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

#[cfg(target_feature = "atomics")]
async fn webgpu() -> Result<Device, String> {
    Err("this is the threaded CPU build, without WebGPU".into())
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

    /// Sends the null rows of guided steps to a second worker from now on (the CPU only; see
    /// the engine's `set_helper`): `ask(call)` posts `call` (`{stage, x, dims, t, content,
    /// contentDims}`, for that worker's [`null_prediction`](Self::null_prediction)) and
    /// returns a promise of its answer, a `Float32Array`. Returns whether it was taken.
    #[wasm_bindgen(js_name = setHelper)]
    pub fn set_helper(&self, ask: Function) -> bool {
        self.engine.set_helper(Box::new(JsHelper(ask)))
    }

    /// The null-condition prediction of a guided step another worker's studio asks for (see
    /// [`set_helper`](Self::set_helper)).
    #[wasm_bindgen(js_name = nullPrediction)]
    pub fn null_prediction(&self, call: JsValue) -> Result<Float32Array, JsError> {
        let call = null_call_from_js(&call).map_err(|e| JsError::new(&e))?;
        let values = self
            .engine
            .null_prediction(&call)
            .map_err(|e| JsError::new(&e))?;
        Ok(Float32Array::from(&values[..]))
    }

    /// Runs a content and a motion null prediction `rounds` times, so that a second worker's
    /// first shared steps are as fast as its later ones (see the engine's `warm_up`).
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self, rounds: usize) -> Result<(), JsError> {
        self.engine.warm_up(rounds).map_err(|e| JsError::new(&e))
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

/// A [`Helper`] that is a JavaScript function (see [`Studio::set_helper`]).
struct JsHelper(Function);

impl Helper for JsHelper {
    fn ask(&self, call: NullCall) -> Reply {
        // Called now, so the other worker starts before the reply is awaited.
        let asked = null_call_to_js(&call).and_then(|call| self.0.call1(&JsValue::NULL, &call));
        Box::pin(async move {
            let values = JsFuture::from(Promise::resolve(&asked.map_err(message)?))
                .await
                .map_err(message)?;
            if !values.is_instance_of::<Float32Array>() {
                return Err("the answer is not a Float32Array".into());
            }
            Ok(Float32Array::from(values).to_vec())
        })
    }
}

/// `call` as `{stage, x, dims, t, content, contentDims}` (no content keys for content steps).
fn null_call_to_js(call: &NullCall) -> Result<JsValue, JsValue> {
    let object = Object::new();
    let dims = |d: &[usize; 4]| {
        d.iter()
            .map(|&n| JsValue::from(n as u32))
            .collect::<Array>()
    };
    let mut fields = vec![
        ("stage", JsValue::from(stage_name(call.stage))),
        ("x", Float32Array::from(&call.x[..]).into()),
        ("dims", dims(&call.dims).into()),
        ("t", JsValue::from(call.t as u32)),
    ];
    if let Some((values, shape)) = &call.content {
        fields.push(("content", Float32Array::from(&values[..]).into()));
        fields.push(("contentDims", dims(shape).into()));
    }
    for (key, value) in fields {
        Reflect::set(&object, &key.into(), &value)?;
    }
    Ok(object.into())
}

/// The [`NullCall`] of [`null_call_to_js`]'s object; an error names the key that is wrong.
fn null_call_from_js(call: &JsValue) -> Result<NullCall, String> {
    let get = |key: &str| Reflect::get(call, &key.into()).map_err(message);
    let floats = |key: &str| {
        let value = get(key)?;
        match value.dyn_into::<Float32Array>() {
            Ok(array) => Ok(array.to_vec()),
            Err(_) => Err(format!("null call: '{key}' must be a Float32Array")),
        }
    };
    let dims = |key: &str| -> Result<[usize; 4], String> {
        let wrong = || format!("null call: '{key}' must be 4 sizes");
        let value = get(key)?;
        let array = value.dyn_ref::<Array>().ok_or_else(wrong)?;
        let sizes: Option<Vec<usize>> = array
            .iter()
            .map(|v| v.as_f64().map(|n| n as usize))
            .collect();
        sizes.and_then(|s| s.try_into().ok()).ok_or_else(wrong)
    };
    let stage = match get("stage")?.as_string().as_deref() {
        Some("content") => Stage::Content,
        Some("motion") => Stage::Motion,
        other => {
            return Err(format!(
                "null call: 'stage' must be 'content' or 'motion', found {other:?}"
            ));
        }
    };
    let t = get("t")?
        .as_f64()
        .filter(|t| *t >= 0.0 && t.fract() == 0.0)
        .ok_or("null call: 't' must be a whole number")? as usize;
    let content = match get("content")?.is_undefined() {
        true => None,
        false => Some((floats("content")?, dims("contentDims")?)),
    };
    Ok(NullCall {
        stage,
        x: floats("x")?,
        dims: dims("dims")?,
        t,
        content,
    })
}

/// A thrown JavaScript value, in words.
fn message(e: JsValue) -> String {
    match e.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Text => "text",
        Stage::Content => "content",
        Stage::Motion => "motion",
        Stage::Decode => "decode",
    }
}

fn reporter(progress: Function) -> impl FnMut(Stage, usize, usize) {
    move |stage, done, total| {
        let stage = stage_name(stage);
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
