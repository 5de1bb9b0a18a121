//! The message steps allocate nothing once their buffers exist: the host step and the client's
//! build and verify run with zero heap allocations per message.

use kmsharness::proto::client::message::{ResponseBuf, decode_response, encode_request};
use kmsharness::proto::host::message::{
    HostRandom, ResponseParams, decode_request, encode_response,
};
use kmsharness::wire::kms::{RequestBase, Version, epid_to_wire};

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
