//! Which frames of a video to read: a start (a frame or a time), how many, and how far apart
//! (every `stride`-th frame, or frames sampled at a target rate), resolved against a video's
//! [`Timeline`] into the indices of the source frames to decode.

/// Where a [`Take`] starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// At this frame (0 is the first).
    Frame(usize),
    /// At the first frame shown at or after this many seconds from the first frame.
    Seconds(f64),
}

/// The frames to read from a video.
///
/// Without `fps` it takes `count` of the source's own frames from `start`, every `stride`-th.
/// With `fps` it samples the video at that rate by time (the frame nearest each tick), so a 60
/// and a 24 fps source give the same motion per frame, and a variable-rate video is sampled
/// by its real timestamps; `stride` then takes every `stride`-th tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Take {
    /// The first frame.
    pub start: Start,
    /// How many frames (`None`: as many as the video holds).
    pub count: Option<usize>,
    /// Every `stride`-th frame (or tick, with `fps`); 0 counts as 1.
    pub stride: usize,
    /// Sample at this many frames per second instead of the source's frames.
    pub fps: Option<f64>,
}

impl Take {
    /// Every frame.
    pub fn all() -> Self {
        Self {
            start: Start::Frame(0),
            count: None,
            stride: 1,
            fps: None,
        }
    }

    /// The first `count` frames.
    pub fn first(count: usize) -> Self {
        Self {
            count: Some(count),
            ..Self::all()
        }
    }

    /// The same frames from `start`.
    pub fn from(self, start: Start) -> Self {
        Self { start, ..self }
    }

    /// The same frames, every `stride`-th.
    pub fn every(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// The same frames, sampled at `fps` (`None`: the source's own frames).
    pub fn at_fps(self, fps: Option<f64>) -> Self {
        Self { fps, ..self }
    }

    /// The indices of the source frames this take shows, in order (an index repeats when the
    /// target rate is above the source's). The error says how many frames were needed and how
    /// many the video has.
    pub fn indices(&self, timeline: &Timeline) -> Result<Vec<usize>, String> {
        let stride = self.stride.max(1);
        let len = timeline.len();
        if self.count == Some(0) {
            return Err("asks for 0 frames".into());
        }
        if let Some(fps) = self.fps
            && !(fps.is_finite() && fps > 0.0)
        {
            return Err(format!("--fps must be a positive number, found {fps}"));
        }
        let first = match self.start {
            Start::Frame(n) => n,
            Start::Seconds(s) if s.is_finite() && s >= 0.0 => timeline.first_at(s),
            Start::Seconds(s) => return Err(format!("start must be 0 s or later, found {s} s")),
        };
        let mut out = Vec::with_capacity(self.count.unwrap_or(len));
        match self.fps {
            None => {
                let mut i = first;
                while i < len && self.count.is_none_or(|c| out.len() < c) {
                    out.push(i);
                    i += stride;
                }
            }
            Some(fps) if first < len => {
                let t0 = timeline.time(first);
                let end = timeline.end();
                for k in 0.. {
                    if self.count.is_some_and(|c| out.len() >= c) {
                        break;
                    }
                    let t = t0 + (k * stride) as f64 / fps;
                    // A tick past the end of the last frame's display is past the video.
                    if t >= end - 1e-9 {
                        break;
                    }
                    out.push(timeline.nearest(t));
                }
            }
            Some(_) => {}
        }
        if let Some(count) = self.count
            && out.len() < count
        {
            return Err(self.too_short(timeline, first, count));
        }
        if out.is_empty() {
            return Err(self.too_short(timeline, first, 1));
        }
        Ok(out)
    }

    fn too_short(&self, timeline: &Timeline, first: usize, count: usize) -> String {
        let stride = self.stride.max(1);
        let from = match self.start {
            Start::Frame(n) => format!("frame {n}"),
            Start::Seconds(s) => format!("{s} s (frame {first})"),
        };
        let (len, duration) = (timeline.len(), timeline.end());
        match self.fps {
            None => format!(
                "needs {} frames ({count} at stride {stride} from {from}), found {len}",
                first + stride * (count - 1) + 1
            ),
            Some(fps) => format!(
                "needs {:.2} s ({count} frames at {fps} fps, stride {stride}, from {from}), \
                 found {duration:.2} s ({len} frames)",
                timeline.time(first.min(len.saturating_sub(1)))
                    + (stride * (count - 1)) as f64 / fps
                    + 1.0 / fps
            ),
        }
    }

    /// The frame rate of the frames this take reads from `timeline`.
    pub fn output_fps(&self, timeline: &Timeline) -> f32 {
        let stride = self.stride.max(1) as f64;
        (self.fps.unwrap_or_else(|| timeline.fps()) / stride) as f32
    }
}

/// When each frame of a video is shown, in seconds from the first frame.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Timeline {
    /// `frames` frames at a constant `fps`.
    Constant {
        /// Frames per second.
        fps: f64,
        /// Number of frames.
        frames: usize,
    },
    /// Frames at these times (increasing, the first 0), and the last frame's duration.
    Variable {
        /// Presentation time of each frame.
        times: Vec<f64>,
        /// How long the last frame is shown.
        last: f64,
    },
}

impl Timeline {
    /// A timeline from presentation times in any order (frames are shown sorted): constant
    /// when the gaps are equal within 1 %, variable otherwise. `None` without any times.
    pub fn from_times(mut times: Vec<f64>) -> Option<Self> {
        times.retain(|t| t.is_finite());
        times.sort_by(f64::total_cmp);
        let t0 = *times.first()?;
        if times.len() == 1 {
            return Some(Self::Constant {
                fps: 25.0,
                frames: 1,
            });
        }
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = (times[times.len() - 1] - t0) / gaps.len() as f64;
        if gaps.iter().all(|g| (g - mean).abs() <= 0.01 * mean) {
            return Some(Self::Constant {
                fps: 1.0 / mean,
                frames: times.len(),
            });
        }
        let last = gaps[gaps.len() - 1];
        Some(Self::Variable {
            times: times.iter().map(|t| t - t0).collect(),
            last,
        })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        match self {
            Self::Constant { frames, .. } => *frames,
            Self::Variable { times, .. } => times.len(),
        }
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The presentation time of frame `i`.
    pub fn time(&self, i: usize) -> f64 {
        match self {
            Self::Constant { fps, .. } => i as f64 / fps,
            Self::Variable { times, .. } => times[i],
        }
    }

    /// When the last frame stops being shown: the video's duration.
    pub fn end(&self) -> f64 {
        match self {
            Self::Constant { fps, frames } => *frames as f64 / fps,
            Self::Variable { times, last } => times.last().map_or(0.0, |t| t + last),
        }
    }

    /// The average frame rate.
    pub fn fps(&self) -> f64 {
        match self {
            Self::Constant { fps, .. } => *fps,
            Self::Variable { times, .. } => times.len() as f64 / self.end().max(1e-9),
        }
    }

    /// The first frame shown at or after `t` (the length when none is).
    pub fn first_at(&self, t: f64) -> usize {
        const EPS: f64 = 1e-6;
        match self {
            Self::Constant { fps, frames } => {
                ((t * fps - EPS).ceil().max(0.0) as usize).min(*frames)
            }
            Self::Variable { times, .. } => times.partition_point(|x| *x < t - EPS),
        }
    }

    /// The frame whose time is nearest `t` (the earlier on a tie).
    pub fn nearest(&self, t: f64) -> usize {
        let last = self.len().saturating_sub(1);
        match self {
            Self::Constant { fps, .. } => {
                let x = t * fps;
                // Round half down, so a tie goes to the earlier frame.
                (((x - 0.5).ceil()).max(0.0) as usize).min(last)
            }
            Self::Variable { times, .. } => {
                let after = times.partition_point(|x| *x < t).min(last);
                if after > 0 && t - times[after - 1] <= times[after] - t {
                    after - 1
                } else {
                    after
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(fps: f64, frames: usize) -> Timeline {
        Timeline::Constant { fps, frames }
    }

    #[test]
    fn stride_and_frame_offset() {
        let t = constant(30.0, 20);
        let take = Take::first(4).from(Start::Frame(2)).every(3);
        assert_eq!(take.indices(&t).unwrap(), vec![2, 5, 8, 11]);
        assert_eq!(take.output_fps(&t), 10.0);
        let err = Take::first(16).every(2).indices(&t).unwrap_err();
        assert!(
            err.contains("needs 31 frames") && err.contains("found 20"),
            "{err}"
        );
        assert_eq!(
            Take::all()
                .from(Start::Frame(15))
                .indices(&t)
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn a_start_in_seconds_is_the_first_frame_shown_then() {
        let t = constant(25.0, 100);
        let at = |s| Take::first(1).from(Start::Seconds(s)).indices(&t).unwrap()[0];
        assert_eq!(at(0.0), 0);
        assert_eq!(at(0.04), 1, "frame 1 is shown at exactly 0.04 s");
        assert_eq!(at(0.041), 2);
        assert_eq!(at(1.0), 25);
        let err = Take::first(1)
            .from(Start::Seconds(4.0))
            .indices(&t)
            .unwrap_err();
        assert!(
            err.contains("from 4 s (frame 100)") && err.contains("found 100"),
            "{err}"
        );
    }

    #[test]
    fn a_target_rate_gives_the_same_motion_per_frame_from_any_source() {
        // 60 and 24 fps sources of the same 2 s, sampled at 12 fps: frame k is at k / 12 s.
        let a = Take::first(12)
            .at_fps(Some(12.0))
            .indices(&constant(60.0, 120))
            .unwrap();
        let b = Take::first(12)
            .at_fps(Some(12.0))
            .indices(&constant(24.0, 48))
            .unwrap();
        assert_eq!(a, (0..12).map(|k| k * 5).collect::<Vec<_>>());
        assert_eq!(b, (0..12).map(|k| k * 2).collect::<Vec<_>>());
        // Above the source's rate, frames repeat.
        let up = Take::first(4)
            .at_fps(Some(20.0))
            .indices(&constant(10.0, 10))
            .unwrap();
        assert_eq!(up, vec![0, 0, 1, 1]);
        // 29.97 fps at 10 fps: nearest frames.
        let ntsc = Take::first(4)
            .at_fps(Some(10.0))
            .indices(&constant(30000.0 / 1001.0, 300));
        assert_eq!(ntsc.unwrap(), vec![0, 3, 6, 9]);
        let err = Take::first(30)
            .at_fps(Some(10.0))
            .indices(&constant(30.0, 60))
            .unwrap_err();
        assert!(
            err.contains("needs 3.00 s") && err.contains("found 2.00 s"),
            "{err}"
        );
    }

    #[test]
    fn variable_rate_video_is_sampled_by_its_timestamps() {
        // Gaps alternate 1/30 s and 2/30 s: 0, 1, 3, 4, 6, 7, ... thirtieths.
        let ticks: Vec<f64> = (0..16).map(|n| (n + n / 2) as f64 / 30.0).collect();
        let t = Timeline::from_times(ticks.iter().rev().copied().collect()).unwrap();
        let Timeline::Variable { times, last } = &t else {
            panic!("expected a variable timeline: {t:?}");
        };
        assert_eq!(times.len(), 16);
        assert!((last - 1.0 / 30.0).abs() < 1e-9);
        // At 10 fps (every 3/30 s) the frames at 0, 3, 6, 9, ... thirtieths are exact.
        let got = Take::first(7).at_fps(Some(10.0)).indices(&t).unwrap();
        assert_eq!(got, vec![0, 2, 4, 6, 8, 10, 12]);
        // The source's own frames ignore the gaps.
        assert_eq!(Take::first(3).indices(&t).unwrap(), vec![0, 1, 2]);
        assert!((t.fps() - 16.0 / (23.0 / 30.0)).abs() < 1e-9);
        assert_eq!(t.first_at(0.05), 2, "frame 2 is at 0.1 s");
        // Equal gaps make a constant timeline.
        let c = Timeline::from_times((0..5).map(|i| 0.5 + i as f64 / 25.0).collect()).unwrap();
        let Timeline::Constant { fps, frames: 5 } = c else {
            panic!("expected 5 frames at a constant rate: {c:?}");
        };
        assert!((fps - 25.0).abs() < 1e-9, "{fps}");
    }

    #[test]
    fn bad_takes_are_refused() {
        let t = constant(30.0, 20);
        assert!(Take::first(0).indices(&t).is_err());
        assert!(Take::first(1).at_fps(Some(0.0)).indices(&t).is_err());
        assert!(
            Take::first(1)
                .from(Start::Seconds(-1.0))
                .indices(&t)
                .is_err()
        );
        assert!(Take::all().from(Start::Frame(20)).indices(&t).is_err());
    }
}
