//! The built-in H.264 path, for machines without FFmpeg: the `mp4` demuxer (MP4, MOV, M4V)
//! and OpenH264's decoder and encoder.
//!
//! OpenH264 2.x decodes Baseline, Main and High profile streams (CABAC, B-frames) and hands
//! frames out in presentation order; this module seeks to the keyframe before the first frame
//! asked for, honours the track's display rotation, and refuses other codecs with a message
//! saying to install FFmpeg. Writing uses OpenH264's encoder (Constrained Baseline).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::RgbImage;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::encoder::{Encoder, EncoderConfig, FrameRate, Profile, QpRange, RateControlMode};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSource};

use crate::take::Timeline;
use crate::video::{Frames, VideoInfo};
use crate::{Clip, VideoError, check_size};

/// An H.264 track: its decoder set-up and its samples.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct H264Track {
    track_id: u32,
    /// SPS and PPS as Annex B.
    header: Vec<u8>,
    length_size: usize,
    /// Decode order: is each sample a keyframe.
    sync: Vec<bool>,
    /// Decode order: each sample's place in presentation order.
    rank: Vec<usize>,
    /// Presentation order: each frame's sample (decode order).
    by_rank: Vec<usize>,
    rotation: u32,
}

fn open(path: &Path) -> Result<::mp4::Mp4Reader<BufReader<File>>, VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // The demuxer may panic on some malformed boxes; a bad file must be an error, not a crash.
    std::panic::catch_unwind(move || ::mp4::Mp4Reader::read_header(BufReader::new(file), size))
        .map_err(|_| err("malformed MP4 (the demuxer could not parse it)".into()))?
        .map_err(|e| match e.to_string() {
            m if m.contains("larger size than it") => {
                err("the file is truncated (a box runs past its end)".into())
            }
            m => err(format!("not a valid MP4 file: {m}")),
        })
}

/// Reads the first H.264 video track's set-up and sample table.
pub(crate) fn probe(path: &Path) -> Result<(H264Track, VideoInfo), VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let mp4 = open(path)?;
    let Some(track) = mp4
        .tracks()
        .values()
        .find(|t| matches!(t.media_type(), Ok(::mp4::MediaType::H264)))
    else {
        let video = mp4
            .tracks()
            .values()
            .find(|t| t.trak.mdia.hdlr.handler_type == str::parse("vide").expect("fourcc"));
        return Err(err(match video {
            Some(t) => format!(
                "its video is {}, not H.264: reading it needs FFmpeg, which was not found; {}",
                t.media_type()
                    .map_or("in a codec the built-in reader lacks".into(), |m| m
                        .to_string()),
                crate::INSTALL_HINT
            ),
            None => "has no video track (a video file is needed)".into(),
        }));
    };
    let stbl = &track.trak.mdia.minf.stbl;
    let timescale = track.timescale().max(1) as f64;
    // Decode times from stts, presentation offsets from ctts, keyframes from stss.
    let mut pts = Vec::with_capacity(track.sample_count() as usize);
    let mut dts = 0i64;
    for entry in &stbl.stts.entries {
        for _ in 0..entry.sample_count {
            pts.push(dts);
            dts += entry.sample_delta as i64;
        }
    }
    if let Some(ctts) = &stbl.ctts {
        let mut i = 0;
        for entry in &ctts.entries {
            for _ in 0..entry.sample_count {
                if let Some(p) = pts.get_mut(i) {
                    *p += entry.sample_offset as i64;
                }
                i += 1;
            }
        }
    }
    pts.truncate(track.sample_count() as usize);
    let n = pts.len();
    if n == 0 {
        return Err(err("the H.264 track holds no frames".into()));
    }
    let sync = match &stbl.stss {
        Some(stss) => {
            let mut sync = vec![false; n];
            for &number in &stss.entries {
                if let Some(s) = sync.get_mut(number as usize - 1) {
                    *s = true;
                }
            }
            sync[0] = true;
            sync
        }
        None => vec![true; n],
    };
    let mut by_rank: Vec<usize> = (0..n).collect();
    by_rank.sort_by_key(|&i| (pts[i], i));
    let mut rank = vec![0; n];
    for (r, &i) in by_rank.iter().enumerate() {
        rank[i] = r;
    }
    let times = by_rank.iter().map(|&i| pts[i] as f64 / timescale).collect();
    let timeline = Timeline::from_times(times).expect("at least one frame");

    let param = |r: Result<&[u8], ::mp4::Error>, what: &str| {
        r.map(<[u8]>::to_vec)
            .map_err(|e| err(format!("H.264 track has no {what}: {e}")))
    };
    let sps = param(track.sequence_parameter_set(), "SPS")?;
    let pps = param(track.picture_parameter_set(), "PPS")?;
    let mut header = Vec::new();
    for nal in [&sps, &pps] {
        header.extend_from_slice(&[0, 0, 0, 1]);
        header.extend_from_slice(nal);
    }
    let length_size = stbl
        .stsd
        .avc1
        .as_ref()
        .map_or(4, |a| a.avcc.length_size_minus_one as usize + 1);
    let (w, h) = (track.width() as u32, track.height() as u32);
    check_size(path, w, h)?;
    let m = &track.trak.tkhd.matrix;
    let rotation = rotation(m.a, m.b);
    let (width, height) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
    let profile = match sps.get(1) {
        Some(66) => " (Baseline)",
        Some(77) => " (Main)",
        Some(100) => " (High)",
        _ => "",
    };
    Ok((
        H264Track {
            track_id: track.track_id(),
            header,
            length_size,
            sync,
            rank,
            by_rank,
            rotation,
        },
        VideoInfo {
            width,
            height,
            timeline,
            codec: format!("h264{profile}"),
            rotation,
        },
    ))
}

/// The clockwise display rotation of a track matrix's first row `(a, b)`, to 90 degrees.
fn rotation(a: i32, b: i32) -> u32 {
    let degrees = (b as f64).atan2(a as f64).to_degrees();
    ((degrees / 90.0).round() as i64).rem_euclid(4) as u32 * 90
}

/// Decodes frames `first..=last` (presentation order) from the keyframe before `first`,
/// passing them to `out`.
pub(crate) fn decode(
    path: &Path,
    track: &H264Track,
    (first, last): (usize, usize),
    out: &mut Frames,
) -> Result<(), VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let mut mp4 = open(path)?;
    // The latest keyframe (in decode order) at or before the first frame's sample that is not
    // shown after it.
    let mut start = track.by_rank[first];
    while start > 0 && !(track.sync[start] && track.rank[start] <= first) {
        start -= 1;
    }
    // Frames come out in presentation order: the k-th is the k-th earliest of the samples
    // from `start` on.
    let mut ranks: Vec<usize> = track.rank[start..].to_vec();
    ranks.sort_unstable();
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(openh264::OpenH264API::from_source(), config)
        .map_err(|e| err(format!("H.264 decoder: {e}")))?;
    decoder
        .decode(&track.header)
        .map_err(|e| err(format!("bad SPS/PPS: {e}")))?;
    let mut shown = 0;
    let mut take = |yuv: &DecodedYUV<'_>, shown: &mut usize| {
        let r = ranks[*shown];
        *shown += 1;
        if (first..=last).contains(&r) {
            out.push(rotate(yuv_to_rgb(yuv), track.rotation));
        }
        r >= last
    };
    for index in start..track.rank.len() {
        let number = index as u32 + 1;
        let sample = mp4
            .read_sample(track.track_id, number)
            .map_err(|e| err(format!("cannot read frame data (sample {number}): {e}")))?
            .ok_or_else(|| err(format!("sample {number} is missing (truncated file?)")))?;
        let annex_b = to_annex_b(&sample.bytes, track.length_size)
            .ok_or_else(|| err(format!("sample {number} is corrupt (bad NAL lengths)")))?;
        match decoder.decode(&annex_b) {
            Ok(Some(yuv)) => {
                if take(&yuv, &mut shown) {
                    return Ok(());
                }
            }
            Ok(None) => {}
            Err(e) => return Err(err(format!("cannot decode sample {number}: {e}"))),
        }
    }
    let rest = decoder
        .flush_remaining()
        .map_err(|e| err(format!("cannot decode the last frames: {e}")))?;
    for yuv in &rest {
        if shown < ranks.len() && take(yuv, &mut shown) {
            return Ok(());
        }
    }
    Err(err(format!(
        "decoded only {} of the frames up to frame {last}; the stream may be damaged",
        ranks[..shown].iter().filter(|r| **r <= last).count()
    )))
}

/// A frame turned `degrees` clockwise.
fn rotate(frame: RgbImage, degrees: u32) -> RgbImage {
    match degrees {
        90 => image::imageops::rotate90(&frame),
        180 => image::imageops::rotate180(&frame),
        270 => image::imageops::rotate270(&frame),
        _ => frame,
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

/// Writes a clip as H.264 (Constrained Baseline) in MP4 with OpenH264. Frames are cropped to even sizes if needed.
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
