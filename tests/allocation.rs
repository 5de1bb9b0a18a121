//! The message steps allocate nothing once their buffers exist: the host step and the client's
//! build and verify run with zero heap allocations per message, and so does a whole call over
//! a reused loopback connection, the host's side of it included.

use kmsharness::proto::client::message::{ResponseBuf, decode_response, encode_request};
use kmsharness::proto::host::message::{
    HostRandom, ResponseParams, decode_request, encode_response,
};
use kmsharness::wire::kms::{RequestBase, Version, epid_to_wire};

use kmsharness::host::{HostSetup, start};
use kmsharness::net::client::{ClientConfig, Connection};

#[test]
fn message_steps_do_not_allocate() {
    // The counter itself must see allocations, or the zero below proves nothing.
    let control = allocation_counter::measure(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(64));
    });
    assert!(control.count_total >= 1);
    let mut epid = Vec::new();
    epid_to_wire(
        "03612-00206-569-992245-03-14337-17763.0000-1622026",
        &mut epid,
    );
    let params = ResponseParams {
        epid: &epid,
        hwid: [1; 8],
        count: 10,
        activation_interval: 120,
        renewal_interval: 10080,
    };
    for version in [Version::V4, Version::V5, Version::V6] {
        let base = RequestBase::example(version);
        let mut request = Vec::with_capacity(512);
        let mut response = Vec::with_capacity(512);
        let mut buf = ResponseBuf::default();
        // Warm up: key schedules are built on first use.
        let sent = encode_request(&base, [7; 16], &mut request);
        let (req, _) = decode_request(&request, None).unwrap();
        encode_response(&req, &params, &HostRandom::default(), &mut response);
        let info = allocation_counter::measure(|| {
            for _ in 0..10 {
                request.clear();
                let sent = encode_request(&base, [7; 16], &mut request);
                let (req, checks) = decode_request(&request, Some(base.client_time)).unwrap();
                assert!(checks.all_passed());
                response.clear();
                encode_response(
                    &req,
                    &params,
                    &HostRandom {
                        salt: [3; 16],
                        iv: [4; 16],
                    },
                    &mut response,
                );
                let (_, checks) = decode_response(&sent, &response, &mut buf).unwrap();
                assert!(checks.all_passed());
            }
        });
        assert_eq!(info.count_total, 0, "{version}: {info:?}");
        assert_eq!(sent.base, base);
    }
}

/// Calls counted in the network test, after as many to warm up.
const CALLS: usize = 200;

/// One V6 activation of a new machine over `conn`, every check of both layers passed.
async fn one_call(conn: &mut Connection, i: usize, request: &mut Vec<u8>, buf: &mut ResponseBuf) {
    let mut base = RequestBase::example(Version::V6);
    // A new machine each time: the host's table evicts and inserts, as under load.
    base.cmid.0[..8].copy_from_slice(&(i as u64).to_le_bytes());
    base.client_time = kmsharness::clock::now_filetime();
    request.clear();
    let sent = encode_request(&base, [7; 16], request);
    conn.call(request).await.unwrap();
    assert!(
        conn.reply_checks().all_passed(),
        "{:?}",
        conn.reply_checks()
    );
    let (_, checks) = decode_response(&sent, conn.response_body(), buf).unwrap();
    assert!(checks.all_passed(), "{checks:?}");
}

#[test]
fn a_call_over_a_reused_connection_allocates_nothing_on_either_side() {
    // One thread runs the host and the client, so the counter (which counts the calling
    // thread's allocations) sees both sides of every call.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut request = Vec::with_capacity(512);
    let mut buf = ResponseBuf::default();
    let (host, mut conn) = runtime.block_on(async {
        let host = start(HostSetup::loopback()).await.unwrap();
        let mut conn = Connection::connect(host.addrs[0], ClientConfig::default(), 2)
            .await
            .unwrap();
        conn.bind().await.unwrap();
        // Warm up: key schedules, the host's client table, both sides' buffers and timers.
        for i in 0..CALLS {
            one_call(&mut conn, i, &mut request, &mut buf).await;
        }
        (host, conn)
    });
    let info = allocation_counter::measure(|| {
        runtime.block_on(async {
            for i in CALLS..2 * CALLS {
                one_call(&mut conn, i, &mut request, &mut buf).await;
            }
        })
    });
    assert_eq!(info.count_total, 0, "{info:?} over {CALLS} calls");
    runtime.block_on(host.stop()).unwrap();
}
