//! One generation (text to video, or image to video) taken a step at a time: the order of
//! [`CmdPipeline::generate`](super::CmdPipeline::generate) written once, for callers that must
//! wait between steps (the browser awaits its GPU) as well as for those that run it through.
//!
//! The stages: the prompt (text encoder), the content frame (guided content sampling from
//! the noise of `seed`; skipped when a content frame is given), the motion latent (guided
//! motion sampling from the noise of `seed + 1`), the decode.

use burn::tensor::{Device, Tensor};

use super::cmd::{CmdPipeline, GenerateOptions, GuidedCall, Stage, Text, Video, motion_rows};
use super::denoise::{Rows, SampleLoop, SamplingOptions};
use super::stable_diffusion::SampleError;
use crate::schedulers::classifier_free_guidance;

/// The most sampler steps (the schedules have 1000 timesteps).
pub const MAX_STEPS: usize = 1000;

/// Why generation options are refused: which option and what is wrong, for the front end to
/// name in its own terms (a flag, a form field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct OptionError {
    /// The option.
    pub option: GenerateOption,
    /// What is wrong with it.
    pub message: String,
}

/// An option of [`GenerateOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerateOption {
    /// `content.steps`.
    ContentSteps,
    /// `content.guidance`.
    ContentGuidance,
    /// `motion.steps`.
    MotionSteps,
    /// `motion.guidance`.
    MotionGuidance,
}

impl std::fmt::Display for GenerateOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ContentSteps => "content steps",
            Self::ContentGuidance => "content guidance",
            Self::MotionSteps => "motion steps",
            Self::MotionGuidance => "motion guidance",
        })
    }
}

impl GenerateOptions {
    /// Checks the options, all in one place: steps from 1 to [`MAX_STEPS`], guidance a number
    /// of at least 0 (at most 1 means no guidance).
    pub fn check(&self) -> Result<(), OptionError> {
        let parts = [
            (
                &self.content,
                GenerateOption::ContentSteps,
                GenerateOption::ContentGuidance,
            ),
            (
                &self.motion,
                GenerateOption::MotionSteps,
                GenerateOption::MotionGuidance,
            ),
        ];
        for (options, steps, guidance) in parts {
            check_sampling(options, steps, guidance)?;
        }
        Ok(())
    }
}

fn check_sampling(
    options: &SamplingOptions,
    steps: GenerateOption,
    guidance: GenerateOption,
) -> Result<(), OptionError> {
    if !(1..=MAX_STEPS).contains(&options.steps) {
        return Err(OptionError {
            option: steps,
            message: format!("must be from 1 to {MAX_STEPS}, found {}", options.steps),
        });
    }
    if !options.guidance.is_finite() || options.guidance < 0.0 {
        return Err(OptionError {
            option: guidance,
            message: format!("must be a number of at least 0, found {}", options.guidance),
        });
    }
    Ok(())
}

/// Where a [`Generation`] is (one value per generation, so its variants are not boxed).
#[allow(clippy::large_enum_variant)]
enum State {
    /// The prompt is still to be encoded; then content sampling (or, with a given content
    /// frame, motion sampling) starts.
    Text {
        prompt: String,
        content: Option<Tensor<4>>,
    },
    /// Sampling the content frame.
    Content { text: Text, run: SampleLoop },
    /// Sampling the motion latent of a content frame.
    Motion {
        truncated: bool,
        content: Tensor<4>,
        pooled: Tensor<2>,
        run: SampleLoop,
    },
    /// The frames are still to be decoded.
    Decode {
        truncated: bool,
        content: Tensor<4>,
        motion: Tensor<4>,
    },
    /// Finished.
    Done(Video),
    /// A step failed; nothing more can be done.
    Failed,
}

/// What a step did: the stage, its steps done and its steps in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The stage the step belonged to.
    pub stage: Stage,
    /// Steps of that stage done.
    pub done: usize,
    /// Steps in that stage.
    pub total: usize,
}

/// A generation in progress (see the module docs).
pub struct Generation<'a> {
    pipeline: &'a CmdPipeline,
    options: GenerateOptions,
    device: Device,
    state: State,
}

impl<'a> Generation<'a> {
    /// Text to video on `device`; fails on options [`GenerateOptions::check`] refuses.
    pub fn text_to_video(
        pipeline: &'a CmdPipeline,
        prompt: &str,
        options: &GenerateOptions,
        device: &Device,
    ) -> Result<Self, SampleError> {
        Self::new(pipeline, prompt, None, options, device)
    }

    /// Image to video: `content` (`[1, C, H, W]`, the autoencoder's space) is the content frame;
    /// only the motion is sampled.
    pub fn image_to_video(
        pipeline: &'a CmdPipeline,
        content: Tensor<4>,
        prompt: &str,
        options: &GenerateOptions,
    ) -> Result<Self, SampleError> {
        let device = content.device();
        Self::new(pipeline, prompt, Some(content), options, &device)
    }

    fn new(
        pipeline: &'a CmdPipeline,
        prompt: &str,
        content: Option<Tensor<4>>,
        options: &GenerateOptions,
        device: &Device,
    ) -> Result<Self, SampleError> {
        options.check()?;
        Ok(Self {
            pipeline,
            options: *options,
            device: device.clone(),
            state: State::Text {
                prompt: prompt.to_string(),
                content,
            },
        })
    }

    /// True once the clip is made.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The sample the last step produced (the running content frame or motion latent), for a
    /// caller that waits for the device between steps.
    pub fn latest(&self) -> Option<&Tensor<4>> {
        match &self.state {
            State::Content { run, .. } | State::Motion { run, .. } => Some(run.sample()),
            State::Decode { motion, .. } => Some(motion),
            _ => None,
        }
    }

    /// Does the next piece of work: encodes the prompt, takes one sampler step, or decodes.
    /// Calling it once finished (or after a failure) does nothing more.
    pub fn step(&mut self) -> Result<Progress, SampleError> {
        self.advance(None)
    }

    /// The network call of the next step when it is a guided sampler step (guidance above 1),
    /// else `None`: a caller may compute its null-condition rows elsewhere
    /// ([`CmdPipeline::null_prediction`]) while [`cond_prediction`](Self::cond_prediction)
    /// computes the conditional ones, then take the step with both
    /// ([`step_guided`](Self::step_guided)). The clip is the one [`step`](Self::step) makes.
    pub fn guided_call(&self) -> Option<GuidedCall> {
        match &self.state {
            State::Content { run, .. } if self.options.content.guidance > 1.0 => {
                let (x, t) = (run.sample().clone(), run.timestep()?);
                Some(GuidedCall::Content { x, t })
            }
            State::Motion { run, content, .. } if self.options.motion.guidance > 1.0 => {
                let (x, t) = (run.sample().clone(), run.timestep()?);
                let content = content.clone();
                Some(GuidedCall::Motion { x, t, content })
            }
            _ => None,
        }
    }

    /// The conditional prediction of the next step's [`guided_call`](Self::guided_call) (its
    /// [`Rows::Cond`] rows); `None` when the next step is not a guided sampler step.
    pub fn cond_prediction(&self) -> Option<Tensor<4>> {
        let p = self.pipeline;
        let call = self.guided_call()?;
        Some(match (&self.state, call) {
            (State::Content { text, .. }, GuidedCall::Content { x, t }) => {
                p.content_rows(&text.uncond, &text.cond, x, &[t as f64], Rows::Cond)
            }
            (State::Motion { pooled, .. }, GuidedCall::Motion { x, t, content }) => {
                motion_rows(&p.dit, &content, pooled, x, &[t as f64], Rows::Cond)
            }
            _ => return None,
        })
    }

    /// Takes the next step, a guided sampler step, from its two predictions: `null` of
    /// [`CmdPipeline::null_prediction`] and `cond` of [`cond_prediction`](Self::cond_prediction),
    /// combined as `e_u + s (e_c - e_u)`. Fails, doing nothing, when the next step is not a
    /// guided sampler step or a prediction's shape is not the sample's.
    pub fn step_guided(
        &mut self,
        null: Tensor<4>,
        cond: Tensor<4>,
    ) -> Result<Progress, SampleError> {
        let Some(call) = self.guided_call() else {
            return Err(SampleError::Step(
                "the next step is not a guided sampler step".into(),
            ));
        };
        let x = match &call {
            GuidedCall::Content { x, .. } | GuidedCall::Motion { x, .. } => x,
        };
        for (what, e) in [("null", &null), ("conditional", &cond)] {
            if e.dims() != x.dims() {
                return Err(SampleError::Step(format!(
                    "the {what} prediction has shape {:?}, expected the sample's {:?}",
                    e.dims(),
                    x.dims()
                )));
            }
        }
        self.advance(Some((null, cond)))
    }

    /// [`step`](Self::step), with a guided sampler step's two predictions given (`(null, cond)`)
    /// instead of computed here.
    fn advance(&mut self, given: Option<(Tensor<4>, Tensor<4>)>) -> Result<Progress, SampleError> {
        let p = self.pipeline;
        let mut given = given;
        let mut combine = |guidance| {
            given
                .take()
                .map(|(null, cond)| classifier_free_guidance(null, cond, guidance))
        };
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (state, progress) = match state {
            State::Text { prompt, content } => {
                let text = p.text(&prompt, &self.device)?;
                let state = match content {
                    None => {
                        let run =
                            p.content_loop(&self.options.content, self.options.seed, &self.device)?;
                        State::Content { text, run }
                    }
                    Some(content) => self.motion(text.truncated, content, text.pooled)?,
                };
                (state, Progress::of(Stage::Text, 1, 1))
            }
            State::Content { text, mut run } => {
                let guidance = self.options.content.guidance;
                let mut given = combine(guidance);
                run.step(&mut |x, t| {
                    given
                        .take()
                        .unwrap_or_else(|| p.predict_content(&text, x, t, guidance))
                });
                let progress = Progress::of(Stage::Content, run.done(), run.total());
                let state = if run.is_finished() {
                    let content = run.sample().clone();
                    self.motion(text.truncated, content, text.pooled)?
                } else {
                    State::Content { text, run }
                };
                (state, progress)
            }
            State::Motion {
                truncated,
                content,
                pooled,
                mut run,
            } => {
                let guidance = self.options.motion.guidance;
                let mut given = combine(guidance);
                run.step(&mut |x, t| {
                    given
                        .take()
                        .unwrap_or_else(|| p.predict_motion(&content, &pooled, x, t, guidance))
                });
                let progress = Progress::of(Stage::Motion, run.done(), run.total());
                let state = if run.is_finished() {
                    State::Decode {
                        truncated,
                        content,
                        motion: run.sample().clone(),
                    }
                } else {
                    State::Motion {
                        truncated,
                        content,
                        pooled,
                        run,
                    }
                };
                (state, progress)
            }
            State::Decode {
                truncated,
                content,
                motion,
            } => {
                let frames = p.codec.decode(content.clone(), motion.clone());
                let video = Video {
                    frames,
                    content,
                    motion,
                    truncated,
                };
                (State::Done(video), Progress::of(Stage::Decode, 1, 1))
            }
            State::Done(video) => (State::Done(video), Progress::of(Stage::Decode, 1, 1)),
            State::Failed => (State::Failed, Progress::of(Stage::Decode, 0, 1)),
        };
        self.state = state;
        Ok(progress)
    }

    fn motion(
        &self,
        truncated: bool,
        content: Tensor<4>,
        pooled: Tensor<2>,
    ) -> Result<State, SampleError> {
        let run =
            self.pipeline
                .motion_loop(&self.options.motion, self.options.seed + 1, &self.device)?;
        Ok(State::Motion {
            truncated,
            content,
            pooled,
            run,
        })
    }

    /// The clip, once [finished](Self::is_finished).
    pub fn into_video(self) -> Option<Video> {
        match self.state {
            State::Done(video) => Some(video),
            _ => None,
        }
    }

    /// What the next [`step`](Self::step) works on, and how far that stage is (`None` once
    /// finished).
    pub fn next(&self) -> Option<Progress> {
        Some(match &self.state {
            State::Text { .. } => Progress::of(Stage::Text, 0, 1),
            State::Content { run, .. } => Progress::of(Stage::Content, run.done(), run.total()),
            State::Motion { run, .. } => Progress::of(Stage::Motion, run.done(), run.total()),
            State::Decode { .. } => Progress::of(Stage::Decode, 0, 1),
            State::Done(_) | State::Failed => return None,
        })
    }

    /// Runs to the end, reporting the start of each stage and each step to `progress`.
    pub fn run(
        mut self,
        progress: &mut dyn FnMut(Stage, usize, usize),
    ) -> Result<Video, SampleError> {
        let mut stage = None;
        while let Some(next) = self.next() {
            if stage != Some(next.stage) {
                stage = Some(next.stage);
                progress(next.stage, next.done, next.total);
            }
            let done = self.step()?;
            progress(done.stage, done.done, done.total);
        }
        // The loop ends only at Done: a failed step has returned its error above.
        Ok(self
            .into_video()
            .expect("a finished generation holds its clip"))
    }
}

impl Progress {
    fn of(stage: Stage, done: usize, total: usize) -> Self {
        Self { stage, done, total }
    }
}
