//! Integration tests, one binary with a module per area (as ripgrep and fd do).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

mod allocation;
mod captures;
mod command_line;
mod conform;
mod conventions;
mod figures;
mod fuzz;
mod fuzz_corpus;
mod hostile_client;
mod html;
mod inspect;
mod layers;
mod load;
mod network;
mod process;
mod properties;
mod readme;
mod record;
mod replay;
mod schemas;
mod simulate;
mod vectors;
