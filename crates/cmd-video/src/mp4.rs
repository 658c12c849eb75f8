//! H.264 in MP4 through OpenH264 (decoder and encoder) and the `mp4` demuxer/muxer.
//!
//! OpenH264 implements the Constrained Baseline profile. Main- and High-profile streams (CABAC,
//! B-frames) are refused with a message saying how to convert them, and any stream that
//! decodes to fewer frames than it holds is an error, never a silently short clip.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::RgbImage;
use openh264::decoder::{DecodedYUV, Decoder};
use openh264::encoder::{Encoder, EncoderConfig, FrameRate, Profile, QpRange, RateControlMode};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSource};

use crate::{Clip, VideoError};

const CONVERT_HINT: &str =
    "convert it to Baseline first, e.g. `ffmpeg -i IN -c:v libx264 -profile:v baseline OUT.mp4`";

/// Reads up to `max_frames` frames of the first H.264 video track of an MP4 file.
pub fn read(path: &Path, max_frames: Option<usize>) -> Result<Clip, VideoError> {
    // The demuxer may panic on some malformed boxes; a bad file must be an error, not a crash.
    std::panic::catch_unwind(|| read_inner(path, max_frames)).unwrap_or_else(|_| {
        Err(VideoError::new(
            path,
            "malformed MP4 (the demuxer could not parse it)",
        ))
    })
}

fn read_inner(path: &Path, max_frames: Option<usize>) -> Result<Clip, VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut mp4 = ::mp4::Mp4Reader::read_header(BufReader::new(file), size)
        .map_err(|e| err(format!("not a valid MP4 file: {e}")))?;
    let track = mp4
        .tracks()
        .values()
        .find(|t| matches!(t.media_type(), Ok(::mp4::MediaType::H264)))
        .ok_or_else(|| err("no H.264 video track (only H.264 MP4 files are supported)".into()))?;
    let track_id = track.track_id();
    let samples = track.sample_count() as usize;
    let timescale = track.timescale();
    let sps = track
        .sequence_parameter_set()
        .map_err(|e| err(format!("H.264 track has no SPS: {e}")))?
        .to_vec();
    let pps = track
        .picture_parameter_set()
        .map_err(|e| err(format!("H.264 track has no PPS: {e}")))?
        .to_vec();
    let length_size = track
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .avc1
        .as_ref()
        .map_or(4, |a| a.avcc.length_size_minus_one as usize + 1);
    let profile_idc = sps.get(1).copied().unwrap_or(0);
    if profile_idc != 66 {
        return Err(err(format!(
            "H.264 {} profile is not supported (only Baseline decodes fully); {CONVERT_HINT}",
            profile_name(profile_idc)
        )));
    }

    let wanted = max_frames.map_or(samples, |m| m.min(samples));
    let mut decoder = Decoder::new().map_err(|e| err(format!("H.264 decoder: {e}")))?;
    let mut frames = Vec::with_capacity(wanted);
    let mut fps = 25.0;
    let mut header = Vec::new();
    for nal in [&sps, &pps] {
        header.extend_from_slice(&[0, 0, 0, 1]);
        header.extend_from_slice(nal);
    }
    decoder
        .decode(&header)
        .map_err(|e| err(format!("bad SPS/PPS: {e}")))?;
    for id in 1..=samples as u32 {
        if frames.len() >= wanted {
            break;
        }
        let sample = mp4
            .read_sample(track_id, id)
            .map_err(|e| err(format!("cannot read sample {id}: {e}")))?
            .ok_or_else(|| err(format!("sample {id} is missing (truncated file?)")))?;
        if id == 1 && sample.duration > 0 {
            fps = timescale as f32 / sample.duration as f32;
        }
        let annex_b = to_annex_b(&sample.bytes, length_size)
            .ok_or_else(|| err(format!("sample {id} is corrupt (bad NAL lengths)")))?;
        match decoder.decode(&annex_b) {
            Ok(Some(yuv)) => frames.push(yuv_to_rgb(&yuv)),
            Ok(None) => {}
            Err(e) => return Err(err(format!("cannot decode frame {id}: {e}"))),
        }
    }
    if frames.len() < wanted {
        let rest = decoder
            .flush_remaining()
            .map_err(|e| err(format!("cannot decode the last frames: {e}")))?;
        frames.extend(rest.iter().map(yuv_to_rgb));
    }
    frames.truncate(wanted);
    if frames.len() < wanted {
        return Err(err(format!(
            "decoded only {} of {wanted} frames; the stream may be damaged or use features \
             OpenH264 lacks; {CONVERT_HINT}",
            frames.len()
        )));
    }
    Clip::new(frames, fps).ok_or_else(|| err("contains no frames".into()))
}

fn profile_name(idc: u8) -> String {
    match idc {
        66 => "Baseline".into(),
        77 => "Main".into(),
        88 => "Extended".into(),
        100 => "High".into(),
        110 => "High 10".into(),
        122 => "High 4:2:2".into(),
        244 => "High 4:4:4".into(),
        other => format!("unknown ({other})"),
    }
}

/// Length-prefixed NAL units (MP4 sample) to start-code-prefixed ones (Annex B).
fn to_annex_b(sample: &[u8], length_size: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(sample.len() + 16);
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return None;
        }
        let len = rest[..length_size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[length_size..];
        if len > rest.len() {
            return None;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    Some(out)
}

fn yuv_to_rgb(yuv: &DecodedYUV<'_>) -> RgbImage {
    let (w, h) = yuv.dimensions();
    let mut rgb = vec![0u8; w * h * 3];
    yuv.write_rgb8(&mut rgb);
    RgbImage::from_raw(w as u32, h as u32, rgb).expect("buffer has w * h * 3 bytes")
}

/// Writes a clip as H.264 (Baseline) in MP4. Frames are cropped to even sizes if needed.
pub fn write(path: &Path, clip: &Clip) -> Result<(), VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let (w, h) = (clip.width() & !1, clip.height() & !1);
    if w == 0 || h == 0 {
        return Err(err(format!(
            "frames of {}x{} are too small for H.264",
            clip.width(),
            clip.height()
        )));
    }
    let clip = clip.crop(0, 0, w, h);
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .skip_frames(false)
        .rate_control_mode(RateControlMode::Off)
        .max_frame_rate(FrameRate::from_hz(clip.fps))
        .qp(QpRange::new(4, 20));
    let mut encoder = Encoder::with_api_config(openh264::OpenH264API::from_source(), config)
        .map_err(|e| err(format!("H.264 encoder: {e}")))?;
    let (mut sps, mut pps) = (None, None);
    let mut samples = Vec::with_capacity(clip.len());
    for frame in &clip.frames {
        let yuv =
            YUVBuffer::from_rgb8_source(RgbSliceU8::new(frame.as_raw(), (w as usize, h as usize)));
        let stream = encoder
            .encode(&yuv)
            .map_err(|e| err(format!("cannot encode: {e}")))?;
        let (mut sample, mut sync) = (Vec::new(), false);
        for nal in openh264::nal_units(&stream.to_vec()) {
            let nal = strip_start_code(nal);
            match nal.first().map(|b| b & 0x1f) {
                Some(7) => sps = sps.or_else(|| Some(nal.to_vec())),
                Some(8) => pps = pps.or_else(|| Some(nal.to_vec())),
                Some(t) => {
                    sync |= t == 5;
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
                None => {}
            }
        }
        if sample.is_empty() {
            return Err(err(format!(
                "the encoder dropped frame {}",
                samples.len() + 1
            )));
        }
        samples.push((sample, sync));
    }
    let (Some(sps), Some(pps)) = (sps, pps) else {
        return Err(err("the encoder produced no SPS/PPS".into()));
    };

    const TIMESCALE: u32 = 90_000;
    let duration = (TIMESCALE as f32 / clip.fps.max(0.1)).round() as u32;
    crate::write_atomic(path, |out| {
        let config = ::mp4::Mp4Config {
            major_brand: str::parse("isom").unwrap(),
            minor_version: 512,
            compatible_brands: ["isom", "iso2", "avc1", "mp41"]
                .iter()
                .map(|b| str::parse(b).unwrap())
                .collect(),
            timescale: 1000,
        };
        let mut writer = ::mp4::Mp4Writer::write_start(out, &config).map_err(io)?;
        writer
            .add_track(&::mp4::TrackConfig {
                track_type: ::mp4::TrackType::Video,
                timescale: TIMESCALE,
                language: "und".into(),
                media_conf: ::mp4::MediaConfig::AvcConfig(::mp4::AvcConfig {
                    width: w as u16,
                    height: h as u16,
                    seq_param_set: sps,
                    pic_param_set: pps,
                }),
            })
            .map_err(io)?;
        for (i, (bytes, is_sync)) in samples.into_iter().enumerate() {
            let sample = ::mp4::Mp4Sample {
                start_time: i as u64 * duration as u64,
                duration,
                rendering_offset: 0,
                is_sync,
                bytes: bytes.into(),
            };
            writer.write_sample(1, &sample).map_err(io)?;
        }
        writer.write_end().map_err(io)
    })
}

fn io(e: ::mp4::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    let zeros = nal.iter().take_while(|b| **b == 0).count();
    if zeros >= 2 && nal.get(zeros) == Some(&1) {
        &nal[zeros + 1..]
    } else {
        nal
    }
}
