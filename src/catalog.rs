//! Product catalog: the KMS applications, product groups (KMS IDs), editions (SKU IDs) and host
//! key groups (CSVLKs) as static tables, so no other module spells out a product GUID.
//!
//! How the pieces relate:
//!
//! ```text
//! Application (3)  <--app--  KmsItem (one per product group)  <--kms--  Sku (one per edition)
//!                                      ^
//!                                      | activates (KMS IDs)
//!                             HostKeyGroup (a CSVLK family installed on a KMS host)
//! ```
//!
//! Sources. Which host key group activates which products follows the Microsoft tables in the
//! shared docs (kms-activation-planning.md, windows-server-2016-activation.md,
//! windows-server-2019-activation.md) literally; each [`HostKeyGroup::source`] names its table.
//! GUIDs, product names and protocol versions are facts observed in the vlmcsd product data
//! (`src/kmsdata-full.c`) and the py-kms database (`py-kms/KmsDataBase.xml`). ePID group IDs and
//! key ID ranges come from vlmcsd's CSVLK records where it has one, otherwise from py-kms.
//!
//! Scope: volume (KMS client) editions only. Retail and pre-release product groups that the peers
//! also list are left out, since a Microsoft host never activates them. The editions of Office
//! LTSC 2024 and Windows Server 2025 are left out too, as is Office LTSC 2024's host key group:
//! vlmcsd predates them, and the KMS IDs py-kms gives them are name-based (version 5) UUIDs,
//! Office's being the one for an empty URL, which py-kms's own notes describe as made up; no
//! other source names the real ones, and an edition cannot be listed without its KMS ID. (Their
//! SKU IDs are known, but even those disagree: py-kms and another public tool swap Project Pro
//! 2024 and Visio LTSC Pro 2024.) The "Volume License for Windows Server 2025" group is listed,
//! activating what Microsoft's table says except Windows Server 2025 itself.
//!
//! Every [`Sku`], [`KmsItem`] and [`HostKeyGroup`] names its own source; `activate --list
//! --json` prints them. "unverified: only py-kms" marks what no second source confirms.
//!
//! At run time a `--catalog` file ([`file`]) extends or overrides these tables: every lookup
//! below goes through [`skus`], [`kms_items`], [`host_key_groups`] and the ID lookups, which
//! consult the installed file's entries first. The products left out above are in the
//! repository's `vectors/catalog/unverified-2024-2025.toml`, with their evidence.

pub mod file;

use core::ops::RangeInclusive;
use std::sync::OnceLock;

use serde::Serialize;

pub use self::file::{CatalogError, Extension};
use crate::wire::Guid;

/// Activation threshold of client operating systems: "Clients will activate if the count is 25
/// or higher" (kms-activation-planning.md, Operational requirements).
const CLIENT_OS_THRESHOLD: u32 = 25;
/// Activation threshold of server operating systems: "Servers ... will activate if the count is
/// five or greater" (kms-activation-planning.md).
const SERVER_OS_THRESHOLD: u32 = 5;
/// Activation threshold of Office: "volume editions of Microsoft Office products will activate
/// if the count is five or greater" (kms-activation-planning.md).
const OFFICE_THRESHOLD: u32 = 5;
/// "The KMS host only caches twice the number of client IDs that are required to meet the
/// activation threshold" (activate-clients-running-windows.md, Activation count cache).
const CACHE_FACTOR: u32 = 2;

/// Request major version of Windows Vista/7, Server 2008/2008 R2 and Office 2010 clients
/// (observed in vlmcsd kmsdata: ProtocolVersion of those KMS items).
const PROTOCOL_V4: u8 = 4;
/// Request major version of Windows 8, Server 2012 and Office 2013 clients (vlmcsd kmsdata).
const PROTOCOL_V5: u8 = 5;
/// Request major version of Windows 8.1, Server 2012 R2, Office 2016 and everything later
/// (vlmcsd kmsdata; py-kms DefaultKmsProtocol for the products vlmcsd lacks).
const PROTOCOL_V6: u8 = 6;

/// ePID key group shared by most Microsoft CSVLKs since Windows 8 (vlmcsd CsvlkData GroupId).
const EPID_GROUP_206: u32 = 206;

/// The host key group a reference host uses unless told otherwise.
pub const DEFAULT_HOST_KEY_GROUP: &str = "Volume License for Windows Server 2022";

// ---------------------------------------------------------------------------------------------
// Applications

/// The three activation applications a KMS host counts separately. Serialized lower-case
/// (`windows`, `office2010`, `office2013`), as the host state file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// Windows client and server.
    Windows,
    /// Office 2010 (Office 14).
    Office2010,
    /// Office 2013 and later: 2013, 2016, 2019 and LTSC 2021 (and newer) share one application ID.
    Office2013,
}

/// An activation application: the first GUID of a KMS request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Application {
    /// Which application this is.
    pub kind: AppKind,
    /// Display name.
    pub name: &'static str,
    /// Application ID sent by clients.
    pub id: Guid,
}

// Application IDs observed in vlmcsd kmsdata (AppItems) and py-kms KmsDataBase.xml (AppItem Id).
const APP_WINDOWS: Application = Application {
    kind: AppKind::Windows,
    name: "Windows",
    id: Guid::from_str_const("55c92734-d682-4d71-983e-d6ec3f16059f"),
};
const APP_OFFICE2010: Application = Application {
    kind: AppKind::Office2010,
    name: "Office 2010",
    id: Guid::from_str_const("59a52881-a989-479d-af46-f275c6370663"),
};
const APP_OFFICE2013: Application = Application {
    kind: AppKind::Office2013,
    name: "Office 2013 and later",
    id: Guid::from_str_const("0ff1ce15-a989-479d-af46-f275c6370663"),
};

/// Every activation application.
pub static APPLICATIONS: &[Application] = &[APP_WINDOWS, APP_OFFICE2010, APP_OFFICE2013];

impl AppKind {
    /// The application's table entry.
    pub const fn application(self) -> &'static Application {
        match self {
            AppKind::Windows => &APP_WINDOWS,
            AppKind::Office2010 => &APP_OFFICE2010,
            AppKind::Office2013 => &APP_OFFICE2013,
        }
    }
}

impl Application {
    /// The product groups (KMS IDs) that belong to this application.
    pub fn kms_items(&self) -> impl Iterator<Item = &'static KmsItem> + use<> {
        let kind = self.kind;
        kms_items().filter(move |k| k.app == kind)
    }
}

// ---------------------------------------------------------------------------------------------
// Product classes

/// Which activation threshold a product counts against. Serialized `client_os`, `server_os`,
/// `office`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductClass {
    /// Windows client editions.
    ClientOs,
    /// Windows Server editions.
    ServerOs,
    /// Office volume editions.
    Office,
}

impl ProductClass {
    /// The count a client of this class must see before it activates.
    pub const fn threshold(self) -> u32 {
        match self {
            ProductClass::ClientOs => CLIENT_OS_THRESHOLD,
            ProductClass::ServerOs => SERVER_OS_THRESHOLD,
            ProductClass::Office => OFFICE_THRESHOLD,
        }
    }

    /// The class as output names it.
    pub const fn name(self) -> &'static str {
        match self {
            ProductClass::ClientOs => "client OS",
            ProductClass::ServerOs => "server OS",
            ProductClass::Office => "Office",
        }
    }

    /// How many client machine IDs a host keeps for this class.
    pub const fn cache_size(self) -> u32 {
        self.threshold() * CACHE_FACTOR
    }
}

// ---------------------------------------------------------------------------------------------
// Product groups (KMS counted IDs)

/// A product group: the KMS ID ("KMS counted ID") that clients of several editions share, and
/// what a host key must list to activate them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KmsItem {
    /// Display name.
    pub name: &'static str,
    /// KMS ID sent by clients.
    pub id: Guid,
    /// Application the group belongs to.
    pub app: AppKind,
    /// Threshold class of the group's editions.
    pub class: ProductClass,
    /// Major KMS protocol version the group's clients send (4, 5 or 6).
    pub protocol: u8,
    /// Where the KMS ID comes from.
    pub source: &'static str,
    /// Where the SKU IDs of the group's editions come from, unless an edition names its own.
    pub skus_source: &'static str,
}

/// KMS ID and protocol observed in both peers' product data.
const SRC_KMS_PEERS: &str = "vlmcsd kmsdata-full.c KmsItem and py-kms KmsDataBase.xml KmsItem";
/// SKU IDs observed in both peers' product data.
const SRC_SKU_PEERS: &str = "vlmcsd kmsdata-full.c SkuItem and py-kms KmsDataBase.xml SkuItem";
/// SKU IDs that only py-kms lists, for products vlmcsd predates.
const SRC_SKU_PYKMS: &str = "py-kms KmsDataBase.xml SkuItem (vlmcsd predates the product); \
                             GVLK on Microsoft: KMS client activation and product keys";

const fn kms(
    name: &'static str,
    id: &str,
    app: AppKind,
    class: ProductClass,
    protocol: u8,
) -> KmsItem {
    kms_from(name, id, app, class, protocol, SRC_KMS_PEERS, SRC_SKU_PEERS)
}

const fn kms_from(
    name: &'static str,
    id: &str,
    app: AppKind,
    class: ProductClass,
    protocol: u8,
    source: &'static str,
    skus_source: &'static str,
) -> KmsItem {
    KmsItem {
        name,
        id: Guid::from_str_const(id),
        app,
        class,
        protocol,
        source,
        skus_source,
    }
}

// KMS IDs and protocol versions observed in vlmcsd kmsdata (KmsItems); Windows Server 2022 and
// Office LTSC 2021 only appear in py-kms KmsDataBase.xml.
const K_WS2022: KmsItem = kms_from(
    "Windows Server 2022",
    "b74263e4-0f92-46c6-bcf8-c11d5efe2959",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V6,
    "py-kms KmsDataBase.xml KmsItem (vlmcsd predates it)",
    SRC_SKU_PYKMS,
);
const K_WS2019: KmsItem = kms(
    "Windows Server 2019",
    "8449b1fb-f0ea-497a-99ab-66ca96e9a0f5",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V6,
);
const K_WS2016: KmsItem = kms(
    "Windows Server 2016",
    "6e9fc069-257d-4bc4-b4a7-750514d32743",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V6,
);
const K_WS2012R2: KmsItem = kms(
    "Windows Server 2012 R2",
    "8456efd3-0c04-4089-8740-5b7238535a65",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V6,
);
const K_WS2012: KmsItem = kms(
    "Windows Server 2012",
    "8665cb71-468c-4aa3-a337-cb9bc9d5eaac",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V5,
);
const K_WS2008R2_A: KmsItem = kms(
    "Windows Server 2008 R2 A (Web and HPC)",
    "0fc6ccaf-ff0e-4fae-9d08-4370785bf7ed",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V4,
);
const K_WS2008R2_B: KmsItem = kms(
    "Windows Server 2008 R2 B (Standard and Enterprise)",
    "ca87f5b6-cd46-40c0-b06d-8ecd57a4373f",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V4,
);
const K_WS2008R2_C: KmsItem = kms(
    "Windows Server 2008 R2 C (Datacenter)",
    "b2ca2689-a9a8-42d7-938d-cf8e9f201958",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V4,
);
const K_WS2008_A: KmsItem = kms(
    "Windows Server 2008 A (Web and HPC)",
    "33e156e4-b76f-4a52-9f91-f641dd95ac48",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V4,
);
const K_WS2008_B: KmsItem = kms(
    "Windows Server 2008 B (Standard and Enterprise)",
    "8fe53387-3087-4447-8985-f75132215ac9",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V4,
);
const K_WS2008_C: KmsItem = kms(
    "Windows Server 2008 C (Datacenter)",
    "8a21fdf3-cbc5-44eb-83f3-fe284e6680a7",
    AppKind::Windows,
    ProductClass::ServerOs,
    PROTOCOL_V4,
);
// Windows 11 volume editions send the same KMS ID as Windows 10 (py-kms lists them as
// "Windows 10/11" editions of this group).
const K_WIN10: KmsItem = kms(
    "Windows 10/11 (Volume)",
    "58e2134f-8e11-4d17-9cb2-91069c151148",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V6,
);
const K_WIN10_2016: KmsItem = kms(
    "Windows 10 2016 (Volume)",
    "969fe3c0-a3ec-491a-9f25-423605deb365",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V6,
);
const K_WIN10_2019: KmsItem = kms(
    "Windows 10/11 LTSC 2019/2021/2024 (Volume)",
    "11b15659-e603-4cf1-9c1f-f0ec01b81888",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V6,
);
const K_WIN10_GOV: KmsItem = kms(
    "Windows 10/11 China Government",
    "7ba0bf23-d0f5-4072-91d9-d55af5a481b6",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V6,
);
const K_WIN81: KmsItem = kms(
    "Windows 8.1 (Volume)",
    "cb8fc780-2c05-495a-9710-85afffc904d7",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V6,
);
const K_WIN8: KmsItem = kms(
    "Windows 8 (Volume)",
    "3c40b358-5948-45af-923b-53d21fcc7e79",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V5,
);
const K_WIN7: KmsItem = kms(
    "Windows 7",
    "7fde5219-fbfa-484a-82c9-34d1ad53e856",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V4,
);
const K_VISTA: KmsItem = kms(
    "Windows Vista",
    "212a64dc-43b1-4d3d-a30c-2fc69d2095c6",
    AppKind::Windows,
    ProductClass::ClientOs,
    PROTOCOL_V4,
);
const K_OFFICE2010: KmsItem = kms(
    "Office 2010",
    "e85af946-2e25-47b7-83e1-bebcebeac611",
    AppKind::Office2010,
    ProductClass::Office,
    PROTOCOL_V4,
);
const K_OFFICE2013: KmsItem = kms(
    "Office 2013",
    "e6a6f1bf-9d40-40c3-aa9f-c77ba21578c0",
    AppKind::Office2013,
    ProductClass::Office,
    PROTOCOL_V5,
);
const K_OFFICE2016: KmsItem = kms(
    "Office 2016",
    "85b5f61b-320b-4be3-814a-b76b2bfafc82",
    AppKind::Office2013,
    ProductClass::Office,
    PROTOCOL_V6,
);
const K_OFFICE2019: KmsItem = kms(
    "Office 2019",
    "617d9eb1-ef36-4f82-86e0-a65ae07b96c6",
    AppKind::Office2013,
    ProductClass::Office,
    PROTOCOL_V6,
);
const K_OFFICE2021: KmsItem = kms_from(
    "Office LTSC 2021",
    "86d50b16-4808-41af-b83b-b338274318b2",
    AppKind::Office2013,
    ProductClass::Office,
    PROTOCOL_V6,
    "py-kms KmsDataBase.xml KmsItem (vlmcsd predates it)",
    "py-kms KmsDataBase.xml SkuItem (vlmcsd predates the product); GVLK on Microsoft: \
     Office: Volume activation, GVLKs for KMS and Active Directory-based activation",
);

/// Every product group in the catalog.
pub static KMS_ITEMS: &[KmsItem] = &[
    K_WS2022,
    K_WS2019,
    K_WS2016,
    K_WS2012R2,
    K_WS2012,
    K_WS2008R2_A,
    K_WS2008R2_B,
    K_WS2008R2_C,
    K_WS2008_A,
    K_WS2008_B,
    K_WS2008_C,
    K_WIN10,
    K_WIN10_2016,
    K_WIN10_2019,
    K_WIN10_GOV,
    K_WIN81,
    K_WIN8,
    K_WIN7,
    K_VISTA,
    K_OFFICE2010,
    K_OFFICE2013,
    K_OFFICE2016,
    K_OFFICE2019,
    K_OFFICE2021,
];

impl KmsItem {
    /// The application this group belongs to.
    pub const fn application(&self) -> &'static Application {
        self.app.application()
    }

    /// The editions in this group.
    pub fn skus(&self) -> impl Iterator<Item = &'static Sku> + use<> {
        let id = self.id;
        skus().filter(move |s| s.kms == id)
    }

    /// The host key groups that activate this product group.
    pub fn activated_by(&self) -> impl Iterator<Item = &'static HostKeyGroup> + use<> {
        let id = self.id;
        host_key_groups().filter(move |g| g.activates_kms_id(&id))
    }
}

// ---------------------------------------------------------------------------------------------
// Editions (SKU / Activation IDs)

/// An edition: the SKU ID ("Activation ID") a client sends, and the product group it counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sku {
    /// Display name.
    pub name: &'static str,
    /// SKU ID sent by clients.
    pub id: Guid,
    /// KMS ID of the edition's product group.
    pub kms: Guid,
    /// Threshold class.
    pub class: ProductClass,
    /// Where the SKU ID (and its product group) comes from.
    pub source: &'static str,
}

/// Builds an edition of `group`, taking its KMS ID and class from the group so they cannot
/// disagree, and its source from the group's [`KmsItem::skus_source`].
const fn edition(group: &KmsItem, name: &'static str, id: &str) -> Sku {
    edition_from(group, name, id, group.skus_source)
}

/// [`edition`] with a source of its own.
const fn edition_from(group: &KmsItem, name: &'static str, id: &str, source: &'static str) -> Sku {
    Sku {
        name,
        id: Guid::from_str_const(id),
        kms: group.id,
        class: group.class,
        source,
    }
}

impl Sku {
    /// The edition's product group.
    pub fn kms_item(&self) -> Option<&'static KmsItem> {
        kms_item(&self.kms)
    }

    /// The edition's application.
    pub fn application(&self) -> Option<&'static Application> {
        self.kms_item().map(KmsItem::application)
    }

    /// Whether the edition belongs to this application.
    pub fn app_is(&self, kind: AppKind) -> bool {
        self.kms_item().is_some_and(|k| k.app == kind)
    }

    /// Major KMS protocol version clients of this edition send.
    pub fn protocol(&self) -> Option<u8> {
        self.kms_item().map(|k| k.protocol)
    }

    /// The host key groups that activate this edition.
    pub fn activated_by(&self) -> impl Iterator<Item = &'static HostKeyGroup> + use<> {
        let kms = self.kms;
        host_key_groups().filter(move |g| g.activates_kms_id(&kms))
    }
}

/// Enterprise LTSC 2019/2021/2024.
const SRC_LTSC: &str = "GVLK M7XTQ-FN8P6-TTKYV-9D4CC-J462D for LTSC 2019, LTSC 2021 and LTSC 2024 on \
                        Microsoft: KMS client activation and product keys; SKU ID from vlmcsd \
                        kmsdata-full.c and py-kms KmsDataBase.xml (\"LTSC 2019/2021\")";
/// Enterprise multi-session: the peers disagree on its product group.
const SRC_MULTI_SESSION: &str = "GVLK on Microsoft: KMS client activation and product keys; SKU ID \
                                 from vlmcsd kmsdata-full.c (\"Enterprise for Virtual Desktops\") \
                                 and py-kms; KMS ID from vlmcsd (py-kms puts it in a \
                                 \"ServerRdsh\" group cbdcb1ba-e093-4c81-a463-10775291fdf9 only an \
                                 Azure key activates)";
/// Editions only py-kms lists, whose GVLK Microsoft does not publish either.
const SRC_ONLY_PYKMS: &str = "unverified: only py-kms KmsDataBase.xml (SKU ID, product group and \
                              GVLK; no Microsoft page lists the key)";
/// Editions only py-kms lists, with nothing to confirm their SKU ID or product group.
const SRC_UNVERIFIED_PYKMS: &str = "unverified: only py-kms KmsDataBase.xml (SKU ID and product \
                                    group); GVLK on Microsoft: KMS client activation and product \
                                    keys";

/// Every edition in the catalog. SKU IDs and names observed in vlmcsd kmsdata (SkuItems) and
/// py-kms KmsDataBase.xml (SkuItem); the two agree on every edition's product group where both
/// list it. Windows Server 2022, Server 2012 Essentials and Office LTSC 2021 come from py-kms
/// alone.
#[rustfmt::skip]
pub static SKUS: &[Sku] = &[
    // Windows Server 2022
    edition(&K_WS2022, "Windows Server 2022 Azure Core", "8c8f0ad3-9a43-4e05-b840-93b8d1475cbc"),
    edition(&K_WS2022, "Windows Server 2022 Datacenter Azure Edition", "19b5e0fb-4431-46bc-bac1-2f1873e4ae73"),
    edition(&K_WS2022, "Windows Server 2022 Datacenter", "ef6cfc9f-8c5d-44ac-9aad-de6a2ea0ae03"),
    edition(&K_WS2022, "Windows Server 2022 Standard", "9bd77860-9b31-4b7b-96ad-2564017315bf"),
    edition(&K_WS2022, "Windows Server 2022 Datacenter (Semi-Annual Channel)", "39e69c41-42b4-4a0a-abad-8e3c10a797cc"),
    edition(&K_WS2022, "Windows Server 2022 Standard (Semi-Annual Channel)", "f5e9429c-f50b-4b98-b15c-ef92eb5cff39"),
    // Windows Server 2019
    edition(&K_WS2019, "Windows Server 2019 Azure Core", "a99cc1f0-7719-4306-9645-294102fbff95"),
    edition(&K_WS2019, "Windows Server 2019 Essentials", "034d3cbb-5d4b-4245-b3f8-f84571314078"),
    edition(&K_WS2019, "Windows Server 2019 Datacenter", "34e1ae55-27f8-4950-8877-7a03be5fb181"),
    edition(&K_WS2019, "Windows Server 2019 Standard", "de32eafd-aaee-4662-9444-c1befb41bde2"),
    edition(&K_WS2019, "Windows Server 2019 ARM64", "8de8eb62-bbe0-40ac-ac17-f75595071ea3"),
    edition(&K_WS2019, "Windows Server 2019 Datacenter (Semi-Annual Channel)", "90c362e5-0da1-4bfd-b53b-b87d309ade43"),
    edition(&K_WS2019, "Windows Server 2019 Standard (Semi-Annual Channel)", "73e3957c-fc0c-400d-9184-5f7b6f2eb409"),
    // Windows Server 2016
    edition(&K_WS2016, "Windows Server 2016 Azure Core", "3dbf341b-5f6c-4fa7-b936-699dce9e263f"),
    edition(&K_WS2016, "Windows Server 2016 Essentials", "2b5a1b0f-a5ab-4c54-ac2f-a6d94824a283"),
    edition(&K_WS2016, "Windows Server 2016 Datacenter", "21c56779-b449-4d20-adfc-eece0e1ad74b"),
    edition(&K_WS2016, "Windows Server 2016 Standard", "8c1c5410-9f39-4805-8c9d-63a07706358f"),
    edition(&K_WS2016, "Windows Server 2016 ARM64", "43d9af6e-5e86-4be8-a797-d072a046896c"),
    edition(&K_WS2016, "Windows Server 2016 Datacenter (Semi-Annual Channel)", "e49c08e7-da82-42f8-bde2-b570fbcae76c"),
    edition(&K_WS2016, "Windows Server 2016 Standard (Semi-Annual Channel)", "61c5ef22-f14f-4553-a824-c4b31e84b100"),
    edition(&K_WS2016, "Windows Server 2016 Cloud Storage", "7b4433f4-b1e7-4788-895a-c45378d38253"),
    // Windows Server 2012 R2
    edition(&K_WS2012R2, "Windows Server 2012 R2 Essentials", "21db6ba4-9a7b-4a14-9e29-64a60c59301d"),
    edition(&K_WS2012R2, "Windows Server 2012 R2 Datacenter", "00091344-1ea4-4f37-b789-01750ba6988c"),
    edition(&K_WS2012R2, "Windows Server 2012 R2 Standard", "b3ca044e-a358-4d68-9883-aaa2941aca99"),
    edition(&K_WS2012R2, "Windows Server 2012 R2 Cloud Storage", "b743a2be-68d4-4dd3-af32-92425b7bb623"),
    // Windows Server 2012
    edition_from(&K_WS2012, "Windows Server 2012 Essentials", "8f365ba6-c1b9-4223-98fc-282a0756a3ed", "py-kms KmsDataBase.xml SkuItem only"),
    edition(&K_WS2012, "Windows Server 2012 Datacenter", "d3643d60-0c42-412d-a7d6-52e6635327f6"),
    edition(&K_WS2012, "Windows Server 2012 Standard", "f0f5ec41-0d55-4732-af02-440a44a3cf0f"),
    edition(&K_WS2012, "Windows Server 2012 MultiPoint Premium", "95fd1c83-7df5-494a-be8b-1300e1c9d1cd"),
    edition(&K_WS2012, "Windows Server 2012 MultiPoint Standard", "7d5486c7-e120-4771-b7f1-7b56c6d3170c"),
    // Windows Server 2008 R2 A (Web and HPC)
    edition(&K_WS2008R2_A, "Windows MultiPoint Server 2010", "f772515c-0e87-48d5-a676-e6962c3e1195"),
    edition(&K_WS2008R2_A, "Windows Server 2008 R2 Web", "a78b8bd9-8017-4df5-b86a-09f756affa7c"),
    edition(&K_WS2008R2_A, "Windows Server 2008 R2 HPC Edition", "cda18cf3-c196-46ad-b289-60c072869994"),
    // Windows Server 2008 R2 B (Standard and Enterprise)
    edition(&K_WS2008R2_B, "Windows Server 2008 R2 Standard", "68531fb9-5511-4989-97be-d11a0f55633f"),
    edition(&K_WS2008R2_B, "Windows Server 2008 R2 Enterprise", "620e2b3d-09e7-42fd-802a-17a13652fe7a"),
    // Windows Server 2008 R2 C (Datacenter and Itanium)
    edition(&K_WS2008R2_C, "Windows Server 2008 R2 Datacenter", "7482e61b-c589-4b7f-8ecc-46d455ac3b87"),
    edition(&K_WS2008R2_C, "Windows Server 2008 R2 Enterprise for Itanium", "8a26851c-1c7e-48d3-a687-fbca9b9ac16b"),
    // Windows Server 2008 A (Web and HPC)
    edition(&K_WS2008_A, "Windows Server 2008 Web", "ddfa9f7c-f09e-40b9-8c1a-be877a9a7f4b"),
    edition(&K_WS2008_A, "Windows Server 2008 Compute Cluster", "7afb1156-2c1d-40fc-b260-aab7442b62fe"),
    // Windows Server 2008 B (Standard and Enterprise)
    edition(&K_WS2008_B, "Windows Server 2008 Standard", "ad2542d4-9154-4c6d-8a44-30f11ee96989"),
    edition(&K_WS2008_B, "Windows Server 2008 Standard without Hyper-V", "2401e3d0-c50a-4b58-87b2-7e794b7d2607"),
    edition(&K_WS2008_B, "Windows Server 2008 Enterprise", "c1af4d90-d1bc-44ca-85d4-003ba33db3b9"),
    edition(&K_WS2008_B, "Windows Server 2008 Enterprise without Hyper-V", "8198490a-add0-47b2-b3ba-316b12d647b4"),
    // Windows Server 2008 C (Datacenter and Itanium)
    edition(&K_WS2008_C, "Windows Server 2008 Datacenter", "68b6e220-cf09-466b-92d3-45cd964b9509"),
    edition(&K_WS2008_C, "Windows Server 2008 Datacenter without Hyper-V", "fd09ef77-5647-4eff-809c-af2b64659a45"),
    edition(&K_WS2008_C, "Windows Server 2008 Enterprise for Itanium", "01ef176b-3e0d-422a-b4f8-4ea880035e8f"),
    // Windows 10/11 China Government
    edition(&K_WIN10_GOV, "Windows 10/11 Enterprise G", "e0b2d383-d112-413f-8a80-97f373a5820c"),
    edition(&K_WIN10_GOV, "Windows 10/11 Enterprise G N", "e38454fb-41a4-4f59-a5dc-25080e354730"),
    // Windows 10 2019 (Volume)
    // One edition for three releases: Microsoft gives Windows 10 Enterprise LTSC 2019, LTSC 2021
    // and Windows 11 Enterprise LTSC 2024 the same GVLK, so they send the same SKU and KMS IDs.
    edition_from(&K_WIN10_2019, "Windows 10/11 Enterprise LTSC 2019/2021/2024", "32d2fab3-e4a8-42c2-923b-4bf4fd13e6ee", SRC_LTSC),
    edition_from(&K_WIN10_2019, "Windows 10/11 Enterprise LTSC 2019/2021/2024 N", "7103a333-b8c8-49cc-93ce-d37c09687f92", SRC_LTSC),
    // Windows 10 2016 (Volume)
    edition(&K_WIN10_2016, "Windows 10 Enterprise 2016 LTSB", "2d5a5a60-3040-48bf-beb0-fcd770c20ce0"),
    edition(&K_WIN10_2016, "Windows 10 Enterprise 2016 LTSB N", "9f776d83-7156-45b2-8a5c-359b9c9f22a3"),
    // Windows 10/11 2015 (Volume)
    edition(&K_WIN10, "Windows 10 Enterprise 2015 LTSB", "7b51a46c-0c04-4e8f-9af4-8496cca90d5e"),
    edition(&K_WIN10, "Windows 10 Enterprise 2015 LTSB N", "87b838b7-41b6-4590-8318-5797951d8529"),
    edition(&K_WIN10, "Windows 10/11 Education", "e0c42288-980c-4788-a014-c080d2e1926e"),
    edition(&K_WIN10, "Windows 10/11 Education N", "3c102355-d027-42c6-ad23-2e7ef8a02585"),
    edition(&K_WIN10, "Windows 10/11 Enterprise", "73111121-5638-40f6-bc11-f1d7b0d64300"),
    edition(&K_WIN10, "Windows 10/11 Enterprise N", "e272e3e2-732f-4c65-a8f0-484747d0d947"),
    edition(&K_WIN10, "Windows 10/11 Pro", "2de67392-b7a7-462a-b1ca-108dd189f588"),
    edition(&K_WIN10, "Windows 10/11 Pro N", "a80b5abf-76ad-428b-b05d-a47d2dffeebf"),
    edition(&K_WIN10, "Windows 10/11 Pro Education", "3f1afc82-f8ac-4f6c-8005-1d233e606eee"),
    edition(&K_WIN10, "Windows 10/11 Pro Education N", "5300b18c-2e33-4dc2-8291-47ffcec746dd"),
    edition(&K_WIN10, "Windows 10/11 Pro for Workstations", "82bbc092-bc50-4e16-8e18-b74fc486aec3"),
    edition(&K_WIN10, "Windows 10/11 Pro for Workstations N", "4b1571d3-bafb-4b40-8087-a961be2caf65"),
    edition_from(&K_WIN10, "Windows 10/11 Enterprise multi-session", "ec868e65-fadf-4759-b23e-93fe37f2cc29", SRC_MULTI_SESSION),
    edition_from(&K_WIN10, "Windows IoT Enterprise LTSC 2021/2024", "59eb965c-9150-42b7-a0ec-22151b9897c5", SRC_UNVERIFIED_PYKMS),
    edition_from(&K_WIN10, "Windows 11 SE", "ca7df2e3-5ea0-47b8-9ac1-b1be4d8edd69", SRC_UNVERIFIED_PYKMS),
    edition_from(&K_WIN10, "Windows 11 SE N", "d30136fc-cb4b-416e-a23d-87207abc44a9", SRC_UNVERIFIED_PYKMS),
    edition_from(&K_WIN10, "Windows 10 S (Lean)", "0df4f814-3f57-4b8b-9a9d-fddadcd69fac", SRC_ONLY_PYKMS),
    edition_from(&K_WIN10, "Windows 10 Remote Server", "e4db50ea-bda1-4566-b047-0ca50abc6f07", SRC_ONLY_PYKMS),
    // Windows 8.1 (Volume)
    edition(&K_WIN81, "Windows 8.1 Enterprise", "81671aaf-79d1-4eb1-b004-8cbbe173afea"),
    // py-kms marks these GVLKs as generated (IsGeneratedGvlk): a volume edition of the 8.1
    // group with no Microsoft-published key.
    edition_from(&K_WIN81, "Windows 8.1 Core Connected", "e9942b32-2e55-4197-b0bd-5ff58cba8860", SRC_ONLY_PYKMS),
    edition_from(&K_WIN81, "Windows 8.1 Core Connected N", "c6ddecd6-2354-4c19-909b-306a3058484e", SRC_ONLY_PYKMS),
    edition_from(&K_WIN81, "Windows 8.1 Core Connected Country Specific", "ba998212-460a-44db-bfb5-71bf09d1c68b", SRC_ONLY_PYKMS),
    edition_from(&K_WIN81, "Windows 8.1 Core Connected Single Language", "b8f5e3a3-ed33-4608-81e1-37d6c9dcfd9c", SRC_ONLY_PYKMS),
    edition(&K_WIN81, "Windows 8.1 Enterprise N", "113e705c-fa49-48a4-beea-7dd879b46b14"),
    edition(&K_WIN81, "Windows 8.1 Professional", "c06b6981-d7fd-4a35-b7b4-054742b7af67"),
    edition(&K_WIN81, "Windows 8.1 Professional N", "7476d79f-8e48-49b4-ab63-4d0b813a16e4"),
    edition(&K_WIN81, "Windows 8.1 Embedded Industry Automotive", "f7e88590-dfc7-4c78-bccb-6f3865b99d1a"),
    edition(&K_WIN81, "Windows 8.1 Embedded Industry Enterprise", "cd4e2d9f-5059-4a50-a92d-05d5bb1267c7"),
    edition(&K_WIN81, "Windows 8.1 Embedded Industry Professional", "0ab82d54-47f4-4acb-818c-cc5bf0ecb649"),
    // Windows 8 (Volume)
    edition(&K_WIN8, "Windows 8 Enterprise", "458e1bec-837a-45f6-b9d5-925ed5d299de"),
    edition(&K_WIN8, "Windows 8 Enterprise N", "e14997e7-800a-4cf7-ad10-de4b45b578db"),
    edition(&K_WIN8, "Windows 8 Professional", "a98bcd6d-5343-4603-8afe-5908e4611112"),
    edition(&K_WIN8, "Windows 8 Professional N", "ebf245c1-29a8-4daf-9cb1-38dfc608a8c8"),
    edition(&K_WIN8, "Windows 8 Embedded Industry Enterprise", "18db1848-12e0-4167-b9d7-da7fcda507db"),
    edition(&K_WIN8, "Windows 8 Embedded Industry Professional", "10018baf-ce21-4060-80bd-47fe74ed4dab"),
    // Windows 7
    edition(&K_WIN7, "Windows 7 Enterprise", "ae2ee509-1b34-41c0-acb7-6d4650168915"),
    edition(&K_WIN7, "Windows 7 Enterprise E", "46bbed08-9c7b-48fc-a614-95250573f4ea"),
    edition(&K_WIN7, "Windows 7 Enterprise N", "1cb6d605-11b3-4e14-bb30-da91c8e3983a"),
    edition(&K_WIN7, "Windows 7 Professional", "b92e9980-b9d5-4821-9c94-140f632f6312"),
    edition(&K_WIN7, "Windows 7 Professional E", "5a041529-fef8-4d07-b06f-b59b573b32d2"),
    edition(&K_WIN7, "Windows 7 Professional N", "54a09a0d-d57b-4c10-8b69-a842d6590ad5"),
    edition(&K_WIN7, "Windows 7 ThinPC", "aa6dd3aa-c2b4-40e2-a544-a6bbb3f5c395"),
    edition(&K_WIN7, "Windows 7 Embedded POSReady", "db537896-376f-48ae-a492-53d0547773d0"),
    edition(&K_WIN7, "Windows 7 Embedded Standard", "e1a8296a-db37-44d1-8cce-7bc961d59c54"),
    // Windows Vista
    edition(&K_VISTA, "Windows Vista Business", "4f3d1606-3fea-4c01-be3c-8d671c401e3b"),
    edition(&K_VISTA, "Windows Vista Business N", "2c682dc2-8b68-4f63-a165-ae291d4cf138"),
    edition(&K_VISTA, "Windows Vista Enterprise", "cfd8ff08-c0d7-452b-9f60-ef5c70c32094"),
    edition(&K_VISTA, "Windows Vista Enterprise N", "d4f54950-26f2-4fb4-ba21-ffab16afcade"),
    // Office 2010
    edition(&K_OFFICE2010, "Office Access 2010", "8ce7e872-188c-4b98-9d90-f8f90b7aad02"),
    edition(&K_OFFICE2010, "Office Excel 2010", "cee5d470-6e3b-4fcc-8c2b-d17428568a9f"),
    edition(&K_OFFICE2010, "Office Groove 2010", "8947d0b8-c33b-43e1-8c56-9b674c052832"),
    edition(&K_OFFICE2010, "Office InfoPath 2010", "ca6b6639-4ad6-40ae-a575-14dee07f6430"),
    edition(&K_OFFICE2010, "Office Mondo 1 2010", "09ed9640-f020-400a-acd8-d7d867dfd9c2"),
    edition(&K_OFFICE2010, "Office Mondo 2 2010", "ef3d4e49-a53d-4d81-a2b1-2ca6c2556b2c"),
    edition(&K_OFFICE2010, "Office OneNote 2010", "ab586f5c-5256-4632-962f-fefd8b49e6f4"),
    edition(&K_OFFICE2010, "Office Outlook 2010", "ecb7c192-73ab-4ded-acf4-2399b095d0cc"),
    edition(&K_OFFICE2010, "Office PowerPoint 2010", "45593b1d-dfb1-4e91-bbfb-2d5d0ce2227a"),
    edition(&K_OFFICE2010, "Office Professional Plus 2010", "6f327760-8c5c-417c-9b61-836a98287e0c"),
    edition(&K_OFFICE2010, "Office Project Pro 2010", "df133ff7-bf14-4f95-afe3-7b48e7e331ef"),
    edition(&K_OFFICE2010, "Office Project Standard 2010", "5dc7bf61-5ec9-4996-9ccb-df806a2d0efe"),
    edition(&K_OFFICE2010, "Office Publisher 2010", "b50c4f75-599b-43e8-8dcd-1081a7967241"),
    edition(&K_OFFICE2010, "Office Small Business Basics 2010", "ea509e87-07a1-4a45-9edc-eba5a39f36af"),
    edition(&K_OFFICE2010, "Office Standard 2010", "9da2a678-fb6b-4e67-ab84-60dd6a9c819a"),
    edition(&K_OFFICE2010, "Office Visio Premium 2010", "92236105-bb67-494f-94c7-7f7a607929bd"),
    edition(&K_OFFICE2010, "Office Visio Pro 2010", "e558389c-83c3-4b29-adfe-5e4d7f46c358"),
    edition(&K_OFFICE2010, "Office Visio Standard 2010", "9ed833ff-4f92-4f36-b370-8683a4f13275"),
    edition(&K_OFFICE2010, "Office Word 2010", "2d0882e7-a4e7-423b-8ccc-70d91e0158b1"),
    // Office 2013
    edition(&K_OFFICE2013, "Office Access 2013", "6ee7622c-18d8-4005-9fb7-92db644a279b"),
    edition(&K_OFFICE2013, "Office Excel 2013", "f7461d52-7c2b-43b2-8744-ea958e0bd09a"),
    edition(&K_OFFICE2013, "Office InfoPath 2013", "a30b8040-d68a-423f-b0b5-9ce292ea5a8f"),
    edition(&K_OFFICE2013, "Office Lync 2013", "1b9f11e3-c85c-4e1b-bb29-879ad2c909e3"),
    edition(&K_OFFICE2013, "Office Mondo 2013", "dc981c6b-fc8e-420f-aa43-f8f33e5c0923"),
    edition(&K_OFFICE2013, "Office OneNote 2013", "efe1f3e6-aea2-4144-a208-32aa872b6545"),
    edition(&K_OFFICE2013, "Office Outlook 2013", "771c3afa-50c5-443f-b151-ff2546d863a0"),
    edition(&K_OFFICE2013, "Office PowerPoint 2013", "8c762649-97d1-4953-ad27-b7e2c25b972e"),
    edition(&K_OFFICE2013, "Office Professional Plus 2013", "b322da9c-a2e2-4058-9e4e-f59a6970bd69"),
    edition(&K_OFFICE2013, "Office Project Pro 2013", "4a5d124a-e620-44ba-b6ff-658961b33b9a"),
    edition(&K_OFFICE2013, "Office Project Standard 2013", "427a28d1-d17c-4abf-b717-32c780ba6f07"),
    edition(&K_OFFICE2013, "Office Publisher 2013", "00c79ff1-6850-443d-bf61-71cde0de305f"),
    edition(&K_OFFICE2013, "Office Standard 2013", "b13afb38-cd79-4ae5-9f7f-eed058d750ca"),
    edition(&K_OFFICE2013, "Office Visio Pro 2013", "e13ac10e-75d0-4aff-a0cd-764982cf541c"),
    edition(&K_OFFICE2013, "Office Visio Standard 2013", "ac4efaf0-f81f-4f61-bdf7-ea32b02ab117"),
    edition(&K_OFFICE2013, "Office Word 2013", "d9f5b1c6-5386-495a-88f9-9ad6b41ac9b3"),
    // Office 2016
    edition(&K_OFFICE2016, "Office Access 2016", "67c0fc0c-deba-401b-bf8b-9c8ad8395804"),
    edition(&K_OFFICE2016, "Office Excel 2016", "c3e65d36-141f-4d2f-a303-a842ee756a29"),
    edition(&K_OFFICE2016, "Office Mondo 2016", "9caabccb-61b1-4b4b-8bec-d10a3c3ac2ce"),
    edition(&K_OFFICE2016, "Office Mondo R 2016", "e914ea6e-a5fa-4439-a394-a9bb3293ca09"),
    edition(&K_OFFICE2016, "Office OneNote 2016", "d8cace59-33d2-4ac7-9b1b-9b72339c51c8"),
    edition(&K_OFFICE2016, "Office Outlook 2016", "ec9d9265-9d1e-4ed0-838a-cdc20f2551a1"),
    edition(&K_OFFICE2016, "Office PowerPoint 2016", "d70b1bba-b893-4544-96e2-b7a318091c33"),
    edition(&K_OFFICE2016, "Office Professional Plus 2016", "d450596f-894d-49e0-966a-fd39ed4c4c64"),
    edition(&K_OFFICE2016, "Office Project Pro 2016", "4f414197-0fc2-4c01-b68a-86cbb9ac254c"),
    edition(&K_OFFICE2016, "Office Project Pro 2016 C2R", "829b8110-0e6f-4349-bca4-42803577788d"),
    edition(&K_OFFICE2016, "Office Project Standard 2016", "da7ddabc-3fbe-4447-9e01-6ab7440b4cd4"),
    edition(&K_OFFICE2016, "Office Project Standard 2016 C2R", "cbbaca45-556a-4416-ad03-bda598eaa7c8"),
    edition(&K_OFFICE2016, "Office Publisher 2016", "041a06cb-c5b8-4772-809f-416d03d16654"),
    edition(&K_OFFICE2016, "Office Skype for Business 2016", "83e04ee1-fa8d-436d-8994-d31a862cab77"),
    edition(&K_OFFICE2016, "Office Standard 2016", "dedfa23d-6ed1-45a6-85dc-63cae0546de6"),
    edition(&K_OFFICE2016, "Office Visio Pro 2016", "6bf301c1-b94a-43e9-ba31-d494598c47fb"),
    edition(&K_OFFICE2016, "Office Visio Pro 2016 C2R", "b234abe3-0857-4f9c-b05a-4dc314f85557"),
    edition(&K_OFFICE2016, "Office Visio Standard 2016", "aa2a7821-1827-4c2c-8f1d-4513a34dda97"),
    edition(&K_OFFICE2016, "Office Visio Standard 2016 C2R", "361fe620-64f4-41b5-ba77-84f8e079b1f7"),
    edition(&K_OFFICE2016, "Office Word 2016", "bb11badf-d8aa-470e-9311-20eaf80fe5cc"),
    // Office 2019
    edition(&K_OFFICE2019, "Office Access 2019", "9e9bceeb-e736-4f26-88de-763f87dcc485"),
    edition(&K_OFFICE2019, "Office Excel 2019", "237854e9-79fc-4497-a0c1-a70969691c6b"),
    edition(&K_OFFICE2019, "Office Outlook 2019", "c8f8a301-19f5-4132-96ce-2de9d4adbd33"),
    edition(&K_OFFICE2019, "Office PowerPoint 2019", "3131fd61-5e4f-4308-8d6d-62be1987c92c"),
    edition(&K_OFFICE2019, "Office Professional Plus 2019", "85dd8b5f-eaa4-4af3-a628-cce9e77c9a03"),
    edition(&K_OFFICE2019, "Office Project Pro 2019", "2ca2bf3f-949e-446a-82c7-e25a15ec78c4"),
    edition(&K_OFFICE2019, "Office Project Standard 2019", "1777f0e3-7392-4198-97ea-8ae4de6f6381"),
    edition(&K_OFFICE2019, "Office Publisher 2019", "9d3e4cca-e172-46f1-a2f4-1d2107051444"),
    edition(&K_OFFICE2019, "Office Skype for Business 2019", "734c6c6e-b0ba-4298-a891-671772b2bd1b"),
    edition(&K_OFFICE2019, "Office Standard 2019", "6912a74b-a5fb-401a-bfdb-2e3ab46f4b02"),
    edition(&K_OFFICE2019, "Office Visio Pro 2019", "5b5cf08f-b81a-431d-b080-3450d8620565"),
    edition(&K_OFFICE2019, "Office Visio Standard 2019", "e06d7df3-aad0-419d-8dfb-0ac37e2bdf39"),
    edition(&K_OFFICE2019, "Office Word 2019", "059834fe-a8ea-4bff-b67b-4d006b5447d3"),
    // Office 2021
    edition(&K_OFFICE2021, "Office Access LTSC 2021", "1fe429d8-3fa7-4a39-b6f0-03dded42fe14"),
    edition(&K_OFFICE2021, "Office Excel LTSC 2021", "ea71effc-69f1-4925-9991-2f5e319bbc24"),
    edition(&K_OFFICE2021, "Office Outlook LTSC 2021", "a5799e4c-f83c-4c6e-9516-dfe9b696150b"),
    edition(&K_OFFICE2021, "Office PowerPoint LTSC 2021", "6e166cc3-495d-438a-89e7-d7c9e6fd4dea"),
    edition(&K_OFFICE2021, "Office LTSC Professional Plus 2021", "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984"),
    edition(&K_OFFICE2021, "Office Project Pro 2021", "76881159-155c-43e0-9db7-2d70a9a3a4ca"),
    edition(&K_OFFICE2021, "Office Project Standard 2021", "6dd72704-f752-4b71-94c7-11cec6bfc355"),
    edition(&K_OFFICE2021, "Office Publisher LTSC 2021", "aa66521f-2370-4ad8-a2bb-c095e3e4338f"),
    edition(&K_OFFICE2021, "Office Skype for Business LTSC 2021", "1f32a9af-1274-48bd-ba1e-1ab7508a23e8"),
    edition(&K_OFFICE2021, "Office LTSC Standard 2021", "080a45c5-9f9f-49eb-b4b0-c3c610a5ebd3"),
    edition(&K_OFFICE2021, "Office Visio LTSC Pro 2021", "fb61ac9a-1688-45d2-8f6b-0674dbffa33c"),
    edition(&K_OFFICE2021, "Office Visio LTSC Standard 2021", "72fce797-1884-48dd-a860-b2f6a5efd3ca"),
    edition(&K_OFFICE2021, "Office Word LTSC 2021", "abe28aea-625a-43b1-8e30-225eb8fbd9e5"),
];

// ---------------------------------------------------------------------------------------------
// Host key groups (CSVLKs)

/// A family of KMS host keys (CSVLKs): which product groups a host holding such a key activates,
/// and how the key shows up in the host's ePID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostKeyGroup {
    /// Name as the Microsoft tables spell it, e.g. "Volume License for Windows Server 2019".
    pub name: &'static str,
    /// The application the key is installed for.
    pub app: AppKind,
    /// Key group ID, the second field of the host's ePID.
    pub epid_group_id: u32,
    /// Key IDs (third and fourth ePID fields read as one number) that keys of this group carry.
    pub key_ids: RangeInclusive<u32>,
    /// KMS IDs of the product groups a host with this key activates.
    pub activates: &'static [Guid],
    /// Where the activation list and the ePID numbers come from.
    pub source: &'static str,
}

/// What the Windows Server 2022 and 2025 host keys activate (Microsoft: KMS activation planning,
/// Activation versions table), less Windows Server 2025 itself, whose KMS ID is unknown.
const WS_2022_2025_ACTIVATES: &[Guid] = &[
    K_WS2022.id,
    K_WS2019.id,
    K_WS2016.id,
    // Windows 11 and Windows 10 Enterprise/Professional/Pro for Workstations/Education.
    K_WIN10.id,
    // Windows 11 Enterprise LTSC 2024, Windows 10 Enterprise LTSC/LTSC N/LTSB.
    K_WIN10_2019.id,
    K_WIN10_2016.id,
    K_WS2012R2.id,
    K_WIN81.id,
    K_WS2012.id,
    K_WS2008R2_A.id,
    K_WS2008R2_B.id,
    K_WS2008R2_C.id,
    K_WS2008_A.id,
    K_WS2008_B.id,
    K_WS2008_C.id,
    K_WIN7.id,
];

// The Windows lists below follow the table rows entry by entry; the comments quote the rows'
// wording. "Windows Server Semi-Annual Channel" needs no entry of its own: its editions count
// under the Server 2016/2019/2022 KMS IDs.
const HKG_WS2022: HostKeyGroup = HostKeyGroup {
    name: DEFAULT_HOST_KEY_GROUP,
    app: AppKind::Windows,
    // The first Windows CSVLK with a group of its own. Its key IDs start at 30000: py-kms's
    // first database (from License Manager) gave 30000..=20029999 with a host ePID of key ID
    // 018246887; the 0..=20029999 it lists today also covers 0..=29999, which no host of this
    // key carries (the Azure-only and lab keys of 4574/4575 use 0..=49999 of their own groups).
    epid_group_id: 4573,
    key_ids: WS_2022_2025_KEY_IDS,
    activates: WS_2022_2025_ACTIVATES,
    source: "activations: kms-activation-planning.md, Activation versions table; ePID group and \
             key IDs: py-kms KmsDataBase.xml CsvlkItem \"Windows Server 2022\" (vlmcsd has none), \
             key IDs from below 30000 as in py-kms's first database (commit 0f58e9b)",
};

/// Key IDs of the Windows Server 2022 and 2025 CSVLKs (each in its own ePID group).
const WS_2022_2025_KEY_IDS: RangeInclusive<u32> = 30_000..=20_029_999;

// Windows Server 2025's own KMS ID is not in the catalog: the one py-kms gives
// (4b83307d-7788-50ff-...) is a version-5 UUID that py-kms's own comments call a placeholder, and
// no other source names one. The group is here for what Microsoft's table says it activates and
// for its ePIDs; clients of Windows Server 2025 itself are unknown products to the catalog.
const HKG_WS2025: HostKeyGroup = HostKeyGroup {
    name: "Volume License for Windows Server 2025",
    app: AppKind::Windows,
    epid_group_id: 4918,
    key_ids: WS_2022_2025_KEY_IDS,
    // "Windows Server 2025 (all editions)": KMS ID unknown, see above; Windows 11 Enterprise
    // LTSC 2024 sends the LTSC 2019 group's KMS ID.
    activates: WS_2022_2025_ACTIVATES,
    source: "activations: Microsoft: KMS activation planning, Activation versions table \
             (Windows Server 2025 tab), less Windows Server 2025 itself (no KMS ID known); ePID \
             group and key IDs: unverified: only py-kms KmsDataBase.xml CsvlkItem \
             \"Windows Server 2025\"",
};

/// Every host key group in the catalog.
pub static HOST_KEY_GROUPS: &[HostKeyGroup] = &[
    HKG_WS2025,
    HKG_WS2022,
    HostKeyGroup {
        name: "Volume License for Windows Server 2019",
        app: AppKind::Windows,
        epid_group_id: EPID_GROUP_206,
        key_ids: 551_000_000..=570_999_999,
        activates: &[
            K_WS2019.id,
            K_WS2016.id,
            // Windows 10 Enterprise LTSC 2019 / LTSC N 2019.
            K_WIN10_2019.id,
            // Windows 10 LTSB (2015 and 2016): 2016 here, 2015 shares the Windows 10 ID.
            K_WIN10_2016.id,
            // Windows 10 Professional/Enterprise/Pro for Workstations/Education.
            K_WIN10.id,
            K_WS2012R2.id,
            K_WIN81.id,
            K_WS2012.id,
            K_WS2008R2_A.id,
            K_WS2008R2_B.id,
            K_WS2008R2_C.id,
            K_WS2008_A.id,
            K_WS2008_B.id,
            K_WS2008_C.id,
            K_WIN7.id,
        ],
        source: "activations: windows-server-2019-activation.md and kms-activation-planning.md \
                 tables; ePID group and key IDs: vlmcsd kmsdata-full.c CsvlkData[0] (Windows), \
                 same in py-kms CsvlkItem \"Windows Server 2019\"",
    },
    HostKeyGroup {
        name: "Volume License for Windows Server 2016",
        app: AppKind::Windows,
        epid_group_id: EPID_GROUP_206,
        key_ids: 491_000_000..=530_999_999,
        activates: &[
            K_WS2016.id,
            // Windows 10 LTSB (2015 and 2016).
            K_WIN10_2016.id,
            // Windows 10 Professional/Enterprise/Pro for Workstations/Education, LTSB 2015.
            K_WIN10.id,
            K_WS2012R2.id,
            K_WIN81.id,
            K_WS2012.id,
            K_WS2008R2_A.id,
            K_WS2008R2_B.id,
            K_WS2008R2_C.id,
            K_WS2008_A.id,
            K_WS2008_B.id,
            K_WS2008_C.id,
            K_WIN7.id,
        ],
        source: "activations: windows-server-2016-activation.md, windows-server-2019-activation.md \
                 and kms-activation-planning.md tables; ePID group and key IDs: py-kms CsvlkItem \
                 \"Windows Server 2016\"",
    },
    HostKeyGroup {
        name: "Volume license for Windows 10",
        app: AppKind::Windows,
        epid_group_id: EPID_GROUP_206,
        key_ids: 390_000_000..=404_999_999,
        activates: &[
            // Windows 10 Professional/Enterprise/Education (and N), Enterprise LTSB (N) 2015,
            // Pro for Workstations.
            K_WIN10.id, K_WIN81.id, K_WIN7.id,
        ],
        source: "activations: windows-server-2016-activation.md, windows-server-2019-activation.md \
                 and kms-activation-planning.md tables; ePID group and key IDs: py-kms CsvlkItem \
                 \"Windows 10 2015 VL\" (the table lists LTSB 2015 only, as that key does)",
    },
    HostKeyGroup {
        name: "Volume license for Windows Server 2012 R2 for Windows 10",
        app: AppKind::Windows,
        epid_group_id: EPID_GROUP_206,
        key_ids: 405_000_000..=424_999_999,
        activates: &[
            // Windows 10 Professional/Enterprise/Education, LTSB 2015, Pro for Workstations.
            K_WIN10.id,
            K_WS2012R2.id,
            K_WIN81.id,
            K_WS2012.id,
            K_WS2008R2_A.id,
            K_WS2008R2_B.id,
            K_WS2008R2_C.id,
            K_WS2008_A.id,
            K_WS2008_B.id,
            K_WS2008_C.id,
            K_WIN7.id,
        ],
        source: "activations: windows-server-2016-activation.md and \
                 windows-server-2019-activation.md tables; ePID group and key IDs: py-kms \
                 CsvlkItem \"Windows Server 2012 R2 With Win 10\"",
    },
    HostKeyGroup {
        name: "Volume License for Windows 10 China Government",
        app: AppKind::Windows,
        epid_group_id: 3858,
        key_ids: 15_000_000..=999_999_999,
        activates: &[K_WIN10_GOV.id],
        source: "not in the Microsoft tables; vlmcsd kmsdata-full.c CsvlkData[4] (WinChinaGov) \
                 and py-kms CsvlkItem \"Windows 10 China Government\"",
    },
    HostKeyGroup {
        name: "Volume License for Windows 8",
        app: AppKind::Windows,
        epid_group_id: EPID_GROUP_206,
        key_ids: 199_000_000..=213_999_999,
        activates: &[K_WIN8.id],
        source: "not in the Microsoft tables (which omit Windows 8); py-kms CsvlkItem \
                 \"Windows 8\", its retail entry left out",
    },
    HostKeyGroup {
        name: "Volume License for Windows 7",
        app: AppKind::Windows,
        epid_group_id: 172,
        key_ids: 37_000_000..=49_749_999,
        activates: &[K_WIN7.id, K_VISTA.id],
        source: "not in the Microsoft tables; py-kms CsvlkItem \"Windows 7\"",
    },
    // Office keys are cumulative within their application: a newer Office 2013-and-later key
    // also serves the earlier versions of that application. The peers list only each key's own
    // product group; the earlier versions are added on that rule.
    HostKeyGroup {
        name: "Volume License for Office 2010",
        app: AppKind::Office2010,
        epid_group_id: 96,
        key_ids: 199_000_000..=217_999_999,
        activates: &[K_OFFICE2010.id],
        source: "vlmcsd kmsdata-full.c CsvlkData[1] (Office2010), py-kms CsvlkItem \
                 \"Office 2010 VL\"",
    },
    HostKeyGroup {
        name: "Volume License for Office 2013",
        app: AppKind::Office2013,
        epid_group_id: EPID_GROUP_206,
        key_ids: 234_000_000..=255_999_999,
        activates: &[K_OFFICE2013.id],
        source: "vlmcsd kmsdata-full.c CsvlkData[2] (Office2013), py-kms CsvlkItem \
                 \"Office 2013 VL\"",
    },
    HostKeyGroup {
        name: "Volume License for Office 2016",
        app: AppKind::Office2013,
        epid_group_id: EPID_GROUP_206,
        key_ids: 437_000_000..=458_999_999,
        activates: &[K_OFFICE2016.id, K_OFFICE2013.id],
        source: "vlmcsd kmsdata-full.c CsvlkData[3] (Office2016), py-kms CsvlkItem \
                 \"Office 2016 VL\"; plus Office 2013 by the cumulative rule",
    },
    HostKeyGroup {
        name: "Volume License for Office 2019",
        app: AppKind::Office2013,
        epid_group_id: EPID_GROUP_206,
        key_ids: 666_000_000..=685_999_999,
        activates: &[K_OFFICE2019.id, K_OFFICE2016.id, K_OFFICE2013.id],
        source: "vlmcsd kmsdata-full.c CsvlkData[5] (Office2019), py-kms CsvlkItem \
                 \"Office 2019 VL\"; plus Office 2013/2016 by the cumulative rule",
    },
    HostKeyGroup {
        name: "Volume License for Office LTSC 2021",
        app: AppKind::Office2013,
        epid_group_id: EPID_GROUP_206,
        key_ids: 571_000_000..=590_999_999,
        activates: &[
            K_OFFICE2021.id,
            K_OFFICE2019.id,
            K_OFFICE2016.id,
            K_OFFICE2013.id,
        ],
        source: "not in vlmcsd; py-kms CsvlkItem \"Office LTSC 2021\"; plus Office 2013/2016/2019 \
                 by the cumulative rule",
    },
];

impl HostKeyGroup {
    /// Whether a host with this key activates clients sending `kms_id`.
    pub fn activates_kms_id(&self, kms_id: &Guid) -> bool {
        self.activates.contains(kms_id)
    }

    /// Whether a host with this key activates the edition.
    pub fn activates_sku(&self, sku: &Sku) -> bool {
        self.activates_kms_id(&sku.kms)
    }

    /// Whether an ePID with this group and key ID could belong to a key of this group.
    pub fn matches_epid_key(&self, group_id: u32, key_id: u32) -> bool {
        self.epid_group_id == group_id && self.key_ids.contains(&key_id)
    }

    /// The product groups this key activates that the catalog knows.
    pub fn kms_items(&self) -> impl Iterator<Item = &'static KmsItem> + use<> {
        let activates = self.activates;
        activates.iter().filter_map(kms_item)
    }
}

/// The host key group named [`DEFAULT_HOST_KEY_GROUP`].
pub const fn default_host_key_group() -> &'static HostKeyGroup {
    &HKG_WS2022
}

/// The host key groups a host holds unless told otherwise: Windows Server 2022's (every Windows
/// client and server edition up to it) and Office LTSC 2021's (Office 2013 to LTSC 2021), so that
/// the default load mix and every conformance case are activated rather than refused.
pub const DEFAULT_HOST_KEY_GROUPS: &[&str] = &[
    DEFAULT_HOST_KEY_GROUP,
    "Volume License for Office LTSC 2021",
];

/// [`DEFAULT_HOST_KEY_GROUPS`] as groups.
pub fn default_host_key_groups() -> Vec<&'static HostKeyGroup> {
    DEFAULT_HOST_KEY_GROUPS
        .iter()
        .filter_map(|name| host_key_group(name))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A catalog file's entries

/// The entries of the run's `--catalog` file. Reference data like the static tables: set once,
/// before any session starts, and read-only after; core code never reads a file itself.
static EXTENSION: OnceLock<Extension> = OnceLock::new();

/// Makes `ext`'s entries part of every lookup for the rest of the process, ahead of the built-in
/// entries they override. A second call is refused and gives `ext` back.
pub fn install(ext: Extension) -> Result<(), Extension> {
    EXTENSION.set(ext)
}

/// The installed `--catalog` entries, if any.
pub fn extension() -> Option<&'static Extension> {
    EXTENSION.get()
}

/// Where an entry comes from: `built-in`, or the `--catalog` file that added or overrode it.
pub fn origin_of_sku(sku: &Sku) -> &'static str {
    match extension() {
        Some(e) if e.sku(&sku.id).is_some_and(|s| core::ptr::eq(s, sku)) => e.origin,
        _ => "built-in",
    }
}

/// [`origin_of_sku`] for a host key group.
pub fn origin_of_group(group: &HostKeyGroup) -> &'static str {
    match extension() {
        Some(e)
            if e.host_key_group(group.name)
                .is_some_and(|g| core::ptr::eq(g, group)) =>
        {
            e.origin
        }
        _ => "built-in",
    }
}

/// Every product group: a `--catalog` file's, then the built-in ones it does not override.
pub fn kms_items() -> impl Iterator<Item = &'static KmsItem> {
    let ext = extension();
    let added = ext.into_iter().flat_map(|e| e.kms_items.iter());
    let builtin = KMS_ITEMS
        .iter()
        .filter(move |k| ext.is_none_or(|e| e.kms_item(&k.id).is_none()));
    added.chain(builtin)
}

/// Every edition: a `--catalog` file's, then the built-in ones it does not override.
pub fn skus() -> impl Iterator<Item = &'static Sku> {
    let ext = extension();
    let added = ext.into_iter().flat_map(|e| e.skus.iter());
    let builtin = SKUS
        .iter()
        .filter(move |s| ext.is_none_or(|e| e.sku(&s.id).is_none()));
    added.chain(builtin)
}

/// Every host key group: a `--catalog` file's, then the built-in ones it does not override.
pub fn host_key_groups() -> impl Iterator<Item = &'static HostKeyGroup> {
    let ext = extension();
    let added = ext.into_iter().flat_map(|e| e.host_key_groups.iter());
    let builtin = HOST_KEY_GROUPS
        .iter()
        .filter(move |g| ext.is_none_or(|e| e.host_key_group(g.name).is_none()));
    added.chain(builtin)
}

// ---------------------------------------------------------------------------------------------
// Lookups

/// The application with this application ID.
pub fn application(id: &Guid) -> Option<&'static Application> {
    APPLICATIONS.iter().find(|a| a.id == *id)
}

/// The product group with this KMS ID (a `--catalog` file's entry first).
pub fn kms_item(id: &Guid) -> Option<&'static KmsItem> {
    extension()
        .and_then(|e| e.kms_item(id))
        .or_else(|| KMS_ITEMS.iter().find(|k| k.id == *id))
}

/// The edition with this SKU ID (a `--catalog` file's entry first).
pub fn sku(id: &Guid) -> Option<&'static Sku> {
    extension()
        .and_then(|e| e.sku(id))
        .or_else(|| SKUS.iter().find(|s| s.id == *id))
}

/// The host key group with this name, compared as [`find_sku`] compares (case, spaces, dashes
/// and underscores ignored), so `volume-license-for-windows-server-2022` works on a command line.
pub fn host_key_group(name: &str) -> Option<&'static HostKeyGroup> {
    extension()
        .and_then(|e| e.host_key_group(name))
        .or_else(|| builtin_host_key_group(name))
}

/// The built-in host key group with this name, whatever a `--catalog` file says.
fn builtin_host_key_group(name: &str) -> Option<&'static HostKeyGroup> {
    HOST_KEY_GROUPS.iter().find(|g| loose_eq(g.name, name))
}

/// The host key groups whose ePID group and key ID range admit these numbers.
pub fn host_key_groups_for_epid(
    group_id: u32,
    key_id: u32,
) -> impl Iterator<Item = &'static HostKeyGroup> {
    host_key_groups().filter(move |g| g.matches_epid_key(group_id, key_id))
}

/// The edition with this name, ignoring case, spaces, dashes and underscores: both
/// `windows-server-2019-arm64` and "Windows Server 2019 ARM64" find the same SKU.
pub fn find_sku(name: &str) -> Option<&'static Sku> {
    lookup_sku(name).ok()
}

/// Why a product name names no single SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkuLookup {
    /// Nothing matches; the nearest names, best first (possibly none).
    NotFound(Vec<&'static str>),
    /// Several products match equally well.
    Ambiguous(Vec<&'static str>),
}

impl core::fmt::Display for SkuLookup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SkuLookup::NotFound(near) if near.is_empty() => f.write_str("not in the catalog"),
            SkuLookup::NotFound(near) => {
                write!(f, "not in the catalog; did you mean {}?", quoted(near))
            }
            SkuLookup::Ambiguous(names) => write!(f, "ambiguous: {}", quoted(names)),
        }
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Words people type for the catalog's words, after lower-casing.
const SYNONYMS: &[(&str, &str)] = &[
    ("win", "windows"),
    ("professional", "pro"),
    ("proplus", "pro plus"),
    ("ent", "enterprise"),
    ("edu", "education"),
    ("std", "standard"),
    ("dc", "datacenter"),
    ("srv", "server"),
];

/// A name as a list of lower-case words: separators dropped, `10/11` split, letters and digits
/// apart (`win11` is `win 11`), synonyms mapped to the catalog's word.
fn words(name: &str) -> Vec<String> {
    let mut raw = Vec::new();
    let mut cur = String::new();
    let mut digits = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        let alnum = c.is_alphanumeric() || c == '.';
        let boundary = !alnum || (c.is_ascii_digit() != digits && c != '.');
        if boundary && !cur.is_empty() {
            raw.push(std::mem::take(&mut cur));
        }
        if alnum {
            digits = c.is_ascii_digit();
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        raw.push(cur);
    }
    let mut out = Vec::new();
    for w in raw {
        match SYNONYMS.iter().find(|(from, _)| *from == w) {
            Some((_, to)) => out.extend(to.split(' ').map(str::to_owned)),
            None => out.push(w),
        }
    }
    out
}

/// Resolves a product as users type it: a SKU ID; the catalog name (case, spaces, `-` and `_`
/// ignored); or words in any order that pick out one product, the last of them possibly cut
/// short (`Windows 10 Enterprise`, `Win11 Pro`, `Office 2021 ProPlus`, `server 2022 data`).
/// Among products whose names hold every word, the one with the fewest other words wins, so
/// `Windows 11 Enterprise` is "Windows 10/11 Enterprise", not its N edition.
pub fn lookup_sku(text: &str) -> Result<&'static Sku, SkuLookup> {
    if let Ok(id) = text.trim().parse::<Guid>() {
        return sku(&id).ok_or(SkuLookup::NotFound(Vec::new()));
    }
    if let Some(s) = skus().find(|s| loose_eq(s.name, text)) {
        return Ok(s);
    }
    let wanted = words(text);
    if wanted.is_empty() {
        return Err(SkuLookup::NotFound(Vec::new()));
    }
    let mut best: Option<(usize, Vec<&'static Sku>)> = None;
    for s in skus() {
        let have = words(s.name);
        let holds = wanted.iter().enumerate().all(|(i, w)| {
            have.iter().any(|h| {
                h == w || (i + 1 == wanted.len() && !w.is_empty() && h.starts_with(w.as_str()))
            })
        });
        if !holds {
            continue;
        }
        let extra = have.len().saturating_sub(wanted.len());
        match &mut best {
            Some((e, list)) if *e == extra => list.push(s),
            Some((e, _)) if *e < extra => {}
            _ => best = Some((extra, vec![s])),
        }
    }
    match best {
        Some((_, list)) if list.len() == 1 => Ok(list[0]),
        Some((_, list)) => Err(SkuLookup::Ambiguous(
            list.iter().map(|s| s.name).take(MAX_SUGGESTIONS).collect(),
        )),
        None => Err(SkuLookup::NotFound(nearest(&wanted))),
    }
}

/// How many names an error lists.
const MAX_SUGGESTIONS: usize = 5;

/// The catalog names sharing the most words with `wanted` (at least half of them).
fn nearest(wanted: &[String]) -> Vec<&'static str> {
    let mut scored: Vec<(usize, usize, &'static str)> = skus()
        .map(|s| {
            let have = words(s.name);
            let shared = wanted.iter().filter(|w| have.contains(w)).count();
            (shared, have.len(), s.name)
        })
        .filter(|&(shared, ..)| 2 * shared >= wanted.len() && shared > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
    scored
        .into_iter()
        .map(|(.., n)| n)
        .take(MAX_SUGGESTIONS)
        .collect()
}

/// Name comparison for user-typed names: separators people swap freely are dropped.
fn loose_eq(a: &str, b: &str) -> bool {
    fn key(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_'))
            .flat_map(char::to_lowercase)
    }
    key(a).eq(key(b))
}

#[cfg(test)]
mod test {
    use std::collections::HashSet;

    use super::*;

    /// vlmcs's built-in default request, as seen in our captures.
    const VLMCS_DEFAULT_SKU: Guid = Guid::from_str_const("8de8eb62-bbe0-40ac-ac17-f75595071ea3");
    const WS2019_KMS_ID: Guid = Guid::from_str_const("8449b1fb-f0ea-497a-99ab-66ca96e9a0f5");

    fn group(name: &str) -> &'static HostKeyGroup {
        host_key_group(name).unwrap()
    }

    fn assert_unique<T: Eq + std::hash::Hash + std::fmt::Debug>(
        what: &str,
        items: impl Iterator<Item = T>,
    ) {
        let mut seen = HashSet::new();
        for item in items {
            assert!(seen.insert(item), "duplicate {what}");
        }
    }

    #[test]
    fn test_ids_unique_within_each_table() {
        assert_unique("application ID", APPLICATIONS.iter().map(|a| a.id));
        assert_unique("application kind", APPLICATIONS.iter().map(|a| a.kind));
        assert_unique("KMS ID", KMS_ITEMS.iter().map(|k| k.id));
        assert_unique("SKU ID", SKUS.iter().map(|s| s.id));
        assert_unique(
            "group name",
            HOST_KEY_GROUPS.iter().map(|g| g.name.to_lowercase()),
        );
        for g in HOST_KEY_GROUPS {
            assert_unique(g.name, g.activates.iter());
        }
    }

    #[test]
    fn test_names_unique_under_loose_matching() {
        // find_sku would silently return the first of two names that differ only in separators.
        for s in SKUS {
            assert_eq!(find_sku(s.name).unwrap().id, s.id, "{}", s.name);
        }
        for g in HOST_KEY_GROUPS {
            assert_eq!(host_key_group(g.name).unwrap().name, g.name);
        }
    }

    #[test]
    fn test_no_id_reused_across_tables() {
        let apps = APPLICATIONS.iter().map(|a| a.id);
        let items = KMS_ITEMS.iter().map(|k| k.id);
        let skus = SKUS.iter().map(|s| s.id);
        assert_unique("GUID across tables", apps.chain(items).chain(skus));
    }

    #[test]
    fn test_every_sku_resolves_and_is_activated() {
        for s in SKUS {
            let item = s
                .kms_item()
                .unwrap_or_else(|| panic!("{}: KMS ID missing", s.name));
            assert_eq!(s.class, item.class, "{}", s.name);
            assert!(
                s.activated_by().next().is_some(),
                "{} is activated by no group",
                s.name
            );
        }
    }

    #[test]
    fn test_every_kms_item_has_skus_and_a_group() {
        for k in KMS_ITEMS {
            assert!(k.skus().next().is_some(), "{} has no editions", k.name);
            assert!(
                k.activated_by().next().is_some(),
                "{} is activated by no group",
                k.name
            );
            assert!((4..=6).contains(&k.protocol), "{}", k.name);
        }
    }

    #[test]
    fn test_groups_activate_known_items_of_their_application() {
        for g in HOST_KEY_GROUPS {
            assert!(!g.activates.is_empty(), "{}", g.name);
            for id in g.activates {
                let item =
                    kms_item(id).unwrap_or_else(|| panic!("{}: unknown KMS ID {id}", g.name));
                assert_eq!(item.app, g.app, "{} activates {}", g.name, item.name);
            }
            assert!(!g.key_ids.is_empty(), "{}", g.name);
            assert!(
                *g.key_ids.end() <= 999_999_999,
                "{}: key IDs print as 9 digits",
                g.name
            );
            assert!(
                g.epid_group_id <= 99_999,
                "{}: group IDs print as 5 digits",
                g.name
            );
            assert!(!g.source.is_empty());
        }
    }

    #[test]
    fn test_epid_key_ranges_identify_one_group() {
        for (i, a) in HOST_KEY_GROUPS.iter().enumerate() {
            for b in &HOST_KEY_GROUPS[i + 1..] {
                let overlap = a.epid_group_id == b.epid_group_id
                    && a.key_ids.start() <= b.key_ids.end()
                    && b.key_ids.start() <= a.key_ids.end();
                assert!(!overlap, "{} and {} share ePID key IDs", a.name, b.name);
            }
        }
        let found: Vec<_> = host_key_groups_for_epid(206, 569_992_245).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "Volume License for Windows Server 2019");
        assert_eq!(host_key_groups_for_epid(96, 203_070_194).count(), 1);
        assert_eq!(host_key_groups_for_epid(206, 1).count(), 0);
    }

    #[test]
    fn test_application_items() {
        let names = |kind: AppKind| -> Vec<&str> {
            kind.application().kms_items().map(|k| k.name).collect()
        };
        assert_eq!(names(AppKind::Office2010), ["Office 2010"]);
        assert_eq!(
            names(AppKind::Office2013),
            [
                "Office 2013",
                "Office 2016",
                "Office 2019",
                "Office LTSC 2021"
            ]
        );
        let windows = names(AppKind::Windows);
        assert!(windows.contains(&"Windows Server 2019"));
        assert!(windows.contains(&"Windows 7"));
        assert_eq!(windows.len() + 5, KMS_ITEMS.len());
        for a in APPLICATIONS {
            assert_eq!(a.kind.application(), a);
            assert_eq!(application(&a.id), Some(a));
        }
        let windows_app = application(&Guid::from_str_const(
            "55c92734-d682-4d71-983e-d6ec3f16059f",
        ));
        assert_eq!(windows_app.map(|a| a.kind), Some(AppKind::Windows));
    }

    #[test]
    fn test_vlmcs_default_sku() {
        let s = sku(&VLMCS_DEFAULT_SKU).unwrap();
        assert_eq!(s.name, "Windows Server 2019 ARM64");
        assert_eq!(s.kms, WS2019_KMS_ID);
        let item = s.kms_item().unwrap();
        assert_eq!(item.name, "Windows Server 2019");
        assert_eq!(s.class, ProductClass::ServerOs);
        assert_eq!(s.protocol(), Some(6));
        assert_eq!(s.application().map(|a| a.kind), Some(AppKind::Windows));
        let groups: Vec<_> = s.activated_by().map(|g| g.name).collect();
        assert_eq!(
            groups,
            [
                "Volume License for Windows Server 2025",
                "Volume License for Windows Server 2022",
                "Volume License for Windows Server 2019"
            ]
        );
    }

    #[test]
    fn test_find_sku_loose_names() {
        let id = Some(VLMCS_DEFAULT_SKU);
        assert_eq!(find_sku("Windows Server 2019 ARM64").map(|s| s.id), id);
        assert_eq!(find_sku("windows-server-2019-arm64").map(|s| s.id), id);
        assert_eq!(find_sku("WINDOWS_SERVER_2019_ARM64").map(|s| s.id), id);
        assert_eq!(find_sku("windowsserver2019arm64").map(|s| s.id), id);
        // A cut-short last word still picks out the one product it begins.
        assert_eq!(find_sku("windows server 2019 arm").map(|s| s.id), id);
        assert!(find_sku("windows server 2019 zz").is_none());
        assert!(find_sku("").is_none());
        let ent = find_sku("windows-10/11-enterprise").unwrap();
        assert_eq!(ent.kms, K_WIN10.id);
    }

    #[test]
    fn test_host_key_group_lookup() {
        assert_eq!(default_host_key_group().name, DEFAULT_HOST_KEY_GROUP);
        assert_eq!(
            host_key_group(DEFAULT_HOST_KEY_GROUP),
            Some(default_host_key_group())
        );
        assert_eq!(
            host_key_group("VOLUME LICENSE FOR WINDOWS SERVER 2019").map(|g| g.epid_group_id),
            Some(206)
        );
        assert!(host_key_group("volume-license-for-windows-10").is_some());
        assert!(host_key_group("Volume License for Windows Server 2003").is_none());
    }

    #[test]
    fn test_class_thresholds() {
        assert_eq!(ProductClass::ClientOs.threshold(), 25);
        assert_eq!(ProductClass::ServerOs.threshold(), 5);
        assert_eq!(ProductClass::Office.threshold(), 5);
        // activate-clients-running-windows.md: 50 client IDs, 10 when only servers ask.
        assert_eq!(ProductClass::ClientOs.cache_size(), 50);
        assert_eq!(ProductClass::ServerOs.cache_size(), 10);
        assert_eq!(ProductClass::Office.cache_size(), 10);
    }

    #[test]
    fn test_protocol_by_generation() {
        let protocol = |name: &str| find_sku(name).and_then(|s| s.protocol());
        assert_eq!(protocol("Windows 7 Enterprise"), Some(4));
        assert_eq!(protocol("Windows Server 2008 R2 Standard"), Some(4));
        assert_eq!(protocol("Office Professional Plus 2010"), Some(4));
        assert_eq!(protocol("Windows 8 Enterprise"), Some(5));
        assert_eq!(protocol("Windows Server 2012 Datacenter"), Some(5));
        assert_eq!(protocol("Office Professional Plus 2013"), Some(5));
        assert_eq!(protocol("Windows 8.1 Enterprise"), Some(6));
        assert_eq!(protocol("Windows Server 2012 R2 Standard"), Some(6));
        assert_eq!(protocol("Windows Server 2022 Datacenter"), Some(6));
        assert_eq!(protocol("Office Professional Plus 2016"), Some(6));
        assert_eq!(protocol("Office LTSC Professional Plus 2021"), Some(6));
    }

    #[test]
    fn test_docs_facts() {
        let ws2019 = group("Volume License for Windows Server 2019");
        let win7_ent = find_sku("Windows 7 Enterprise").unwrap();
        assert!(ws2019.activates_sku(win7_ent));
        assert!(ws2019.activates_kms_id(&K_WS2016.id));
        assert!(ws2019.activates_sku(find_sku("Windows 10 Enterprise LTSC 2019").unwrap()));
        assert!(!ws2019.activates_kms_id(&K_WS2022.id));

        // Client keys activate no server edition.
        let win10 = group("Volume license for Windows 10");
        for s in SKUS.iter().filter(|s| s.class == ProductClass::ServerOs) {
            assert!(
                !win10.activates_sku(s),
                "Windows 10 key activates {}",
                s.name
            );
        }
        assert!(win10.activates_sku(find_sku("Windows 8.1 Professional").unwrap()));
        assert!(!win10.activates_sku(find_sku("Windows 10 Enterprise 2016 LTSB").unwrap()));

        // Windows Server 2016 key: LTSB 2015/2016 but not LTSC 2019 nor Server 2019.
        let ws2016 = group("Volume License for Windows Server 2016");
        assert!(ws2016.activates_sku(find_sku("Windows 10 Enterprise 2016 LTSB").unwrap()));
        assert!(ws2016.activates_sku(find_sku("Windows 10 Enterprise 2015 LTSB").unwrap()));
        assert!(!ws2016.activates_sku(find_sku("Windows 10 Enterprise LTSC 2019").unwrap()));
        assert!(!ws2016.activates_kms_id(&WS2019_KMS_ID));

        // 2012 R2 for Windows 10: Windows 10 yes, Server 2016 no.
        let r2 = group("Volume license for Windows Server 2012 R2 for Windows 10");
        assert!(r2.activates_sku(find_sku("Windows 10/11 Pro").unwrap()));
        assert!(!r2.activates_kms_id(&K_WS2016.id));

        // Windows Server 2022 key: Windows 11 editions and every older server.
        let ws2022 = default_host_key_group();
        assert!(ws2022.activates_sku(find_sku("Windows 10/11 Education").unwrap()));
        for s in SKUS.iter().filter(|s| s.class == ProductClass::ServerOs) {
            assert!(ws2022.activates_sku(s), "{}", s.name);
        }
        assert!(!ws2022.activates_kms_id(&K_OFFICE2021.id));
    }

    #[test]
    fn test_office_groups_are_cumulative_within_application() {
        let o2019 = group("Volume License for Office 2019");
        assert!(o2019.activates_sku(find_sku("Office Standard 2016").unwrap()));
        assert!(o2019.activates_sku(find_sku("Office Standard 2013").unwrap()));
        assert!(!o2019.activates_sku(find_sku("Office Standard 2010").unwrap()));
        assert!(!o2019.activates_kms_id(&K_OFFICE2021.id));
        let o2010 = group("Volume License for Office 2010");
        assert_eq!(
            o2010.kms_items().map(|k| k.name).collect::<Vec<_>>(),
            ["Office 2010"]
        );
    }

    #[test]
    fn test_serializes_guids_as_text() {
        let json = serde_json::to_string(default_host_key_group()).unwrap();
        assert!(
            json.contains("\"b74263e4-0f92-46c6-bcf8-c11d5efe2959\""),
            "{json}"
        );
        assert!(json.contains("\"key_ids\""), "{json}");
    }

    #[test]
    fn products_by_the_names_users_type() {
        let name = |s: &str| lookup_sku(s).map(|k| k.name);
        assert_eq!(
            name("Windows 10 Enterprise"),
            Ok("Windows 10/11 Enterprise")
        );
        assert_eq!(
            name("windows 11 enterprise"),
            Ok("Windows 10/11 Enterprise")
        );
        assert_eq!(name("Win11 Pro"), Ok("Windows 10/11 Pro"));
        assert_eq!(name("Windows 11 Professional"), Ok("Windows 10/11 Pro"));
        assert_eq!(
            name("Office 2021 ProPlus"),
            Ok("Office LTSC Professional Plus 2021")
        );
        assert_eq!(
            name("server 2022 data"),
            Ok("Windows Server 2022 Datacenter")
        );
        assert_eq!(
            name("WINDOWS-SERVER-2019-STANDARD"),
            Ok("Windows Server 2019 Standard")
        );
        assert_eq!(
            name("ef6cfc9f-8c5d-44ac-9aad-de6a2ea0ae03"),
            Ok("Windows Server 2022 Datacenter")
        );
        match lookup_sku("Windows Server 2022") {
            Err(SkuLookup::Ambiguous(names)) => {
                assert!(names.contains(&"Windows Server 2022 Standard"), "{names:?}")
            }
            other => panic!("{other:?}"),
        }
        match lookup_sku("Windows Sevrer 2022 Datacenter") {
            Err(SkuLookup::NotFound(near)) => {
                assert_eq!(
                    near.first(),
                    Some(&"Windows Server 2022 Datacenter"),
                    "{near:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup_sku("Windows 95 Plus"),
            Err(SkuLookup::NotFound(_))
        ));
        assert!(lookup_sku("").is_err());
        // Every catalog name still finds itself.
        for s in SKUS {
            assert_eq!(lookup_sku(s.name).map(|k| k.id), Ok(s.id), "{}", s.name);
        }
    }

    #[test]
    fn ws2025_group_activates_everything_the_2022_group_does_and_ltsc_2024() {
        let ws2025 = group("Volume License for Windows Server 2025");
        let ws2022 = default_host_key_group();
        for id in ws2022.activates {
            assert!(ws2025.activates_kms_id(id), "{id}");
        }
        assert!(ws2025.activates_kms_id(&K_WS2022.id));
        for s in SKUS.iter().filter(|s| s.app_is(AppKind::Windows)) {
            if s.kms != K_WIN10_GOV.id && s.kms != K_WIN8.id && s.kms != K_VISTA.id {
                assert!(ws2025.activates_sku(s), "{}", s.name);
            }
        }
        for name in [
            "Windows 11 Enterprise LTSC 2024",
            "Windows 10 Enterprise LTSC 2021",
            "Windows 11 Enterprise multi-session",
            "Windows 11 SE",
            "Windows IoT Enterprise LTSC 2024",
        ] {
            let sku = lookup_sku(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(sku.class, ProductClass::ClientOs, "{name}");
            assert_eq!(sku.class.threshold(), 25, "{name}");
            assert!(ws2025.activates_sku(sku), "{name}");
        }
        assert!(!ws2025.activates_kms_id(&K_OFFICE2021.id));
        assert_eq!(ws2025.epid_group_id, 4918);
        assert_eq!(host_key_groups_for_epid(4918, 30_000).count(), 1);
        assert_eq!(host_key_groups_for_epid(4573, 29_999).count(), 0);
        assert_eq!(host_key_groups_for_epid(4573, 30_000).count(), 1);
    }

    #[test]
    fn unconfirmed_ids_are_marked_and_invented_ones_absent() {
        for s in SKUS {
            assert!(!s.source.is_empty(), "{}", s.name);
        }
        for k in KMS_ITEMS {
            assert!(
                !k.source.is_empty() && !k.skus_source.is_empty(),
                "{}",
                k.name
            );
        }
        // py-kms's name-based placeholders for the Server 2025 and Office LTSC 2024 KMS IDs.
        for placeholder in [
            "4b83307d-7788-50ff-8d1f-1861915bdb9d",
            "1b4db7eb-4057-5ddf-91e0-36dec72071f5",
        ] {
            assert!(
                kms_item(&placeholder.parse().unwrap()).is_none(),
                "{placeholder}"
            );
        }
        // A GUID whose version nibble is 5 is name-based, never a Microsoft product ID.
        let ids = KMS_ITEMS
            .iter()
            .map(|k| k.id)
            .chain(SKUS.iter().map(|s| s.id));
        for id in ids {
            assert_ne!(id.to_string().as_bytes()[14], b'5', "{id}");
        }
        let se = find_sku("Windows 11 SE").unwrap();
        assert!(
            se.source.starts_with("unverified: only py-kms"),
            "{}",
            se.source
        );
        let ms = find_sku("Windows 10/11 Enterprise multi-session").unwrap();
        assert_eq!(ms.kms, K_WIN10.id);
        assert!(ms.source.contains("vlmcsd"), "{}", ms.source);
    }

    #[test]
    fn default_groups_activate_the_default_mix_products() {
        let groups = default_host_key_groups();
        assert_eq!(groups.len(), DEFAULT_HOST_KEY_GROUPS.len());
        for name in [
            "Windows 10/11 Enterprise",
            "Windows Server 2022 Datacenter",
            "Office LTSC Professional Plus 2021",
            "Office Professional Plus 2016",
        ] {
            let sku = find_sku(name).unwrap();
            assert!(groups.iter().any(|g| g.activates_sku(sku)), "{name}");
        }
    }
}
