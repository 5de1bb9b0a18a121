//! libFuzzer entry point of the `ndr_stub` target; its body is targets::ndr_stub.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::ndr_stub(data));
