//! The fuzz targets' bodies, shared with the main crate's corpus replay test.
pub mod targets;
