//! The reference host's decisions, tables and state, rule by rule.

use super::config::*;
use super::engine::*;
use super::policy::*;
use super::state::*;
use super::table::*;
use crate::catalog::{self, AppKind, HostKeyGroup};
use crate::epid::{self, Epid, YearDay};
use crate::proto::check::Check;
use crate::proto::check::Checks;
use crate::proto::check::{CheckId, Value};
use crate::proto::client::message::{ResponseBuf, decode_response, encode_request};
use crate::proto::host::message::{HostRandom, decode_request, encode_response};
use crate::proto::host::message::{MAX_REQUIRED_CLIENTS, ReceivedRequest, ResponseParams};
use crate::wire::kms::FileTime;
use crate::wire::kms::epid_to_wire;
use crate::wire::kms::{RequestBase, Version, Workstation};
use crate::wire::{Guid, HResult};

const SEC: u64 = FileTime::TICKS_PER_SEC;
const DAY: u64 = 86_400;
/// 2026-06-11 00:00:00 UTC, the day of the ePID date below.
const T0: FileTime = FileTime::from_unix_secs(1_781_136_000);
const TODAY: YearDay = YearDay {
    year: 2026,
    day: 162,
};

const WS2019: Guid = Guid::from_str_const("8449b1fb-f0ea-497a-99ab-66ca96e9a0f5");
const WIN10: Guid = Guid::from_str_const("58e2134f-8e11-4d17-9cb2-91069c151148");
const OFFICE2016: Guid = Guid::from_str_const("85b5f61b-320b-4be3-814a-b76b2bfafc82");
const OFFICE2010: Guid = Guid::from_str_const("e85af946-2e25-47b7-83e1-bebcebeac611");
/// vlmcs's default product: Windows Server 2019 Datacenter.
const VLMCS_DEFAULT_SKU: Guid = Guid::from_str_const("8de8eb62-bbe0-40ac-ac17-f75595071ea3");
const WIN10_ENTERPRISE: Guid = Guid::from_str_const("73111121-5638-40f6-bc11-f1d7b0d64300");

fn at(days: u64, secs: u64) -> FileTime {
    FileTime(T0.0 + (days * DAY + secs) * SEC)
}

fn cmid(i: u32) -> Guid {
    let mut b = [0x5a; 16];
    b[..4].copy_from_slice(&i.to_le_bytes());
    Guid::new_v4(b)
}

fn group(name: &str) -> &'static HostKeyGroup {
    catalog::host_key_group(name).unwrap()
}

/// A V6 request for `kms_id` in its catalog application, sent at host time `now`.
fn base(kms_id: Guid, machine: Guid, n: u32, now: FileTime) -> RequestBase {
    let item = catalog::kms_item(&kms_id);
    RequestBase {
        version: Version::V6,
        vm_info: 0,
        license_status: 2,
        binding_expiration: 43200,
        app_id: item.map_or(AppKind::Windows, |k| k.app).application().id,
        sku_id: item
            .and_then(|k| k.skus().next())
            .map_or(Guid::NIL, |s| s.id),
        kms_id,
        cmid: machine,
        required_clients: n,
        client_time: now,
        previous_cmid: Guid::NIL,
        workstation: Workstation::new("pc.example.test"),
    }
}

/// Encodes and decodes `base` as a client and host would.
fn received(base: &RequestBase) -> (ReceivedRequest, Checks) {
    let mut msg = Vec::new();
    encode_request(base, [7; 16], &mut msg);
    decode_request(&msg, None).unwrap()
}

/// A host holding the Windows Server 2022 group only, so that Office requests are refused.
fn windows_config() -> HostConfig {
    HostConfig {
        key_groups: vec![catalog::default_host_key_group()],
        ..HostConfig::default()
    }
}

fn default_host() -> KmsHost {
    KmsHost::new(windows_config(), TODAY, 42).unwrap()
}

fn decide(host: &mut KmsHost, base: &RequestBase, now: FileTime) -> Result<u32, Refusal> {
    let (req, checks) = received(base);
    match host.handle(&req, &checks, now) {
        Decision::Grant(p) => Ok(p.count),
        Decision::Refuse(r) => Err(r),
    }
}

/// The count granted to `machine` asking for `kms_id` with policy `n` at `now`.
fn ask(host: &mut KmsHost, kms_id: Guid, machine: Guid, n: u32, now: FileTime) -> u32 {
    decide(host, &base(kms_id, machine, n, now), now).unwrap_or_else(|r| panic!("refused: {r}"))
}

fn refusal(host: &mut KmsHost, base: &RequestBase, now: FileTime) -> Refusal {
    decide(host, base, now).expect_err("granted")
}

fn listed(host: &KmsHost, app: AppKind, machine: Guid) -> bool {
    host.state()
        .tables
        .iter()
        .filter(|t| t.app == app)
        .flat_map(|t| &t.clients)
        .any(|c| c.cmid == machine)
}

#[test]
fn test_new_machine_counts_once() {
    let mut host = default_host();
    assert_eq!(host.count(AppKind::Windows, T0), 0);
    assert_eq!(host.capacity(AppKind::Windows), 0);
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 0)), 1);
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 10)), 1);
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(1, 0)), 1);
    assert_eq!(ask(&mut host, WS2019, cmid(2), 5, at(1, 1)), 2);
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(1, 2)), 2);
    assert_eq!(host.count(AppKind::Windows, at(1, 2)), 2);
}

#[test]
fn test_server_requests_stop_at_ten() {
    let mut host = default_host();
    let counts: Vec<u32> = (0..12)
        .map(|i| ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i))))
        .collect();
    assert_eq!(counts, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]);
    assert_eq!(host.capacity(AppKind::Windows), 10);
    assert_eq!(host.count(AppKind::Windows, at(0, 20)), 10);
}

#[test]
fn test_client_request_raises_capacity_for_good() {
    let mut host = default_host();
    for i in 0..10 {
        ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i)));
    }
    assert_eq!(ask(&mut host, WIN10, cmid(100), 25, at(0, 10)), 11);
    assert_eq!(host.capacity(AppKind::Windows), 50);
    let mut last = 0;
    for i in 200..260 {
        last = ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i)));
    }
    assert_eq!(last, 50);
    assert_eq!(host.capacity(AppKind::Windows), 50);
    // Even once every client has expired, the size stays.
    assert_eq!(ask(&mut host, WS2019, cmid(999), 5, at(90, 0)), 1);
    assert_eq!(host.capacity(AppKind::Windows), 50);
}

#[test]
fn test_oldest_evicted_first() {
    let mut host = default_host();
    for i in 0..10 {
        ask(&mut host, WS2019, cmid(i), 5, at(0, u64::from(i)));
    }
    // Full: machine 0, the oldest, leaves for machine 10.
    assert_eq!(ask(&mut host, WS2019, cmid(10), 5, at(0, 10)), 10);
    assert!(!listed(&host, AppKind::Windows, cmid(0)));
    assert!(listed(&host, AppKind::Windows, cmid(1)));
    // Machine 1 renews: it is now the newest, so machine 2 is the oldest.
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 11)), 10);
    // Machine 0 returns as a new client and pushes machine 2 out.
    assert_eq!(ask(&mut host, WS2019, cmid(0), 5, at(0, 12)), 10);
    assert!(listed(&host, AppKind::Windows, cmid(0)));
    assert!(listed(&host, AppKind::Windows, cmid(1)));
    assert!(!listed(&host, AppKind::Windows, cmid(2)));
    let order: Vec<Guid> = host.state().tables[0]
        .clients
        .iter()
        .map(|c| c.cmid)
        .collect();
    let expected: Vec<Guid> = [3, 4, 5, 6, 7, 8, 9, 10, 1, 0].map(cmid).to_vec();
    assert_eq!(order, expected);
}

#[test]
fn test_equal_times_leave_in_arrival_order() {
    let mut host = default_host();
    for i in 0..10 {
        ask(&mut host, WS2019, cmid(i), 5, T0);
    }
    for i in 10..15 {
        ask(&mut host, WS2019, cmid(i), 5, T0);
        assert!(!listed(&host, AppKind::Windows, cmid(i - 10)));
        assert!(listed(&host, AppKind::Windows, cmid(i - 9)));
    }
}

#[test]
fn test_expiry_after_thirty_days() {
    let mut host = default_host();
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 0)), 1);
    assert_eq!(host.count(AppKind::Windows, at(30, 0)), 1);
    assert_eq!(host.count(AppKind::Windows, at(30, 1)), 0);
    // Another machine asking then sees only itself.
    assert_eq!(ask(&mut host, WS2019, cmid(2), 5, at(30, 1)), 1);
    // The expired machine counts as new when it asks again.
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(30, 2)), 2);
    assert_eq!(host.count(AppKind::Windows, at(60, 1)), 2);
    assert_eq!(host.count(AppKind::Windows, at(60, 2)), 1);
    assert_eq!(host.count(AppKind::Windows, at(60, 3)), 0);
}

#[test]
fn test_renewal_extends_life() {
    let mut host = default_host();
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(0, 0)), 1);
    assert_eq!(ask(&mut host, WS2019, cmid(2), 5, at(0, 1)), 2);
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, at(29, 0)), 2);
    assert_eq!(host.count(AppKind::Windows, at(30, 2)), 1);
    assert_eq!(host.count(AppKind::Windows, at(58, 0)), 1);
    assert_eq!(host.count(AppKind::Windows, at(59, 0)), 1);
    assert_eq!(host.count(AppKind::Windows, at(59, 1)), 0);
    assert_eq!(ask(&mut host, WS2019, cmid(3), 5, at(58, 0)), 2);
}

#[test]
fn test_client_and_server_editions_share_the_windows_count() {
    let mut host = default_host();
    let mut win10 = base(WIN10, cmid(1), 25, T0);
    win10.sku_id = WIN10_ENTERPRISE;
    assert_eq!(catalog::sku(&WIN10_ENTERPRISE).unwrap().kms, WIN10);
    assert_eq!(decide(&mut host, &win10, T0), Ok(1));
    assert_eq!(ask(&mut host, WS2019, cmid(2), 5, T0), 2);
    win10.cmid = cmid(3);
    assert_eq!(decide(&mut host, &win10, T0), Ok(3));
    assert_eq!(host.count(AppKind::Windows, T0), 3);
    assert_eq!(host.capacity(AppKind::Windows), 50);
}

#[test]
fn test_office_counts_apart_from_windows() {
    let config = HostConfig {
        key_groups: vec![
            catalog::default_host_key_group(),
            group("Volume License for Office 2016"),
        ],
        ..windows_config()
    };
    let mut host = KmsHost::new(config, TODAY, 7).unwrap();
    assert_eq!(ask(&mut host, WS2019, cmid(1), 5, T0), 1);
    assert_eq!(ask(&mut host, WS2019, cmid(2), 5, T0), 2);
    // The same machines running Office count again, in the Office table.
    assert_eq!(ask(&mut host, OFFICE2016, cmid(1), 5, T0), 1);
    assert_eq!(ask(&mut host, OFFICE2016, cmid(3), 5, T0), 2);
    assert_eq!(host.count(AppKind::Windows, T0), 2);
    assert_eq!(host.count(AppKind::Office2013, T0), 2);
    assert_eq!(host.count(AppKind::Office2010, T0), 0);
    assert_eq!(host.capacity(AppKind::Office2013), 10);
    // Each application answers with its own key group's ePID.
    let windows = *host.epid_for(&WS2019).unwrap();
    let office = *host.epid_for(&OFFICE2016).unwrap();
    assert_ne!(windows, office);
    assert_eq!(office.group_id, 206);
    let (req, checks) = received(&base(OFFICE2016, cmid(4), 5, T0));
    let Decision::Grant(p) = host.handle(&req, &checks, T0) else {
        panic!("refused");
    };
    let mut expected = Vec::new();
    epid_to_wire(&office.to_string(), &mut expected);
    assert_eq!(p.epid, expected);
    // No Office 2010 key: refused.
    let r = refusal(&mut host, &base(OFFICE2010, cmid(5), 5, T0), T0);
    assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
}

#[test]
fn test_first_configured_group_answers() {
    let ws2019 = group("Volume License for Windows Server 2019");
    let config = HostConfig {
        key_groups: vec![ws2019, catalog::default_host_key_group()],
        ..windows_config()
    };
    let host = KmsHost::new(config, TODAY, 7).unwrap();
    assert_eq!(host.epid_for(&WS2019).unwrap().group_id, 206);
    let ws2022 = Guid::from_str_const("b74263e4-0f92-46c6-bcf8-c11d5efe2959");
    assert_eq!(host.epid_for(&ws2022).unwrap().group_id, 4573);
    assert_eq!(host.epid_for(&OFFICE2016), None);
}

/// Whether the tables are exactly as before.
fn unchanged(host: &KmsHost, before: &HostState) {
    assert_eq!(&host.state(), before);
}

fn busy_host() -> (KmsHost, HostState) {
    let mut host = default_host();
    for i in 0..3 {
        ask(&mut host, WS2019, cmid(i), 5, T0);
    }
    let state = host.state();
    (host, state)
}

#[test]
fn test_refuse_unsupported_version() {
    let (mut host, before) = busy_host();
    for (major, minor) in [(6, 1), (5, 1), (4, 2), (3, 0), (7, 0), (0, 0)] {
        let mut b = base(WS2019, cmid(9), 5, T0);
        b.version = Version { major, minor };
        let r = refusal(&mut host, &b, T0);
        assert_eq!(r.rule, RefusalRule::UnsupportedVersion, "{major}.{minor}");
        assert_eq!(r.hresult, HResult(0x8007_000D));
        assert_eq!(r.actual, Value::Version(b.version));
    }
    unchanged(&host, &before);
    for v in [Version::V4, Version::V5, Version::V6] {
        let mut b = base(WS2019, cmid(9), 5, T0);
        b.version = v;
        assert_eq!(decide(&mut host, &b, T0), Ok(4), "{v}");
    }
}

#[test]
fn test_refuse_integrity_failures() {
    let (mut host, before) = busy_host();
    let b = base(WS2019, cmid(9), 5, T0);

    // V4: a MAC that does not verify.
    let mut v4 = b;
    v4.version = Version::V4;
    let mut msg = Vec::new();
    encode_request(&v4, [0; 16], &mut msg);
    *msg.last_mut().unwrap() ^= 1;
    let (req, checks) = decode_request(&msg, None).unwrap();
    let Decision::Refuse(r) = host.handle(&req, &checks, T0) else {
        panic!("granted");
    };
    assert_eq!(
        (r.rule, r.check, r.hresult),
        (
            RefusalRule::IntegrityFailed,
            Some(CheckId::Mac),
            HResult(0x8007_000D)
        )
    );

    // V6: the last block damaged, so the padding is wrong.
    msg.clear();
    encode_request(&b, [7; 16], &mut msg);
    *msg.last_mut().unwrap() ^= 0x55;
    let (req, checks) = decode_request(&msg, None).unwrap();
    assert!(!checks.passed(CheckId::Decrypt));
    let Decision::Refuse(r) = host.handle(&req, &checks, T0) else {
        panic!("granted");
    };
    assert_eq!(r.rule, RefusalRule::IntegrityFailed);
    assert_eq!(r.check, Some(CheckId::Decrypt));

    // Envelope 6.0 around a base that says 5.0.
    let (req, mut checks) = received(&b);
    checks.push(Check::equal(
        CheckId::Version,
        Value::Version(Version::V6),
        Value::Version(Version::V5),
    ));
    let Decision::Refuse(r) = host.handle(&req, &checks, T0) else {
        panic!("granted");
    };
    assert_eq!(r.check, Some(CheckId::Version));
    assert_eq!(r.hresult, HResult::INVALID_DATA);
    unchanged(&host, &before);

    // Checks other than integrity do not refuse: a machine ID that is not version 4.
    let mut odd = b;
    odd.cmid = Guid([1; 16]);
    let (req, checks) = received(&odd);
    assert!(!checks.passed(CheckId::MachineIdFormat));
    assert!(matches!(host.handle(&req, &checks, T0), Decision::Grant(_)));
}

#[test]
fn test_refuse_too_many_required_clients() {
    let (mut host, before) = busy_host();
    let r = refusal(&mut host, &base(WS2019, cmid(9), 1001, T0), T0);
    assert_eq!(r.rule, RefusalRule::TooManyRequiredClients);
    assert_eq!(r.hresult, HResult(0x8007_000D));
    assert_eq!(r.actual, Value::Num(1001));
    let r = refusal(&mut host, &base(WS2019, cmid(9), u32::MAX, T0), T0);
    assert_eq!(r.rule, RefusalRule::TooManyRequiredClients);
    unchanged(&host, &before);
    assert_eq!(host.capacity(AppKind::Windows), 10);
    assert_eq!(ask(&mut host, WS2019, cmid(9), 1000, T0), 4);
    assert_eq!(host.capacity(AppKind::Windows), MAX_CAPACITY);
}

#[test]
fn test_zero_policy_still_counts_the_requester() {
    let mut host = default_host();
    assert_eq!(ask(&mut host, WS2019, cmid(1), 0, T0), 1);
    assert_eq!(host.capacity(AppKind::Windows), 1);
    assert_eq!(ask(&mut host, WS2019, cmid(2), 0, T0), 1);
    assert!(!listed(&host, AppKind::Windows, cmid(1)));
}

#[test]
fn test_refuse_clock_skew() {
    let (mut host, before) = busy_host();
    let limit = 4 * 3600;
    for client in [at(0, limit + 1), FileTime(T0.0 - (limit + 1) * SEC)] {
        let r = refusal(&mut host, &base(WS2019, cmid(9), 5, client), T0);
        assert_eq!(r.rule, RefusalRule::ClockSkew);
        assert_eq!(r.hresult, HResult(0xC004_F06C));
        assert_eq!(r.expected, Value::Time(T0));
        assert_eq!(r.actual, Value::Time(client));
    }
    // Extremes do not overflow.
    for client in [FileTime(0), FileTime(u64::MAX)] {
        let r = refusal(&mut host, &base(WS2019, cmid(9), 5, client), T0);
        assert_eq!(r.rule, RefusalRule::ClockSkew);
    }
    unchanged(&host, &before);
    // Exactly four hours either way is fine.
    assert_eq!(
        decide(&mut host, &base(WS2019, cmid(9), 5, at(0, limit)), T0),
        Ok(4)
    );
    let early = FileTime(T0.0 - limit * SEC);
    assert_eq!(
        decide(&mut host, &base(WS2019, cmid(10), 5, early), T0),
        Ok(5)
    );

    // Disabled: any client time goes.
    let config = HostConfig {
        max_clock_skew_secs: None,
        ..windows_config()
    };
    let mut lax = KmsHost::new(config, TODAY, 1).unwrap();
    assert_eq!(
        decide(&mut lax, &base(WS2019, cmid(1), 5, FileTime(0)), T0),
        Ok(1)
    );
}

#[test]
fn test_refuse_kms_id_outside_key_groups() {
    let (mut host, before) = busy_host();
    let r = refusal(&mut host, &base(OFFICE2016, cmid(9), 5, T0), T0);
    assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
    assert_eq!(r.hresult, HResult(0xC004_F042));
    assert_eq!(r.actual, Value::Guid(OFFICE2016));
    // A KMS ID no catalog entry has.
    let unknown = Guid::from_str_const("01234567-89ab-4cde-8f01-23456789abcd");
    let r = refusal(&mut host, &base(unknown, cmid(9), 5, T0), T0);
    assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
    // Windows 10 China Government is not in the Server 2022 group.
    let gov = Guid::from_str_const("7ba0bf23-d0f5-4072-91d9-d55af5a481b6");
    let r = refusal(&mut host, &base(gov, cmid(9), 25, T0), T0);
    assert_eq!(r.rule, RefusalRule::KmsIdNotInKeyGroup);
    unchanged(&host, &before);
}

#[test]
fn test_refuse_application_mismatch() {
    let (mut host, before) = busy_host();
    for app in [AppKind::Office2013, AppKind::Office2010] {
        let mut b = base(WS2019, cmid(9), 5, T0);
        b.app_id = app.application().id;
        let r = refusal(&mut host, &b, T0);
        assert_eq!(r.rule, RefusalRule::ApplicationMismatch);
        assert_eq!(r.hresult, HResult(0xC004_F042));
        assert_eq!(r.expected, Value::Guid(AppKind::Windows.application().id));
        assert_eq!(r.actual, Value::Guid(b.app_id));
    }
    let mut b = base(WS2019, cmid(9), 5, T0);
    b.app_id = Guid::NIL;
    assert_eq!(
        refusal(&mut host, &b, T0).rule,
        RefusalRule::ApplicationMismatch
    );
    unchanged(&host, &before);
}

#[test]
fn test_rules_apply_in_order() {
    let mut host = default_host();
    // Everything wrong at once: each fix reveals the next rule.
    let mut b = base(OFFICE2016, cmid(1), 5000, FileTime(0));
    b.app_id = Guid::NIL;
    b.version = Version { major: 6, minor: 1 };
    let (mut req, mut checks) = received(&b);
    checks.push(Check::equal(CheckId::Mac, Value::Num(1), Value::Num(2)));
    let mut next = |req: &ReceivedRequest, checks: &Checks| match host.handle(req, checks, T0) {
        Decision::Refuse(r) => r.rule,
        Decision::Grant(_) => panic!("granted"),
    };
    assert_eq!(next(&req, &checks), RefusalRule::UnsupportedVersion);
    req.version = Version::V6;
    assert_eq!(next(&req, &checks), RefusalRule::IntegrityFailed);
    checks = Checks::new();
    assert_eq!(next(&req, &checks), RefusalRule::TooManyRequiredClients);
    req.base.required_clients = 5;
    assert_eq!(next(&req, &checks), RefusalRule::ClockSkew);
    req.base.client_time = T0;
    assert_eq!(next(&req, &checks), RefusalRule::KmsIdNotInKeyGroup);
    req.base.kms_id = WS2019;
    assert_eq!(next(&req, &checks), RefusalRule::ApplicationMismatch);
    req.base.app_id = AppKind::Windows.application().id;
    assert!(matches!(
        host.handle(&req, &checks, T0),
        Decision::Grant(ResponseParams { count: 1, .. })
    ));
}

#[test]
fn test_rule_names_and_sources() {
    for (i, rule) in RefusalRule::ALL.iter().enumerate() {
        let name = rule.name();
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        assert_eq!(serde_json::to_string(rule).unwrap(), format!("\"{name}\""));
        assert!(!rule.source().is_empty());
        assert!(rule.hresult().is_failure());
        for other in &RefusalRule::ALL[i + 1..] {
            assert_ne!(name, other.name());
        }
    }
    let r = Refusal::new(
        RefusalRule::TooManyRequiredClients,
        Some(CheckId::RequiredClients),
        Value::Num(1000),
        Value::Num(1001),
    );
    assert_eq!(
        r.to_string(),
        "too_many_required_clients (check required_clients): expected 1000, got 1001 -> \
         0x8007000D (ERROR_INVALID_DATA)"
    );
    assert_eq!(Decision::Refuse(r).hresult(), HResult::INVALID_DATA);
}

#[test]
fn test_default_host_grants_vlmcs_default_product() {
    let mut host = default_host();
    let sku = catalog::sku(&VLMCS_DEFAULT_SKU).unwrap();
    assert_eq!(sku.kms, WS2019);
    let epid = host.epid_for(&WS2019).copied().unwrap();
    assert_eq!(epid.group_id, 4573);
    let hwid = host.hwid();
    let mut buf = ResponseBuf::default();
    for (i, version) in [Version::V4, Version::V5, Version::V6]
        .into_iter()
        .enumerate()
    {
        let mut b = base(WS2019, cmid(1 + i as u32), 5, T0);
        b.sku_id = VLMCS_DEFAULT_SKU;
        b.version = version;
        let mut msg = Vec::new();
        let sent = encode_request(&b, [9; 16], &mut msg);
        let (req, checks) = decode_request(&msg, Some(T0)).unwrap();
        assert!(checks.all_passed(), "{checks:?}");
        let Decision::Grant(params) = host.handle(&req, &checks, T0) else {
            panic!("{version} refused");
        };
        assert_eq!(params.count, i as u32 + 1);
        assert_eq!(params.hwid, hwid);
        assert_eq!(params.activation_interval, 120);
        assert_eq!(params.renewal_interval, 10080);
        let mut response = Vec::new();
        let random = HostRandom {
            salt: [3; 16],
            iv: [4; 16],
        };
        encode_response(&req, &params, &random, &mut response);
        let (resp, checks) = decode_response(&sent, &response, &mut buf).unwrap();
        assert!(checks.all_passed(), "{version}: {checks:?}");
        assert_eq!(resp.base.epid_string(), epid.to_string());
        assert_eq!(resp.base.count, i as u32 + 1);
    }
    // An Office product is not the Windows key's to activate.
    let r = refusal(&mut host, &base(OFFICE2016, cmid(9), 5, T0), T0);
    assert_eq!(r.hresult, HResult(0xC004_F042));
}

#[test]
fn test_generated_epids_validate() {
    let groups = [
        catalog::default_host_key_group(),
        group("Volume License for Windows Server 2019"),
        group("Volume License for Office 2016"),
        group("Volume License for Office 2010"),
    ];
    for build in [17763, 20348, 9600] {
        let config = HostConfig {
            key_groups: groups.to_vec(),
            host_build: epid::host_build(build).unwrap(),
            lcid: 1031,
            ..windows_config()
        };
        let host = KmsHost::new(config.clone(), TODAY, 99).unwrap();
        let epids: Vec<_> = host.epids().collect();
        assert_eq!(epids.len(), groups.len());
        for ((g, e), expected) in epids.iter().zip(groups) {
            assert_eq!(g.name, expected.name);
            assert_eq!(e.validate(Some(g)), [], "{e}");
            assert_eq!((e.build, e.lcid), (build, 1031));
            assert_eq!(e.activation_date(), Some(TODAY));
        }
        // The same seed gives the same host; another seed another.
        let again = KmsHost::new(config.clone(), TODAY, 99).unwrap();
        assert_eq!(again.state(), host.state());
        let other = KmsHost::new(config, TODAY, 100).unwrap();
        assert_ne!(other.hwid(), host.hwid());
        assert_ne!(other.epid_for(&WS2019), host.epid_for(&WS2019));
    }
    assert_eq!(default_host_build().build, DEFAULT_HOST_BUILD);
    assert_eq!(default_host().epid_for(&WS2019).unwrap().build, 20348);
    assert_eq!(default_host().epid_for(&WS2019).unwrap().lcid, 1033);
}

#[test]
fn test_explicit_epid_and_hwid() {
    let ws2019 = group("Volume License for Windows Server 2019");
    let captured: Epid = "03612-00206-569-992245-03-14337-17763.0000-1622026"
        .parse()
        .unwrap();
    let config = HostConfig {
        key_groups: vec![catalog::default_host_key_group(), ws2019],
        // Loose spelling, as a command line gives it.
        epids: vec![("volume-license-for-windows-server-2019".into(), captured)],
        hwid: Some([1, 2, 3, 4, 5, 6, 7, 8]),
        ..windows_config()
    };
    let host = KmsHost::new(config.clone(), TODAY, 5).unwrap();
    assert_eq!(host.hwid(), [1, 2, 3, 4, 5, 6, 7, 8]);
    let epids: Vec<Epid> = host.epids().map(|(_, e)| *e).collect();
    assert_eq!(epids[1], captured);
    // The generated one is what the same seed gives without the explicit one.
    let plain = HostConfig {
        epids: Vec::new(),
        ..config
    };
    let generated = KmsHost::new(plain, TODAY, 5).unwrap();
    assert_eq!(generated.epids().next().unwrap().1, &epids[0]);
}

#[test]
fn test_config_errors() {
    let ws2022 = catalog::default_host_key_group();
    let captured: Epid = "03612-00206-569-992245-03-14337-17763.0000-1622026"
        .parse()
        .unwrap();
    let try_new = |config: HostConfig| KmsHost::new(config, TODAY, 1).unwrap_err();

    let err = try_new(HostConfig {
        key_groups: Vec::new(),
        ..windows_config()
    });
    assert_eq!(err, ConfigError::NoKeyGroups);

    let err = try_new(HostConfig {
        key_groups: vec![ws2022, ws2022],
        ..windows_config()
    });
    assert_eq!(err, ConfigError::DuplicateKeyGroup { name: ws2022.name });

    // A Server 2019 ePID given for the Server 2022 key.
    let err = try_new(HostConfig {
        epids: vec![(ws2022.name.into(), captured)],
        ..windows_config()
    });
    let ConfigError::EpidGroupMismatch { name, issues, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*name, ws2022.name);
    assert_eq!(issues.len(), 2);
    assert!(err.to_string().contains("expected 04573"), "{err}");

    let err = try_new(HostConfig {
        epids: vec![("Volume License for Windows Server 2019".into(), captured)],
        ..windows_config()
    });
    assert!(matches!(err, ConfigError::UnknownEpidGroup { .. }), "{err}");
    let err = try_new(HostConfig {
        epids: vec![("no such group".into(), captured)],
        ..windows_config()
    });
    assert!(matches!(err, ConfigError::UnknownEpidGroup { .. }), "{err}");

    let ws2019 = group("Volume License for Windows Server 2019");
    let err = try_new(HostConfig {
        key_groups: vec![ws2019],
        epids: vec![
            (ws2019.name.into(), captured),
            (ws2019.name.into(), captured),
        ],
        ..windows_config()
    });
    assert_eq!(err, ConfigError::DuplicateEpid { name: ws2019.name });

    let err = try_new(HostConfig {
        lcid: 1047,
        ..windows_config()
    });
    assert_eq!(err, ConfigError::UnknownLcid { lcid: 1047 });

    let early = YearDay::new(2020, 1).unwrap();
    let err = KmsHost::new(HostConfig::default(), early, 1).unwrap_err();
    assert!(
        matches!(err, ConfigError::BeforeRelease { build: 20348, .. }),
        "{err}"
    );

    // Only generated ePIDs need a known LCID and a date after the release.
    let explicit_only = HostConfig {
        key_groups: vec![ws2019],
        epids: vec![(ws2019.name.into(), captured)],
        lcid: 1047,
        ..windows_config()
    };
    assert!(KmsHost::new(explicit_only, early, 1).is_ok());
}

/// A host with clients in two tables, some expired, capacities raised.
fn populated() -> (HostConfig, KmsHost) {
    let config = HostConfig {
        key_groups: vec![
            catalog::default_host_key_group(),
            group("Volume License for Office 2016"),
        ],
        ..windows_config()
    };
    let mut host = KmsHost::new(config.clone(), TODAY, 11).unwrap();
    for i in 0..8 {
        ask(&mut host, WS2019, cmid(i), 5, at(u64::from(i) * 5, 0));
    }
    ask(&mut host, WIN10, cmid(50), 25, at(36, 0));
    for i in 0..12 {
        ask(&mut host, OFFICE2016, cmid(100 + i), 5, at(40, 0));
    }
    ask(&mut host, WS2019, cmid(1), 5, at(40, 1));
    (config, host)
}

#[test]
fn test_state_round_trip() {
    let (config, mut host) = populated();
    let now = at(40, 2);
    let state = host.state();
    let bytes = encode_state(&state);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(
        text.contains("\"format\": \"kmsharness-host-state\""),
        "{text}"
    );
    assert!(text.contains("\"version\": 1"), "{text}");
    let decoded = decode_state(&bytes).unwrap();
    assert_eq!(decoded, state);
    let mut back = KmsHost::restore(config, decoded).unwrap();
    assert_eq!(back.state(), state);
    assert_eq!(back.hwid(), host.hwid());
    for app in APPS {
        assert_eq!(back.count(app, now), host.count(app, now), "{app:?}");
        assert_eq!(back.capacity(app), host.capacity(app), "{app:?}");
    }
    // Machines 0 and 2 are past their 30 days.
    assert_eq!(host.count(AppKind::Windows, now), 7);
    assert_eq!(host.count(AppKind::Office2013, now), 10);
    // Both go on identically: eviction order and expiry survive the trip.
    for step in 0..70u32 {
        let t = at(40, 3 + u64::from(step) * 40_000);
        let kms = if step % 3 == 0 { OFFICE2016 } else { WS2019 };
        let machine = cmid(step % 23);
        assert_eq!(
            ask(&mut back, kms, machine, 5, t),
            ask(&mut host, kms, machine, 5, t),
            "step {step}"
        );
    }
    assert_eq!(back.state(), host.state());
}

#[test]
fn test_restore_identity_rules() {
    let (config, host) = populated();
    let state = host.state();
    // Explicit values in the configuration win over saved ones.
    let office = group("Volume License for Office 2016");
    let explicit = Epid::generate(office, default_host_build(), 1040, TODAY, 3);
    let config2 = HostConfig {
        epids: vec![(office.name.into(), explicit)],
        hwid: Some([9; 8]),
        ..config.clone()
    };
    let back = KmsHost::restore(config2, state.clone()).unwrap();
    assert_eq!(back.epid_for(&OFFICE2016), Some(&explicit));
    assert_eq!(back.epid_for(&WS2019), host.epid_for(&WS2019));
    assert_eq!(back.hwid(), [9; 8]);
    // A key group the state has no ePID for, and none given.
    let ws2019 = group("Volume License for Windows Server 2019");
    let config3 = HostConfig {
        key_groups: vec![ws2019],
        ..config.clone()
    };
    assert_eq!(
        KmsHost::restore(config3, state.clone()).unwrap_err(),
        ConfigError::MissingEpid { name: ws2019.name }
    );
    // A saved ePID that contradicts its group.
    let mut bad = state.clone();
    bad.epids[0].epid.group_id = 206;
    assert!(matches!(
        KmsHost::restore(config.clone(), bad).unwrap_err(),
        ConfigError::EpidGroupMismatch { .. }
    ));
    // An inconsistent state.
    let mut bad = state;
    bad.tables[0].capacity = 3;
    assert!(matches!(
        KmsHost::restore(config, bad).unwrap_err(),
        ConfigError::State(StateError::OverCapacity { clients: 7, .. })
    ));
}

#[test]
fn test_decode_state_errors() {
    let (_, host) = populated();
    let good = encode_state(&host.state());
    let text = String::from_utf8(good.clone()).unwrap();

    assert_eq!(decode_state(b""), Err(StateError::Empty));
    assert_eq!(decode_state(b" \n"), Err(StateError::Empty));
    // Every torn write fails, most as truncated.
    let body = text.trim_end();
    for cut in 1..body.len() {
        let err = decode_state(&body.as_bytes()[..cut]).expect_err("prefix decoded");
        if cut > 1 && !body.is_char_boundary(cut) {
            continue;
        }
        assert!(
            matches!(
                err,
                StateError::Truncated { .. } | StateError::Syntax { .. }
            ),
            "cut {cut}: {err}"
        );
    }
    let half = decode_state(&good[..good.len() / 2]).unwrap_err();
    assert!(matches!(half, StateError::Truncated { .. }), "{half}");
    assert!(half.to_string().starts_with("host state file is truncated"));

    assert!(matches!(
        decode_state(b"hello"),
        Err(StateError::Syntax { .. })
    ));
    assert_eq!(decode_state(b"[1, 2]"), Err(StateError::NotAnObject));

    let replace = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        decode_state(text.replacen(from, to, 1).as_bytes()).unwrap_err()
    };
    let err = replace("kmsharness-host-state", "vlmcsd-client-list");
    assert_eq!(
        err.to_string(),
        "host state file has format \"vlmcsd-client-list\", expected \
         \"kmsharness-host-state\""
    );
    let err = replace("\"format\"", "\"fmt\"");
    assert_eq!(err, StateError::MissingHeader("format"));
    let err = replace("\"version\": 1", "\"version\": 2");
    assert_eq!(
        err.to_string(),
        "host state file has version 2, this build reads version 1"
    );
    let err = replace("\"version\": 1", "\"version\": \"1\"");
    assert!(
        matches!(err, StateError::UnsupportedVersion { .. }),
        "{err}"
    );

    // A bad GUID is named.
    let first = host.state().tables[0].clients[0].cmid.to_string();
    let err = replace(&first, "not-a-guid");
    assert!(matches!(err, StateError::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("invalid GUID \"not-a-guid\""),
        "{err}"
    );

    let err = replace("\"hwid\": \"", "\"hwid\": \"zz");
    assert!(err.to_string().contains("hardware ID"), "{err}");
    let err = replace("\"windows\"", "\"macos\"");
    assert!(err.to_string().contains("application \"macos\""), "{err}");
    let err = replace("\"capacity\"", "\"size\"");
    assert!(matches!(err, StateError::Invalid(_)), "{err}");
    let err = replace("\"epid\": \"0", "\"epid\": \"x");
    assert!(matches!(err, StateError::Invalid(_)), "{err}");

    // Consistency.
    let second = host.state().tables[0].clients[1].cmid.to_string();
    let err = replace(&second, &first);
    assert!(matches!(err, StateError::DuplicateClient { .. }), "{err}");
    let err = replace("\"capacity\": 50", "\"capacity\": 2");
    assert_eq!(
        err.to_string(),
        "Windows table lists 7 clients but holds at most 2"
    );
    let err = replace("\"capacity\": 50", "\"capacity\": 2001");
    assert!(matches!(err, StateError::CapacityTooLarge { .. }), "{err}");
    let err = replace("\"office2013\"", "\"windows\"");
    assert!(matches!(err, StateError::DuplicateTable { .. }), "{err}");
    let err = replace(
        "Volume License for Office 2016",
        "Volume License for Nothing",
    );
    assert!(matches!(err, StateError::UnknownKeyGroup { .. }), "{err}");
}

/// A plain model of one table: a list scanned in full on every step.
#[derive(Default)]
struct Model {
    capacity: u32,
    entries: Vec<(Guid, FileTime, u64)>,
}

impl Model {
    fn ask(&mut self, machine: Guid, n: u32, now: FileTime, seq: u64) -> u32 {
        self.capacity = self.capacity.max((2 * n).max(1));
        let lifetime = DEFAULT_CLIENT_LIFETIME_SECS * SEC;
        self.entries
            .retain(|e| now.0.saturating_sub(e.1.0) <= lifetime);
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == machine) {
            e.1 = now;
            e.2 = seq;
        } else {
            if self.entries.len() >= self.capacity as usize {
                let oldest = (0..self.entries.len())
                    .min_by_key(|&i| (self.entries[i].1, self.entries[i].2))
                    .unwrap();
                self.entries.remove(oldest);
            }
            self.entries.push((machine, now, seq));
        }
        self.entries.len() as u32
    }
}

#[test]
fn test_matches_a_plain_model() {
    // A fixed pseudo-random walk: machines, policies, time steps of up to 4 days, and now
    // and then the host clock stepping back a day.
    let mut rng = 0x1234_5678_9abc_def0_u64;
    let mut next = || splitmix64(&mut rng);
    let config = HostConfig {
        max_clock_skew_secs: None,
        ..windows_config()
    };
    let mut host = KmsHost::new(config, TODAY, 3).unwrap();
    let mut model = Model::default();
    let mut now = T0;
    for step in 0..20_000u64 {
        let r = next();
        now = if r % 17 == 0 {
            FileTime(now.0 - DAY * SEC)
        } else {
            FileTime(now.0 + (r >> 8) % (4 * DAY * SEC))
        };
        let machine = cmid(((r >> 40) % 120) as u32);
        let (kms, n) = match (r >> 32) % 50 {
            0 => (WIN10, 25),
            1 => (WS2019, 0),
            _ => (WS2019, 5),
        };
        let got = ask(&mut host, kms, machine, n, now);
        let want = model.ask(machine, n, now, step + 1);
        assert_eq!(got, want, "step {step}");
        assert_eq!(host.count(AppKind::Windows, now), want, "step {step}");
    }
    let mut expected = model.entries.clone();
    expected.sort_by_key(|e| (e.1, e.2));
    let listed: Vec<Guid> = host.state().tables[0]
        .clients
        .iter()
        .map(|c| c.cmid)
        .collect();
    assert_eq!(listed, expected.iter().map(|e| e.0).collect::<Vec<_>>());
}

#[test]
fn test_large_table() {
    let mut host = default_host();
    let n = MAX_REQUIRED_CLIENTS;
    for i in 0..2 * n + 500 {
        let count = ask(&mut host, WS2019, cmid(i), n, at(0, u64::from(i)));
        assert_eq!(count, (i + 1).min(2 * n));
    }
    assert_eq!(host.count(AppKind::Windows, at(0, 5000)), MAX_CAPACITY);
    assert!(!listed(&host, AppKind::Windows, cmid(499)));
    assert!(listed(&host, AppKind::Windows, cmid(500)));
}
