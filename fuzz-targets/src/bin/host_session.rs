//! libFuzzer entry point of the `host_session` target; its body is targets::host_session.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::host_session(data));
