//! Guided steps on two workers. A guided sampler step needs the network twice, on the null
//! condition and on the prompt; on the CPU the page is one WebAssembly thread, so the engine
//! hands the null rows to a second engine in a second worker and computes the conditional
//! rows meanwhile (the native CLI runs the two on two threads the same way). The rows cross
//! between workers as plain values: [`NullCall`] there, the prediction's values back.
//!
//! Sharing does not always pay: a small network at batch 1 can cost nearly what it costs at
//! batch 2 (the shipped model's motion DiT does, in WebAssembly), and the rows cross between
//! workers at every step. So each stage tries both ways on its first guided steps and keeps
//! the faster ([`Chooser`]); the clip is the same either way.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::pipelines::{GuidedCall, Stage};

/// A guided step's null-condition call as plain values, to send to another worker.
#[derive(Debug, Clone, PartialEq)]
pub struct NullCall {
    /// [`Stage::Content`] (the content UNet) or [`Stage::Motion`] (the motion DiT).
    pub stage: Stage,
    /// The sample `x_t`, `dims` in order.
    pub x: Vec<f32>,
    /// Its shape.
    pub dims: [usize; 4],
    /// The timestep.
    pub t: usize,
    /// Motion steps: the content frame and its shape.
    pub content: Option<(Vec<f32>, [usize; 4])>,
}

/// The future a [`Helper`] answers with: the null prediction's values, in the sample's shape.
pub type Reply = Pin<Box<dyn Future<Output = Result<Vec<f32>, String>>>>;

/// Computes the null rows of guided steps elsewhere: the page's second worker.
pub trait Helper {
    /// Starts computing `call`'s null prediction at once (before the reply is awaited: the
    /// caller computes the conditional rows in between) and answers with its values.
    fn ask(&self, call: NullCall) -> Reply;
}

impl NullCall {
    /// The plain values of `call` (read from the device: meant for the CPU, where that is a
    /// copy).
    pub(crate) fn of(call: &GuidedCall) -> Result<Self, String> {
        let (stage, x, t, content) = match call {
            GuidedCall::Content { x, t } => (Stage::Content, x, *t, None),
            GuidedCall::Motion { x, t, content } => (Stage::Motion, x, *t, Some(content)),
        };
        Ok(Self {
            stage,
            x: values(x)?,
            dims: x.dims(),
            t,
            content: match content {
                Some(c) => Some((values(c)?, c.dims())),
                None => None,
            },
        })
    }

    /// The call on `device`, its values checked against their shapes.
    pub(crate) fn to_guided(&self, device: &Device) -> Result<GuidedCall, String> {
        let content = match (self.stage, &self.content) {
            (Stage::Content, None) => None,
            (Stage::Motion, Some(content)) => Some(content),
            (Stage::Motion, None) => {
                return Err("a motion step's null call needs its content frame".into());
            }
            (stage, content) => {
                return Err(format!(
                    "a null call is for a content or motion step, found {stage:?} (with a content frame: {})",
                    content.is_some()
                ));
            }
        };
        let (x, t) = (tensor("x", &self.x, self.dims, device)?, self.t);
        Ok(match content {
            None => GuidedCall::Content { x, t },
            Some((values, dims)) => GuidedCall::Motion {
                x,
                t,
                content: tensor("content", values, *dims, device)?,
            },
        })
    }
}

/// `values` as a tensor of shape `dims`, or an error naming `what` when they do not fit.
pub(crate) fn tensor(
    what: &str,
    values: &[f32],
    dims: [usize; 4],
    device: &Device,
) -> Result<Tensor<4>, String> {
    let expected: usize = dims.iter().product();
    if values.len() != expected {
        return Err(format!(
            "{what}: {} values for shape {dims:?}, expected {expected}",
            values.len()
        ));
    }
    Ok(Tensor::from_data(
        TensorData::new(values.to_vec(), dims),
        device,
    ))
}

/// A tensor's values on the host (synchronously: the CPU backend).
pub(crate) fn values(t: &Tensor<4>) -> Result<Vec<f32>, String> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("unexpected tensor data: {e:?}"))
}

/// Per stage, whether guided steps are shared with the helper, by their times: the stage's
/// guided steps alternate, one batch here then shared, until each way has been timed
/// [`Chooser::PROBES`] times; then the way with the shorter best time takes the rest.
#[derive(Debug, Default)]
pub struct Chooser {
    stage: Option<Stage>,
    batched: Vec<Duration>,
    shared: Vec<Duration>,
}

impl Chooser {
    /// Times each way is tried per stage (the best counts: the first steps also warm up).
    pub const PROBES: usize = 2;

    /// Whether the next guided step of `stage` is to be shared.
    pub fn share(&mut self, stage: Stage) -> bool {
        if self.stage != Some(stage) {
            *self = Self {
                stage: Some(stage),
                ..Self::default()
            };
        }
        let best = |times: &[Duration]| times.iter().min().copied();
        if self.shared.len() < Self::PROBES || self.batched.len() < Self::PROBES {
            return self.shared.len() < self.batched.len();
        }
        best(&self.shared) < best(&self.batched)
    }

    /// Notes how long a guided step of the current stage took, and which way.
    pub fn took(&mut self, shared: bool, time: Duration) {
        match shared {
            true => self.shared.push(time),
            false => self.batched.push(time),
        }
    }
}
