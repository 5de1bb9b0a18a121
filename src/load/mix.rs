//! The product mix of a fleet: which editions its machines run, with weights. A default mix
//! of client, server and Office editions, or one read from a JSON or TOML file.

use serde::Deserialize;

use crate::catalog::{self, HostKeyGroup, Sku};

/// One product and its weight.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// The edition.
    pub sku: &'static Sku,
    /// Relative weight.
    pub weight: u32,
}

/// A weighted list of products.
#[derive(Debug, Clone)]
pub struct Mix {
    shares: Vec<Share>,
    total: u64,
}

/// The default mix: a mostly-client Windows estate with servers and Office, every product one a
/// Windows Server 2022 host key plus an Office LTSC 2021 host key activate.
pub const DEFAULT_MIX: &[(&str, u32)] = &[
    ("Windows 10/11 Enterprise", 35),
    ("Windows 10/11 Education", 10),
    ("Windows 10 Enterprise LTSC 2019", 5),
    ("Windows Server 2022 Standard", 10),
    ("Windows Server 2022 Datacenter", 5),
    ("Windows Server 2019 Standard", 10),
    ("Office LTSC Professional Plus 2021", 15),
    ("Office Professional Plus 2019", 10),
];

/// The mix file: `{"products": [{"product": "...", "weight": 3}, ...]}` or the TOML
/// equivalent (`[[products]]` tables).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixFile {
    products: Vec<MixEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixEntry {
    product: String,
    weight: u32,
}

/// Why a mix cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// A product name or SKU ID the catalog does not hold.
    #[error("product {name:?}: {why} (see `activate --list`)")]
    UnknownProduct {
        /// The name given.
        name: String,
        /// Nothing or several products match it.
        why: catalog::SkuLookup,
    },
    /// Every weight is 0.
    #[error("the mix has no product with a weight above 0")]
    NoWeight,
    /// The file is not valid JSON or TOML of the mix's shape (the parser's message).
    #[error("{0}")]
    Syntax(String),
}

/// A [`MixError`] in a named mix file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {error}")]
pub struct MixFileError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub error: MixError,
}

impl Mix {
    /// A mix from (product name or SKU GUID, weight) pairs.
    pub fn new(entries: &[(&str, u32)]) -> Result<Mix, MixError> {
        let mut shares = Vec::new();
        for &(name, weight) in entries {
            let sku = catalog::lookup_sku(name).map_err(|why| MixError::UnknownProduct {
                name: name.to_owned(),
                why,
            })?;
            if weight > 0 {
                shares.push(Share { sku, weight });
            }
        }
        let total = shares.iter().map(|s| u64::from(s.weight)).sum();
        if total == 0 {
            return Err(MixError::NoWeight);
        }
        Ok(Mix { shares, total })
    }

    /// The default mix.
    pub fn default_mix() -> Mix {
        // The default names are pinned by a unit test.
        Mix::new(DEFAULT_MIX).unwrap_or_else(|e| unreachable!("default mix: {e}"))
    }

    /// Parses a mix file (JSON when the name ends in `.json`, TOML otherwise).
    pub fn parse(name: &str, text: &str) -> Result<Mix, MixFileError> {
        let in_file = |error| MixFileError {
            file: name.to_owned(),
            error,
        };
        let file: MixFile = if name.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| in_file(MixError::Syntax(e.to_string())))?
        } else {
            toml::from_str(text).map_err(|e| in_file(MixError::Syntax(e.message().to_owned())))?
        };
        let pairs: Vec<(&str, u32)> = file
            .products
            .iter()
            .map(|e| (e.product.as_str(), e.weight))
            .collect();
        Mix::new(&pairs).map_err(in_file)
    }

    /// The product at position `x` of the cumulative weights (`x < total`).
    pub fn pick(&self, x: u64) -> &'static Sku {
        let mut x = x % self.total;
        for s in &self.shares {
            if x < u64::from(s.weight) {
                return s.sku;
            }
            x -= u64::from(s.weight);
        }
        self.shares[0].sku
    }

    /// The products and weights.
    pub fn shares(&self) -> &[Share] {
        &self.shares
    }

    /// Sum of the weights.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Products in the mix that none of `groups` activates.
    pub fn unserved(&self, groups: &[&HostKeyGroup]) -> Vec<&'static str> {
        self.shares
            .iter()
            .filter(|s| !groups.iter().any(|g| g.activates_kms_id(&s.sku.kms)))
            .map(|s| s.sku.name)
            .collect()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_default_mix_resolves_and_is_served_by_the_embedded_host() {
        let mix = Mix::default_mix();
        assert_eq!(mix.shares().len(), DEFAULT_MIX.len());
        let groups = catalog::default_host_key_groups();
        assert_eq!(mix.unserved(&groups), Vec::<&str>::new());
    }

    #[test]
    fn test_pick_follows_weights() {
        let mix = Mix::new(&[
            ("Windows 10/11 Enterprise", 1),
            ("Windows Server 2022 Standard", 3),
        ])
        .unwrap();
        let picks: Vec<_> = (0..4).map(|x| mix.pick(x).name).collect();
        assert_eq!(
            picks,
            [
                "Windows 10/11 Enterprise",
                "Windows Server 2022 Standard",
                "Windows Server 2022 Standard",
                "Windows Server 2022 Standard"
            ]
        );
    }

    #[test]
    fn test_parse_files() {
        let json = r#"{"products": [{"product": "Windows Server 2022 Standard", "weight": 2}]}"#;
        assert_eq!(Mix::parse("m.json", json).unwrap().total(), 2);
        let toml = "[[products]]\nproduct = \"Office LTSC Professional Plus 2021\"\nweight = 5\n";
        assert_eq!(Mix::parse("m.toml", toml).unwrap().total(), 5);
        assert!(
            Mix::parse(
                "m.json",
                r#"{"products": [{"product": "Nope", "weight": 1}]}"#
            )
            .unwrap_err()
            .to_string()
            .contains("Nope")
        );
        assert!(Mix::parse("m.toml", "products = 3").is_err());
        assert!(Mix::parse("m.json", r#"{"products": []}"#).is_err());
    }
}
