//! Catalog files (`--catalog FILE`): entries that extend or override the built-in tables at run
//! time, read from the table's own shape (`kmsharness-catalog/1`, as `activate --list --json`
//! prints it, in JSON or TOML) or from py-kms's `KmsDataBase.xml` as it is.
//!
//! An entry overrides the built-in one with the same ID (a SKU or a product group) or the same
//! name (a host key group); anything else is added. Parsing takes text and returns values; the
//! caller reads the file and installs the result with [`super::install`].

use std::collections::HashMap;
use std::ops::RangeInclusive;

use serde::Deserialize;

use super::{
    AppKind, EPID_GROUP_206, HostKeyGroup, KMS_ITEMS, KmsItem, ProductClass, Sku, application,
    builtin_host_key_group, loose_eq,
};
use crate::wire::Guid;

/// The `format` value of the table's own shape.
pub const FORMAT: &str = "kmsharness-catalog/1";

/// The largest catalog file read, bytes. py-kms's whole database is 72 KB; this keeps a wrong
/// file (a capture, a disk image) from being read into memory.
pub const MAX_FILE_LEN: u64 = 16 << 20;

/// The major protocol version of a product group a file does not give one for: every product
/// since Windows 8.1 and Office 2016 sends V6 (vlmcsd kmsdata, py-kms DefaultKmsProtocol).
const DEFAULT_PROTOCOL: u8 = 6;

/// Key IDs of a py-kms CSVLK that gives none (its pre-release entries): the ePID field's whole
/// range, so any ePID of the group matches.
const ANY_KEY_ID: RangeInclusive<u32> = 0..=999_999_999;

/// What a catalog file adds to the built-in tables, its strings made `'static` (one file per
/// process, so the memory is that of the file, kept for the run).
#[derive(Debug, Clone, Default)]
pub struct Extension {
    /// Where the entries came from, e.g. `--catalog site.toml`.
    pub origin: &'static str,
    /// Product groups: new ones and overrides of built-in ones.
    pub kms_items: Vec<KmsItem>,
    /// Editions: new ones and overrides.
    pub skus: Vec<Sku>,
    /// Host key groups: new ones and overrides.
    pub host_key_groups: Vec<HostKeyGroup>,
}

impl Extension {
    /// The file's product group with this KMS ID.
    pub fn kms_item(&self, id: &Guid) -> Option<&KmsItem> {
        self.kms_items.iter().find(|k| k.id == *id)
    }

    /// The file's edition with this SKU ID.
    pub fn sku(&self, id: &Guid) -> Option<&Sku> {
        self.skus.iter().find(|s| s.id == *id)
    }

    /// The file's host key group with this name (compared loosely).
    pub fn host_key_group(&self, name: &str) -> Option<&HostKeyGroup> {
        self.host_key_groups.iter().find(|g| loose_eq(g.name, name))
    }
}

/// Why a catalog file was not taken. Each names the entry (or the XML byte offset) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The text is none of the three shapes.
    #[error("{0}")]
    Syntax(String),
    /// The document says it is another format.
    #[error("format is {0:?}, expected {FORMAT:?} (or py-kms KmsDataBase.xml)")]
    Format(String),
    /// An entry is incomplete or contradicts the tables.
    #[error("{entry}: {what}")]
    Entry {
        /// The entry, e.g. `skus[3] ("Windows 12 Pro")` or `KmsItem at byte 812`.
        entry: String,
        /// What is wrong with it.
        what: String,
    },
}

fn entry_error(entry: impl Into<String>, what: impl Into<String>) -> CatalogError {
    CatalogError::Entry {
        entry: entry.into(),
        what: what.into(),
    }
}

/// Parses a catalog file's text. `origin` names it in every entry's source that the file does
/// not give (e.g. `--catalog site.toml`).
pub fn parse(text: &str, origin: &str) -> Result<Extension, CatalogError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let origin = leak(origin);
    if trimmed.starts_with('<') {
        return pykms::parse(trimmed, origin);
    }
    let doc: Document = if trimmed.starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(trimmed);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| CatalogError::Syntax(format!("JSON: {}: {}", e.path(), e.inner())))?
    } else {
        toml::from_str(trimmed).map_err(|e| CatalogError::Syntax(format!("TOML: {e}")))?
    };
    if let Some(format) = &doc.format
        && format != FORMAT
    {
        return Err(CatalogError::Format(format.clone()));
    }
    Builder::new(origin).document(doc)
}

// ---------------------------------------------------------------------------------------------
// The table's own shape

/// `kmsharness-catalog/1`. The derived fields `activate --list --json` also prints
/// (`application`, `threshold`, `kms_source`) are read as hints, so its output reads back. The
/// type `docs/catalog.schema.json` is generated from.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Catalog")]
pub struct Document {
    /// `kmsharness-catalog/1`, or absent.
    #[schemars(extend("const" = "kmsharness-catalog/1"))]
    format: Option<String>,
    /// Editions, each added or overriding the built-in one with its SKU ID.
    #[serde(default)]
    skus: Vec<SkuEntry>,
    /// Host key groups, each added or overriding the built-in one with its name.
    #[serde(default)]
    host_key_groups: Vec<GroupEntry>,
}

/// One edition.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SkuEntry {
    /// The edition's name, e.g. `Windows 10/11 Enterprise`.
    name: String,
    /// SKU (activation) ID.
    id: Guid,
    /// KMS counted ID of its product group.
    kms_id: Guid,
    /// The product group's name. Needed, with the class and application, when `kms_id` is a
    /// product group the tables lack.
    kms_name: Option<String>,
    /// Where the product group's ID comes from (read as a hint).
    kms_source: Option<String>,
    /// Application name (read as a hint).
    application: Option<String>,
    /// Application ID: Windows, Office 2010 or Office 2013 and later.
    application_id: Option<Guid>,
    /// KMS protocol major version the edition speaks (4, 5 or 6).
    protocol: Option<u8>,
    /// `client_os`, `server_os` or `office`: sets the activation threshold.
    class: Option<String>,
    /// Activation threshold (read as a hint; the class sets it).
    threshold: Option<u32>,
    /// Host key groups that activate the edition's product group: each gains its KMS ID.
    #[serde(default)]
    activated_by: Vec<String>,
    /// Where the entry's IDs come from.
    source: Option<String>,
    /// Printed by `activate --list --json`; ignored on input.
    #[serde(default, rename = "origin")]
    _origin: Option<String>,
}

/// One host key group.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    /// The group's name, e.g. `Volume License for Windows Server 2025`.
    name: String,
    /// Application name or ID.
    application: String,
    /// The ePID's group ID.
    epid_group_id: u32,
    /// First and last key ID of the ePID's key ID range.
    key_ids: [u32; 2],
    /// Product groups by name or KMS ID.
    #[serde(default)]
    activates: Vec<String>,
    /// Where the group comes from.
    source: Option<String>,
    /// Printed by `activate --list --json`; ignored on input.
    #[serde(default, rename = "origin")]
    _origin: Option<String>,
}

/// Collects entries, resolving names against the file's own entries first, then the built-in
/// tables.
struct Builder {
    ext: Extension,
    /// Host key groups' activation lists while they are built.
    activates: HashMap<String, Vec<Guid>>,
}

impl Builder {
    fn new(origin: &'static str) -> Builder {
        Builder {
            ext: Extension {
                origin,
                ..Extension::default()
            },
            activates: HashMap::new(),
        }
    }

    fn document(mut self, doc: Document) -> Result<Extension, CatalogError> {
        for (i, e) in doc.skus.iter().enumerate() {
            let entry = format!("skus[{i}] ({:?})", e.name);
            self.sku_entry(&entry, e)?;
        }
        for (i, g) in doc.host_key_groups.iter().enumerate() {
            let entry = format!("host_key_groups[{i}] ({:?})", g.name);
            self.group_entry(&entry, g)?;
        }
        for (i, e) in doc.skus.iter().enumerate() {
            for name in &e.activated_by {
                let entry = format!("skus[{i}] ({:?})", e.name);
                self.activate_in(&entry, name, e.kms_id)?;
            }
        }
        Ok(self.finish())
    }

    fn kms_item(&self, id: &Guid) -> Option<KmsItem> {
        self.ext
            .kms_item(id)
            .or_else(|| KMS_ITEMS.iter().find(|k| k.id == *id))
            .copied()
    }

    fn sku_entry(&mut self, entry: &str, e: &SkuEntry) -> Result<(), CatalogError> {
        let app = match (&e.application_id, &e.application) {
            (Some(id), _) => Some(app_kind(&id.to_string()).ok_or_else(|| {
                entry_error(entry, format!("application_id {id} is no KMS application"))
            })?),
            (None, Some(name)) => Some(app_kind(name).ok_or_else(|| {
                entry_error(entry, format!("application {name:?} is no KMS application"))
            })?),
            (None, None) => None,
        };
        let group = match self.kms_item(&e.kms_id) {
            Some(mut k) => {
                // The entry may restate the group; it may not contradict it silently.
                if let Some(name) = &e.kms_name
                    && name != k.name
                {
                    k.name = leak(name);
                    k.source = self.source(e.kms_source.as_deref());
                    self.put_kms_item(k);
                }
                k
            }
            None => {
                let name = e.kms_name.as_deref().ok_or_else(|| {
                    entry_error(
                        entry,
                        format!(
                            "kms_id {} is no product group in the catalog or the file; give \
                             kms_name, application_id and class (or threshold) to add one",
                            e.kms_id
                        ),
                    )
                })?;
                let app = app.ok_or_else(|| {
                    entry_error(entry, "a new product group needs application_id")
                })?;
                let class = class_of(e.class.as_deref(), e.threshold, app)
                    .map_err(|what| entry_error(entry, what))?;
                let protocol = e.protocol.unwrap_or(DEFAULT_PROTOCOL);
                if !(4..=6).contains(&protocol) {
                    return Err(entry_error(
                        entry,
                        format!("protocol {protocol}: KMS has versions 4, 5 and 6"),
                    ));
                }
                let item = KmsItem {
                    name: leak(name),
                    id: e.kms_id,
                    app,
                    class,
                    protocol,
                    source: self.source(e.kms_source.as_deref()),
                    skus_source: self.ext.origin,
                };
                self.put_kms_item(item);
                item
            }
        };
        if let Some(app) = app
            && app != group.app
        {
            return Err(entry_error(
                entry,
                format!("product group {:?} belongs to {:?}", group.name, group.app),
            ));
        }
        self.put_sku(Sku {
            name: leak(&e.name),
            id: e.id,
            kms: group.id,
            class: group.class,
            source: self.source(e.source.as_deref()),
        });
        Ok(())
    }

    fn group_entry(&mut self, entry: &str, g: &GroupEntry) -> Result<(), CatalogError> {
        let app = app_kind(&g.application).ok_or_else(|| {
            entry_error(
                entry,
                format!("application {:?} is no KMS application", g.application),
            )
        })?;
        let [min, max] = g.key_ids;
        if min > max {
            return Err(entry_error(
                entry,
                format!("key_ids [{min}, {max}] is empty"),
            ));
        }
        let mut ids = Vec::new();
        for product in &g.activates {
            ids.push(self.kms_id_named(product).ok_or_else(|| {
                entry_error(
                    entry,
                    format!("activates {product:?}: no product group has that name or KMS ID"),
                )
            })?);
        }
        self.put_group(
            HostKeyGroup {
                name: leak(&g.name),
                app,
                epid_group_id: g.epid_group_id,
                key_ids: min..=max,
                activates: &[],
                source: self.source(g.source.as_deref()),
            },
            ids,
        );
        Ok(())
    }

    /// Adds `kms_id` to the host key group `name` (the file's, or a copy of the built-in one).
    fn activate_in(&mut self, entry: &str, name: &str, kms_id: Guid) -> Result<(), CatalogError> {
        if self.ext.host_key_group(name).is_none() {
            let builtin = builtin_host_key_group(name).ok_or_else(|| {
                entry_error(
                    entry,
                    format!("activated_by {name:?}: no such host key group"),
                )
            })?;
            self.put_group(builtin.clone(), builtin.activates.to_vec());
        }
        let Some(group) = self.ext.host_key_group(name) else {
            return Ok(());
        };
        let ids = self.activates.entry(group.name.to_owned()).or_default();
        if !ids.contains(&kms_id) {
            ids.push(kms_id);
        }
        Ok(())
    }

    fn kms_id_named(&self, text: &str) -> Option<Guid> {
        if let Ok(id) = text.trim().parse::<Guid>() {
            return self.kms_item(&id).map(|k| k.id);
        }
        self.ext
            .kms_items
            .iter()
            .chain(KMS_ITEMS)
            .find(|k| loose_eq(k.name, text))
            .map(|k| k.id)
    }

    fn source(&self, given: Option<&str>) -> &'static str {
        given.map_or(self.ext.origin, leak)
    }

    fn put_kms_item(&mut self, item: KmsItem) {
        self.ext.kms_items.retain(|k| k.id != item.id);
        self.ext.kms_items.push(item);
    }

    fn put_sku(&mut self, sku: Sku) {
        self.ext.skus.retain(|s| s.id != sku.id);
        self.ext.skus.push(sku);
    }

    fn put_group(&mut self, group: HostKeyGroup, ids: Vec<Guid>) {
        self.ext
            .host_key_groups
            .retain(|g| !loose_eq(g.name, group.name));
        self.activates.insert(group.name.to_owned(), ids);
        self.ext.host_key_groups.push(group);
    }

    fn finish(mut self) -> Extension {
        for g in &mut self.ext.host_key_groups {
            let ids = self.activates.remove(g.name).unwrap_or_default();
            g.activates = Box::leak(ids.into_boxed_slice());
        }
        self.ext
    }
}

/// The application named by `text`: its ID, its kind (`windows`, `office2010`, `office2013`, as
/// `activate --list --json` writes it) or its display name.
fn app_kind(text: &str) -> Option<AppKind> {
    if let Ok(id) = text.trim().parse::<Guid>() {
        return application(&id).map(|a| a.kind);
    }
    super::APPLICATIONS
        .iter()
        .find(|a| loose_eq(a.name, text) || loose_eq(&format!("{:?}", a.kind), text))
        .map(|a| a.kind)
}

/// A product class from its name (`client_os` as `activate --list --json` writes it, `ClientOs`
/// as earlier versions did, `client os`) or, failing that, from
/// the threshold: 25 is a client OS, 5 a server OS for Windows and Office for Office.
fn class_of(
    class: Option<&str>,
    threshold: Option<u32>,
    app: AppKind,
) -> Result<ProductClass, String> {
    const CLASSES: [ProductClass; 3] = [
        ProductClass::ClientOs,
        ProductClass::ServerOs,
        ProductClass::Office,
    ];
    if let Some(text) = class {
        return CLASSES
            .into_iter()
            .find(|c| loose_eq(&format!("{c:?}"), text) || loose_eq(c.name(), text))
            .ok_or_else(|| format!("class {text:?}: expected client_os, server_os or office"));
    }
    match (threshold, app) {
        (Some(25), AppKind::Windows) => Ok(ProductClass::ClientOs),
        (Some(5), AppKind::Windows) => Ok(ProductClass::ServerOs),
        (Some(5), _) => Ok(ProductClass::Office),
        (Some(n), _) => Err(format!(
            "threshold {n}: Windows clients activate at 25, servers and Office at 5"
        )),
        (None, _) => Err("a new product group needs class (or threshold)".to_owned()),
    }
}

/// Gives a parsed string the catalog's lifetime. Called once per entry of the one file a run
/// reads, so what it keeps is bounded by [`MAX_FILE_LEN`].
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

// ---------------------------------------------------------------------------------------------
// py-kms KmsDataBase.xml

mod pykms {
    //! `KmsData` version 2.0 as py-kms ships it: `CsvlkItems/CsvlkItem` (host keys, with
    //! `Activate KmsItem=` children) and `AppItems/AppItem/KmsItem/SkuItem`. `WinBuilds` and
    //! attributes this catalog has no place for are skipped.

    use quick_xml::Reader;
    use quick_xml::events::{BytesStart, Event};

    use super::*;

    /// A CSVLK while its `Activate` children are read.
    struct Csvlk {
        name: String,
        group: Option<u32>,
        keys: Option<RangeInclusive<u32>>,
        activates: Vec<Guid>,
    }

    pub(super) fn parse(text: &str, origin: &'static str) -> Result<Extension, CatalogError> {
        let mut reader = Reader::from_str(text);
        let mut b = Builder::new(origin);
        let mut saw_root = false;
        let mut app: Option<AppKind> = None;
        let mut kms: Option<KmsItem> = None;
        let mut csvlk: Option<Csvlk> = None;
        let mut csvlks = Vec::new();
        loop {
            let at = reader.buffer_position();
            let event = reader.read_event().map_err(|e| {
                CatalogError::Syntax(format!("XML at byte {}: {e}", reader.error_position()))
            })?;
            let (e, empty) = match &event {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(e) => {
                    match e.local_name().as_ref() {
                        b"AppItem" => app = None,
                        b"KmsItem" => kms = None,
                        b"CsvlkItem" => csvlks.extend(csvlk.take()),
                        _ => {}
                    }
                    continue;
                }
                Event::Eof => break,
                _ => continue,
            };
            let here = |tag: &str| format!("{tag} at byte {at}");
            match e.local_name().as_ref() {
                b"KmsData" => saw_root = true,
                b"AppItem" => {
                    let id = guid(e, "Id", &here("AppItem"))?;
                    let kind = application(&id).map(|a| a.kind).ok_or_else(|| {
                        entry_error(here("AppItem"), format!("Id {id} is no KMS application"))
                    })?;
                    app = (!empty).then_some(kind);
                }
                b"KmsItem" => {
                    let entry = here("KmsItem");
                    let app = app.ok_or_else(|| entry_error(&entry, "outside an AppItem"))?;
                    let id = guid(e, "Id", &entry)?;
                    let name = attr(e, "DisplayName", &entry)?.unwrap_or_else(|| id.to_string());
                    let threshold = attr(e, "NCountPolicy", &entry)?
                        .map(|n| number(&n, "NCountPolicy", &entry))
                        .transpose()?;
                    let class = class_of(None, threshold.or(Some(25)), app)
                        .map_err(|what| entry_error(&entry, what))?;
                    let protocol = match attr(e, "DefaultKmsProtocol", &entry)? {
                        Some(v) => {
                            let major = v.split('.').next().unwrap_or_default();
                            match major.parse::<u8>() {
                                Ok(p @ 4..=6) => p,
                                _ => {
                                    return Err(entry_error(
                                        entry,
                                        format!(
                                            "DefaultKmsProtocol {v:?}: expected 4.0, 5.0 or 6.0"
                                        ),
                                    ));
                                }
                            }
                        }
                        None => DEFAULT_PROTOCOL,
                    };
                    let item = KmsItem {
                        name: leak(&name),
                        id,
                        app,
                        class,
                        protocol,
                        source: origin,
                        skus_source: origin,
                    };
                    b.put_kms_item(item);
                    kms = (!empty).then_some(item);
                }
                b"SkuItem" => {
                    let entry = here("SkuItem");
                    let group = kms.ok_or_else(|| entry_error(&entry, "outside a KmsItem"))?;
                    let id = guid(e, "Id", &entry)?;
                    let name = attr(e, "DisplayName", &entry)?.unwrap_or_else(|| id.to_string());
                    b.put_sku(Sku {
                        name: leak(&name),
                        id,
                        kms: group.id,
                        class: group.class,
                        source: origin,
                    });
                }
                b"CsvlkItem" => {
                    let entry = here("CsvlkItem");
                    let name = attr(e, "DisplayName", &entry)?
                        .ok_or_else(|| entry_error(&entry, "no DisplayName"))?;
                    let group = attr(e, "GroupId", &entry)?
                        .map(|n| number(&n, "GroupId", &entry))
                        .transpose()?;
                    let min = attr(e, "MinKeyId", &entry)?
                        .map(|n| number(&n, "MinKeyId", &entry))
                        .transpose()?;
                    let max = attr(e, "MaxKeyId", &entry)?
                        .map(|n| number(&n, "MaxKeyId", &entry))
                        .transpose()?;
                    let keys = match (min, max) {
                        (Some(min), Some(max)) if min <= max => Some(min..=max),
                        (Some(min), Some(max)) => {
                            return Err(entry_error(
                                entry,
                                format!("MinKeyId {min} above MaxKeyId {max}"),
                            ));
                        }
                        _ => None,
                    };
                    let item = Csvlk {
                        name,
                        group,
                        keys,
                        activates: Vec::new(),
                    };
                    if empty {
                        csvlks.push(item);
                    } else {
                        csvlk = Some(item);
                    }
                }
                b"Activate" => {
                    let entry = here("Activate");
                    let c = csvlk
                        .as_mut()
                        .ok_or_else(|| entry_error(&entry, "outside a CsvlkItem"))?;
                    c.activates.push(guid(e, "KmsItem", &entry)?);
                }
                _ => {}
            }
        }
        if !saw_root {
            return Err(CatalogError::Syntax(
                "XML without a KmsData element: not a py-kms KmsDataBase.xml".to_owned(),
            ));
        }
        // Activate entries point at KmsItems anywhere in the file, so CSVLKs are resolved last.
        for c in csvlks {
            // py-kms's own file points at KMS IDs it lists nowhere (lab and retail groups): they
            // stay in the activation list, where an unknown ID does no harm.
            let app = c
                .activates
                .iter()
                .find_map(|id| b.kms_item(id))
                .map(|k| k.app);
            let source = if c.group.is_some() && c.keys.is_some() {
                origin
            } else {
                leak(&format!(
                    "{origin} (no GroupId or key IDs given: group {EPID_GROUP_206} and any key ID \
                     assumed)"
                ))
            };
            b.put_group(
                HostKeyGroup {
                    name: leak(&c.name),
                    app: app.unwrap_or(AppKind::Windows),
                    epid_group_id: c.group.unwrap_or(EPID_GROUP_206),
                    key_ids: c.keys.unwrap_or(ANY_KEY_ID),
                    activates: &[],
                    source,
                },
                c.activates,
            );
        }
        Ok(b.finish())
    }

    /// An attribute's unescaped value, `None` when absent or empty; names compare without case, as py-kms's own reader does
    /// (its file spells `DefaultKmsprotocol` once).
    fn attr(e: &BytesStart<'_>, name: &str, entry: &str) -> Result<Option<String>, CatalogError> {
        for a in e.attributes() {
            let a = a.map_err(|err| entry_error(entry, format!("attribute: {err}")))?;
            if a.key
                .local_name()
                .as_ref()
                .eq_ignore_ascii_case(name.as_bytes())
            {
                let v = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|err| entry_error(entry, format!("{name}: {err}")))?;
                // py-kms leaves some attributes empty (`GroupId=""`): absent, not zero.
                return Ok((!v.trim().is_empty()).then(|| v.into_owned()));
            }
        }
        Ok(None)
    }

    fn guid(e: &BytesStart<'_>, name: &str, entry: &str) -> Result<Guid, CatalogError> {
        let v = attr(e, name, entry)?.ok_or_else(|| entry_error(entry, format!("no {name}")))?;
        v.trim()
            .parse()
            .map_err(|err| entry_error(entry, format!("{name}: {err}")))
    }

    fn number(text: &str, name: &str, entry: &str) -> Result<u32, CatalogError> {
        text.trim()
            .parse()
            .map_err(|_| entry_error(entry, format!("{name} {text:?} is not a number")))
    }
}

#[cfg(test)]
mod tests;
