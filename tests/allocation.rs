//! The message steps allocate nothing once their buffers exist: the host step and the client's
//! build and verify run with zero heap allocations per message.

use kmsharness::proto::client::{ResponseBuf, decode_response, encode_request};
use kmsharness::proto::host::{HostRandom, ResponseParams, decode_request, encode_response};
use kmsharness::wire::Guid;
use kmsharness::wire::kms::{FileTime, RequestBase, Version, Workstation, epid_to_wire};

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
        let base = RequestBase {
            version,
            vm_info: 0,
            license_status: 2,
            binding_expiration: 43200,
            app_id: Guid::from_str_const("55c92734-d682-4d71-983e-d6ec3f16059f"),
            sku_id: Guid::from_str_const("8de8eb62-bbe0-40ac-ac17-f75595071ea3"),
            kms_id: Guid::from_str_const("8449b1fb-f0ea-497a-99ab-66ca96e9a0f5"),
            cmid: Guid::from_str_const("04a4885a-acaa-4f7c-aa80-6998149ec6bc"),
            required_clients: 5,
            client_time: FileTime::from_unix_secs(1_795_492_182),
            previous_cmid: Guid::NIL,
            workstation: Workstation::new("ceo-laptop.htc.co.uk"),
        };
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
