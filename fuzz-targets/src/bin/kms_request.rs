//! libFuzzer entry point of the `kms_request` target; its body is targets::kms_request.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::kms_request(data));
