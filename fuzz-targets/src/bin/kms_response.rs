//! libFuzzer entry point of the `kms_response` target; its body is targets::kms_response.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::kms_response(data));
