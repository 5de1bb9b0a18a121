//! libFuzzer entry point of the `rpc_pdu` target; its body is targets::rpc_pdu.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmsharness_fuzz_targets::targets::rpc_pdu(data));
