//! libFuzzer entry point of the `capture` target; its body is targets::capture.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::capture(data));
