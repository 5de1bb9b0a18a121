//! `conform`: a conformance suite for any KMS host. Cases live in JSON vector files
//! ([`vector`], `vectors/conform/*.json`, schema `docs/conform-vectors.schema.json`), each a list
//! of steps (connect, bind, activate, raw bytes, wait, advance a virtual clock, code-defined
//! probes) with expectations on the replies. [`runner`] picks the cases that apply to a host and
//! profile and runs them (state-changing ones in order, independent ones concurrently);
//! [`steps`] carries out each step (fingerprint probes among them) and [`expect`] compares what
//! it saw with what was expected; [`fingerprint`] judges the probes' observations into tells
//! and weighs the tells into a verdict.
//!
//! Within `conform`, data flows one way: `vector` ← `expect`, `fingerprint` ← `steps` ←
//! `runner`; vectors arrive parsed, and sockets are `net::raw`'s.

pub mod expect;
pub mod fingerprint;
pub mod runner;
pub mod steps;
pub mod vector;

pub use runner::{
    CaseResult, HostUnderTest, RunConfig, Status, SuiteReport, bundled_config, bundled_target,
    run_suite,
};
pub use vector::{Level, Profile};
