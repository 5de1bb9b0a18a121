//! libFuzzer entry point of the `epid` target; its body is targets::epid.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::epid(data));
