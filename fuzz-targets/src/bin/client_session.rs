//! libFuzzer entry point of the `client_session` target; its body is targets::client_session.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::client_session(data));
