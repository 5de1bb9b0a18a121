//! Criterion benches of the load generator's per-request work: build (machine state to
//! encrypted request PDU), verify (reply PDU to every check), record (histograms and timeline).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kmsharness::epid::YearDay;
use kmsharness::load::fleet::Fleet;
use kmsharness::load::mix::Mix;
use kmsharness::load::stats::{Phase, Stats};
use kmsharness::proto::client::message::{ResponseBuf, decode_response, encode_request};
use kmsharness::proto::client::session::{CallReply, ClientRpcOptions, ClientSession};
use kmsharness::proto::faults::FaultSet;
use kmsharness::proto::host::engine::{Policy, activate};
use kmsharness::proto::host::message::HostRandom;
use kmsharness::proto::host::session::{HostRpcConfig, HostSession};
use kmsharness::proto::host::{config::HostConfig, engine::KmsHost};
use kmsharness::wire::kms::FileTime;

fn bench(c: &mut Criterion) {
    let now = FileTime::from_unix_secs(1_795_492_182);
    let mut g = c.benchmark_group("generator");
    for (name, product) in [
        ("v4", "Office Professional Plus 2010"),
        ("v5", "Windows Server 2012 Datacenter"),
        ("v6", "Windows Server 2022 Standard"),
    ] {
        let fleet = Fleet::new(1, &Mix::new(&[(product, 1)]).unwrap(), 1);
        let machine = fleet.get(0);
        // A bound client/host pair and one reply PDU to verify again and again.
        let mut client = ClientSession::new(ClientRpcOptions {
            ndr64: false,
            ..ClientRpcOptions::default()
        });
        let mut host = HostSession::new(HostRpcConfig::default(), 1);
        let mut wire = Vec::new();
        client.bind(&mut wire);
        let mut reply = Vec::new();
        host.handle(&wire, &mut |_, _| Ok(()), &mut reply);
        client.handle_bind_reply(&reply).unwrap();
        let base = machine.request(now);
        let mut kms = Vec::new();
        let sent = encode_request(&base, [5; 16], &mut kms);
        wire.clear();
        client.request(&kms, &mut wire);
        let host_config = HostConfig {
            key_groups: kmsharness::catalog::HOST_KEY_GROUPS.iter().collect(),
            ..HostConfig::default()
        };
        let mut policy = Policy::new(
            KmsHost::new(
                host_config,
                YearDay {
                    year: 2026,
                    day: 328,
                },
                1,
            )
            .unwrap(),
            FaultSet::NONE,
        );
        reply.clear();
        host.handle(
            &wire,
            &mut |req, out| {
                activate(
                    req,
                    now,
                    &HostRandom {
                        salt: [1; 16],
                        iv: [2; 16],
                    },
                    FaultSet::NONE,
                    |r, c| policy.decide(r, c, now),
                    out,
                )
                .1
            },
            &mut reply,
        );

        let mut out = Vec::with_capacity(512);
        g.bench_function(format!("{name}/build"), |b| {
            b.iter(|| {
                kms.clear();
                out.clear();
                let base = machine.request(black_box(now));
                black_box(encode_request(&base, [5; 16], &mut kms));
                client.request(&kms, &mut out);
                black_box(&out);
            })
        });
        // Re-arm the session for the captured reply's call id.
        client.request(&kms, &mut out);
        let mut buf = ResponseBuf::default();
        g.bench_function(format!("{name}/verify"), |b| {
            b.iter(|| {
                let outcome = client.handle_reply(black_box(&reply)).unwrap().unwrap();
                assert_eq!(outcome.reply, CallReply::Response);
                let (_, checks) = decode_response(&sent, client.response_body(), &mut buf).unwrap();
                black_box(checks.all_passed());
            })
        });
    }
    let mut stats = Stats::default();
    g.bench_function("record", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            stats.record(Phase::Call, Duration::from_micros(100 + i % 900));
            stats.record(Phase::Total, Duration::from_micros(120 + i % 900));
            stats.tick(black_box(3), false);
        })
    });
    g.finish();
}

criterion_group!(generator, bench);
criterion_main!(generator);
