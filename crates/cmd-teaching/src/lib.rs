//! # cmd-teaching
//!
//! What the shipped teaching model is made from and measured by: the procedural teaching
//! dataset ([`dataset`]: one coloured shape moving in a named direction, with a caption that
//! says so, the prompts split into training and held-out parts) and a deterministic analyser
//! ([`adherence`]) that reads a clip's colour and motion back, to score how well generated
//! clips follow their prompts.

#![warn(missing_docs)]

pub mod adherence;
pub mod dataset;
