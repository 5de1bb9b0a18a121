//! Criterion bench of the reference host's request handling in process: a request PDU through
//! the RPC session, the KMS engine (decrypt, check, client table, encrypt) to the reply PDU.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kmsharness::epid::YearDay;
use kmsharness::proto::client::message::encode_request;
use kmsharness::proto::client::session::{ClientRpcOptions, ClientSession};
use kmsharness::proto::faults::FaultSet;
use kmsharness::proto::host::engine::{Policy, activate};
use kmsharness::proto::host::message::HostRandom;
use kmsharness::proto::host::session::{HostRpcConfig, HostSession};
use kmsharness::proto::host::{config::HostConfig, engine::KmsHost};
use kmsharness::wire::Guid;
use kmsharness::wire::kms::{FileTime, RequestBase, Version, Workstation};
use kmsharness::wire::rpc::split_pdu;

fn bench(c: &mut Criterion) {
    let now = FileTime::from_unix_secs(1_795_492_182);
    let mut g = c.benchmark_group("host_request");
    for version in [Version::V4, Version::V5, Version::V6] {
        // A bound session and 1,000 distinct machines' request PDUs, cycled.
        let mut host = HostSession::new(HostRpcConfig::default(), 1);
        let mut client = ClientSession::new(ClientRpcOptions {
            ndr64: false,
            ..ClientRpcOptions::default()
        });
        let mut wire = Vec::new();
        client.bind(&mut wire);
        let mut out = Vec::new();
        host.handle(&wire, &mut |_, _| Ok(()), &mut out);
        client.handle_bind_reply(&out).unwrap();
        let pdus: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                let base = RequestBase {
                    cmid: Guid::new_v4(id),
                    client_time: now,
                    workstation: Workstation::new("bench.example"),
                    ..RequestBase::example(version)
                };
                let mut kms = Vec::new();
                encode_request(&base, [7; 16], &mut kms);
                let mut pdu = Vec::new();
                client.request(&kms, &mut pdu);
                pdu
            })
            .collect();
        let kms = KmsHost::new(
            HostConfig::default(),
            YearDay {
                year: 2026,
                day: 328,
            },
            1,
        )
        .unwrap();
        let mut policy = Policy::new(kms, FaultSet::NONE);
        let random = HostRandom {
            salt: [1; 16],
            iv: [2; 16],
        };
        let mut i = 0;
        g.bench_function(format!("v{}", version.major), |b| {
            b.iter(|| {
                out.clear();
                let pdu = &pdus[i % pdus.len()];
                i += 1;
                let step = host.handle(
                    black_box(pdu),
                    &mut |req, kms_out| {
                        activate(
                            req,
                            now,
                            &random,
                            FaultSet::NONE,
                            |r, c| policy.decide(r, c, now),
                            kms_out,
                        )
                        .1
                    },
                    &mut out,
                );
                black_box(step);
                assert!(split_pdu(&out).unwrap().is_some());
            })
        });
    }
    g.finish();
}

criterion_group!(host, bench);
criterion_main!(host);
