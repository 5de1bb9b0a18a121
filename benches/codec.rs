//! Criterion benches of the protocol core, per KMS version: client build+encrypt, host
//! decrypt+verify+build+encrypt (one whole host step), client decrypt+verify.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kmsharness::proto::client::message::{ResponseBuf, decode_response, encode_request};
use kmsharness::proto::host::message::{
    HostRandom, ResponseParams, decode_request, encode_response,
};
use kmsharness::wire::kms::{RequestBase, Version, epid_to_wire};

fn bench_version(c: &mut Criterion, name: &str, version: Version) {
    let mut epid = Vec::new();
    epid_to_wire(
        "03612-00206-569-992245-03-14337-17763.0000-1622026",
        &mut epid,
    );
    let params = ResponseParams {
        epid: &epid,
        hwid: [0x3a, 0x1c, 0x04, 0x96, 0x00, 0xb6, 0x00, 0x76],
        count: 10,
        activation_interval: 120,
        renewal_interval: 10080,
    };
    let random = HostRandom {
        salt: [0x11; 16],
        iv: [0x22; 16],
    };
    let base = RequestBase::example(version);
    let mut request = Vec::with_capacity(512);
    let sent = encode_request(&base, [0x33; 16], &mut request);
    let mut response = Vec::with_capacity(512);
    let (req, _) = decode_request(&request, None).unwrap();
    encode_response(&req, &params, &random, &mut response);

    let mut g = c.benchmark_group(name);
    let mut out = Vec::with_capacity(512);
    g.bench_function("client_build_request", |b| {
        b.iter(|| {
            out.clear();
            black_box(encode_request(black_box(&base), [0x33; 16], &mut out));
        })
    });
    g.bench_function("host_step", |b| {
        b.iter(|| {
            out.clear();
            let (req, checks) = decode_request(black_box(&request), None).unwrap();
            black_box(checks);
            encode_response(&req, &params, &random, &mut out);
            black_box(&out);
        })
    });
    g.bench_function("host_decrypt_verify_request", |b| {
        b.iter(|| black_box(decode_request(black_box(&request), None).unwrap()))
    });
    g.bench_function("host_build_response", |b| {
        b.iter(|| {
            out.clear();
            encode_response(black_box(&req), &params, &random, &mut out);
            black_box(&out);
        })
    });
    let mut buf = ResponseBuf::default();
    g.bench_function("client_verify_response", |b| {
        b.iter(|| {
            let (resp, checks) = decode_response(&sent, black_box(&response), &mut buf).unwrap();
            assert!(checks.all_passed());
            black_box(resp.base.count);
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_version(c, "v4", Version::V4);
    bench_version(c, "v5", Version::V5);
    bench_version(c, "v6", Version::V6);
}

criterion_group!(codec, benches);
criterion_main!(codec);
