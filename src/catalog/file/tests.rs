//! Catalog files: the table's own shape read back, py-kms's database shape read as it is, and
//! malformed entries refused with their names.

use super::*;
use crate::catalog::{self, DEFAULT_HOST_KEY_GROUP};

const WIN10_KMS_ID: &str = "58e2134f-8e11-4d17-9cb2-91069c151148";
const WIN10_ENTERPRISE: &str = "73111121-5638-40f6-bc11-f1d7b0d64300";
const NEW_KMS_ID: &str = "00000000-0000-4000-8000-0000000000aa";
const NEW_SKU: &str = "00000000-0000-4000-8000-0000000000bb";

fn parse_ok(text: &str) -> Extension {
    parse(text, "--catalog test").unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> String {
    parse(text, "--catalog test").unwrap_err().to_string()
}

#[test]
fn test_toml_adds_a_product_its_group_and_its_activation() {
    let ext = parse_ok(&format!(
        r#"
format = "kmsharness-catalog/1"
[[skus]]
name = "Windows 12 Enterprise"
id = "{NEW_SKU}"
kms_id = "{NEW_KMS_ID}"
kms_name = "Windows 12 (Volume)"
application_id = "55c92734-d682-4d71-983e-d6ec3f16059f"
threshold = 25
activated_by = ["{DEFAULT_HOST_KEY_GROUP}"]
source = "lab notes"
"#
    ));
    let sku = ext.sku(&NEW_SKU.parse().unwrap()).unwrap();
    assert_eq!(sku.name, "Windows 12 Enterprise");
    assert_eq!(sku.class, ProductClass::ClientOs);
    assert_eq!(sku.source, "lab notes");
    let item = ext.kms_item(&NEW_KMS_ID.parse().unwrap()).unwrap();
    assert_eq!((item.app, item.protocol), (AppKind::Windows, 6));
    assert_eq!(item.source, "--catalog test");
    // The built-in group is copied into the file's entries with the new KMS ID added.
    let group = ext.host_key_group(DEFAULT_HOST_KEY_GROUP).unwrap();
    assert!(group.activates_kms_id(&item.id));
    let builtin = builtin_host_key_group(DEFAULT_HOST_KEY_GROUP).unwrap();
    for id in builtin.activates {
        assert!(group.activates_kms_id(id), "{id}");
    }
    assert_eq!(group.activates.len(), builtin.activates.len() + 1);
}

#[test]
fn test_json_overrides_a_builtin_sku_by_id() {
    let ext = parse_ok(&format!(
        r#"{{"skus": [{{"name": "Renamed Enterprise", "id": "{WIN10_ENTERPRISE}",
            "kms_id": "{WIN10_KMS_ID}"}}]}}"#
    ));
    let sku = ext.sku(&WIN10_ENTERPRISE.parse().unwrap()).unwrap();
    assert_eq!(sku.name, "Renamed Enterprise");
    assert_eq!(sku.class, ProductClass::ClientOs);
    assert!(ext.kms_items.is_empty(), "a known group is not copied");
}

#[test]
fn test_a_host_key_group_by_product_names_and_ids() {
    let ext = parse_ok(&format!(
        r#"
[[host_key_groups]]
name = "Lab key"
application = "Windows"
epid_group_id = 206
key_ids = [1, 2]
activates = ["Windows Server 2019", "{WIN10_KMS_ID}"]
"#
    ));
    let g = ext.host_key_group("lab key").unwrap();
    assert_eq!(g.activates.len(), 2);
    assert!(g.matches_epid_key(206, 2) && !g.matches_epid_key(206, 3));
}

#[test]
fn test_malformed_entries_are_named() {
    let unknown_group = parse_err(&format!(
        r#"[[skus]]
name = "X"
id = "{NEW_SKU}"
kms_id = "{NEW_KMS_ID}""#
    ));
    assert!(
        unknown_group.starts_with("skus[0] (\"X\"): kms_id"),
        "{unknown_group}"
    );
    assert!(unknown_group.contains("kms_name"), "{unknown_group}");
    let bad_threshold = parse_err(&format!(
        r#"[[skus]]
name = "X"
id = "{NEW_SKU}"
kms_id = "{NEW_KMS_ID}"
kms_name = "Y"
application = "Windows"
threshold = 7"#
    ));
    assert!(bad_threshold.contains("threshold 7"), "{bad_threshold}");
    let bad_group = parse_err(
        r#"[[host_key_groups]]
name = "G"
application = "Windows"
epid_group_id = 1
key_ids = [9, 1]"#,
    );
    assert!(
        bad_group.starts_with("host_key_groups[0] (\"G\")"),
        "{bad_group}"
    );
    let unknown_product = parse_err(
        r#"[[host_key_groups]]
name = "G"
application = "Windows"
epid_group_id = 1
key_ids = [1, 9]
activates = ["Windows 95"]"#,
    );
    assert!(
        unknown_product.contains("\"Windows 95\""),
        "{unknown_product}"
    );
    assert!(parse_err(r#"format = "kmsharness-catalog/2""#).contains("kmsharness-catalog/1"));
    assert!(parse_err("skus = 3").starts_with("TOML"));
    assert!(parse_err(r#"{"skuz": []}"#).starts_with("JSON"));
    assert!(parse_err("[[skus]]\nname = \"X\"\nid = \"nope\"\nkms_id = \"nope\"").contains("GUID"));
}

/// A database in py-kms's shape, written for this test: one application, one product group
/// with one edition, a CSVLK that activates it given before the group, and a pre-release CSVLK
/// without key IDs.
const PYKMS_SHAPE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<KmsData Version="2.0" Author="test">
  <WinBuilds><WinBuild BuildNumber="26100" PlatformId="3612" /></WinBuilds>
  <CsvlkItems>
    <CsvlkItem DisplayName="Test Host Key" GroupId="4999" MinKeyId="10" MaxKeyId="20" Id="00000000-0000-4000-8000-0000000000cc">
      <Activate KmsItem="00000000-0000-4000-8000-0000000000aa" />
    </CsvlkItem>
    <CsvlkItem DisplayName="Test Pre-Release" Id="00000000-0000-4000-8000-0000000000dd">
      <Activate KmsItem="00000000-0000-4000-8000-0000000000aa" />
    </CsvlkItem>
  </CsvlkItems>
  <AppItems>
    <AppItem DisplayName="Office" Id="0ff1ce15-a989-479d-af46-f275c6370663" MinActiveClients="10">
      <KmsItem DisplayName="Office Test &amp; Co" Id="00000000-0000-4000-8000-0000000000aa" DefaultKmsprotocol="5.0" NCountPolicy="5">
        <SkuItem DisplayName="Office Test Pro" Id="00000000-0000-4000-8000-0000000000bb" Gvlk="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE" />
      </KmsItem>
    </AppItem>
  </AppItems>
</KmsData>"#;

#[test]
fn test_pykms_shape_read_as_it_is() {
    let ext = parse_ok(PYKMS_SHAPE);
    let item = ext.kms_item(&NEW_KMS_ID.parse().unwrap()).unwrap();
    assert_eq!(item.name, "Office Test & Co");
    assert_eq!(
        (item.app, item.class, item.protocol),
        (AppKind::Office2013, ProductClass::Office, 5)
    );
    let sku = ext.sku(&NEW_SKU.parse().unwrap()).unwrap();
    assert_eq!((sku.name, sku.kms), ("Office Test Pro", item.id));
    let key = ext.host_key_group("Test Host Key").unwrap();
    assert_eq!(
        (key.app, key.epid_group_id, key.key_ids.clone()),
        (AppKind::Office2013, 4999, 10..=20)
    );
    assert!(key.activates_kms_id(&item.id));
    let pre = ext.host_key_group("Test Pre-Release").unwrap();
    assert_eq!(pre.epid_group_id, EPID_GROUP_206);
    assert!(pre.source.contains("no GroupId"), "{}", pre.source);
}

#[test]
fn test_pykms_shape_faults_are_named() {
    let no_root = parse_err("<Other/>");
    assert!(no_root.contains("KmsData"), "{no_root}");
    // A CSVLK may name a KMS ID the file lists nowhere, as py-kms's own file does.
    let dangling = PYKMS_SHAPE.replace(
        r#"<Activate KmsItem="00000000-0000-4000-8000-0000000000aa" />
    </CsvlkItem>
    <CsvlkItem DisplayName="Test Pre"#,
        r#"<Activate KmsItem="00000000-0000-4000-8000-0000000000ee" />
    </CsvlkItem>
    <CsvlkItem DisplayName="Test Pre"#,
    );
    let ext = parse_ok(&dangling);
    let key = ext.host_key_group("Test Host Key").unwrap();
    assert!(key.activates_kms_id(&"00000000-0000-4000-8000-0000000000ee".parse().unwrap()));
    let no_group = PYKMS_SHAPE.replace(r#"GroupId="4999""#, r#"GroupId="""#);
    assert_eq!(
        parse_ok(&no_group)
            .host_key_group("Test Host Key")
            .unwrap()
            .epid_group_id,
        EPID_GROUP_206
    );
    let bad_app = PYKMS_SHAPE.replace("0ff1ce15-a989", "0ff1ce16-a989");
    assert!(parse_err(&bad_app).starts_with("AppItem at byte"));
    let bad_protocol =
        PYKMS_SHAPE.replace(r#"DefaultKmsprotocol="5.0""#, r#"DefaultKmsProtocol="7.1""#);
    assert!(parse_err(&bad_protocol).contains("7.1"));
    let truncated = &PYKMS_SHAPE[..PYKMS_SHAPE.len() / 2];
    // A cut file either fails to parse or lacks what the cut removed; it never panics.
    let _ = parse(truncated, "t");
}

#[test]
fn test_arbitrary_text_never_panics() {
    for text in [
        "",
        "<",
        "<KmsData><AppItem/>",
        "{",
        "[[skus]]",
        "\u{feff}<KmsData/>",
        "<KmsData><KmsItem Id=\"x\"/></KmsData>",
    ] {
        let _ = parse(text, "t");
    }
    assert!(
        catalog::extension().is_none(),
        "tests never install a catalog"
    );
}

proptest::proptest! {
    #[test]
    fn prop_pykms_mutations_never_panic(cut in 0usize..2000, byte in proptest::num::u8::ANY) {
        let mut bytes = PYKMS_SHAPE.as_bytes().to_vec();
        let at = cut % bytes.len();
        bytes[at] = byte;
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text, "t");
    }
}
