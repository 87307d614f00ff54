//! The Atek host daemon.
#![allow(missing_docs)]

pub mod installer;
