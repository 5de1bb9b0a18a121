//! The tally of `inspect`: counts kept while the connections stream past (per host, per client,
//! per product, version, failed check, refusal, fault and problem), folded into the
//! [`Summary`] at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::catalog;
use crate::proto::check::CheckId;
use crate::proto::summary::{RequestSummary, ResponseSummary};
use crate::wire::kms::Version;
use crate::wire::rpc::FaultStatus;
use crate::wire::{Guid, HResult};

use super::EPIDS_LISTED;
use super::model::{
    ClientSummary, ErrorSummary, HostSummary, NamedCount, OutcomeCounts, ProductCount, Summary,
};

#[derive(Debug, Default)]
pub(super) struct HostTally {
    pub(super) connections: usize,
    pub(super) exchanges: usize,
    pub(super) responses: usize,
    pub(super) count_min: Option<u32>,
    pub(super) count_max: Option<u32>,
    pub(super) epids: BTreeSet<String>,
}

impl HostTally {
    pub(super) fn response(&mut self, r: &ResponseSummary) {
        self.responses += 1;
        self.count_min = Some(self.count_min.map_or(r.count, |m| m.min(r.count)));
        self.count_max = Some(self.count_max.map_or(r.count, |m| m.max(r.count)));
        if !self.epids.contains(&r.epid) {
            self.epids.insert(r.epid.clone());
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct ClientTally {
    pub(super) connections: usize,
    pub(super) exchanges: usize,
    pub(super) cmids: HashSet<Guid>,
}

#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) connections: usize,
    pub(super) kms_connections: usize,
    pub(super) skipped: usize,
    pub(super) exchanges: usize,
    pub(super) outcomes: OutcomeCounts,
    pub(super) hosts: BTreeMap<SocketAddr, HostTally>,
    pub(super) clients: BTreeMap<IpAddr, ClientTally>,
    pub(super) cmids: HashSet<Guid>,
    pub(super) products: HashMap<Guid, usize>,
    pub(super) versions: BTreeMap<Version, usize>,
    pub(super) failed_checks: BTreeMap<CheckId, usize>,
    pub(super) refusals: BTreeMap<HResult, usize>,
    pub(super) faults: BTreeMap<u32, usize>,
    pub(super) problems: BTreeMap<&'static str, usize>,
}

impl Tally {
    pub(super) fn problem(&mut self, what: &'static str) {
        *self.problems.entry(what).or_default() += 1;
    }

    pub(super) fn failed_check(&mut self, id: CheckId) {
        *self.failed_checks.entry(id).or_default() += 1;
    }

    pub(super) fn request(&mut self, r: &RequestSummary, client: IpAddr) {
        let c = self.clients.entry(client).or_default();
        c.exchanges += 1;
        c.cmids.insert(r.cmid);
        self.cmids.insert(r.cmid);
        *self.products.entry(r.sku_id).or_default() += 1;
        *self.versions.entry(r.version).or_default() += 1;
    }

    pub(super) fn summary(&mut self) -> Summary {
        let named = |name: String, count: usize| NamedCount { name, count };
        let mut products: Vec<ProductCount> = self
            .products
            .iter()
            .map(|(id, n)| {
                let sku = catalog::sku(id);
                ProductCount {
                    sku_id: *id,
                    product: sku.map_or("unknown SKU", |s| s.name),
                    application: sku.and_then(|s| s.application()).map(|a| a.name),
                    requests: *n,
                }
            })
            .collect();
        products.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then(a.product.cmp(b.product))
                .then(a.sku_id.cmp(&b.sku_id))
        });
        Summary {
            connections: self.connections,
            kms_connections: self.kms_connections,
            skipped_connections: self.skipped,
            exchanges: self.exchanges,
            outcomes: self.outcomes,
            hosts: self
                .hosts
                .iter()
                .map(|(addr, h)| HostSummary {
                    address: *addr,
                    connections: h.connections,
                    exchanges: h.exchanges,
                    responses: h.responses,
                    count_min: h.count_min,
                    count_max: h.count_max,
                    distinct_epids: h.epids.len(),
                    epids: h.epids.iter().take(EPIDS_LISTED).cloned().collect(),
                })
                .collect(),
            clients: self
                .clients
                .iter()
                .map(|(addr, c)| ClientSummary {
                    address: *addr,
                    connections: c.connections,
                    exchanges: c.exchanges,
                    distinct_cmids: c.cmids.len(),
                })
                .collect(),
            distinct_cmids: self.cmids.len(),
            products,
            versions: self
                .versions
                .iter()
                .map(|(v, n)| named(v.to_string(), *n))
                .collect(),
            errors: ErrorSummary {
                failed_checks: self
                    .failed_checks
                    .iter()
                    .map(|(id, n)| named(id.name().to_owned(), *n))
                    .collect(),
                refusals: self
                    .refusals
                    .iter()
                    .map(|(h, n)| named(h.to_string(), *n))
                    .collect(),
                faults: self
                    .faults
                    .iter()
                    .map(|(f, n)| named(format!("{:#}", FaultStatus::from(*f)), *n))
                    .collect(),
                problems: self
                    .problems
                    .iter()
                    .map(|(p, n)| named((*p).to_owned(), *n))
                    .collect(),
            },
        }
    }
}
