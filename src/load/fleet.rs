//! The simulated machines of a load run: each with a stable machine ID, a workstation name,
//! a product from the mix and the protocol version that product's clients speak; its license
//! state moves from first activation to renewal as the run goes on.

use std::sync::atomic::{AtomicBool, Ordering};

use rand::{RngExt, SeedableRng};

use crate::catalog::Sku;
use crate::proto::client::names::{random_dns_name, random_netbios_name};
use crate::wire::Guid;
use crate::wire::kms::{FileTime, RequestBase, Version, Workstation};

use super::mix::Mix;

/// License status of a machine asking for the first time: out-of-box grace (Windows' value).
pub const STATUS_GRACE: u32 = 2;
/// Minutes of grace left on a fresh install (30 days).
pub const GRACE_MINUTES: u32 = 30 * 24 * 60;
/// License status of an activated machine renewing.
pub const STATUS_LICENSED: u32 = 1;
/// Minutes left when a renewal is due: 180-day validity less the 7-day renewal interval
/// (docs: "valid for 180 days", "renew every 7 days").
pub const RENEWAL_MINUTES: u32 = (180 - 7) * 24 * 60;

/// Most machines a fleet holds. Each machine is built up front and kept for the whole run
/// (about 190 bytes: two GUIDs, a 128-byte workstation name, product and state), so a million
/// of them take about 190 MB, already far more than any one generator can activate in a run;
/// beyond that, allocation would fail before anything was sent.
pub const MAX_CLIENTS: usize = 1_000_000;

/// One simulated machine.
#[derive(Debug)]
pub struct Machine {
    /// Client machine ID.
    pub cmid: Guid,
    /// Workstation name.
    pub workstation: Workstation,
    /// Its product.
    pub sku: &'static Sku,
    /// Application ID of the product.
    pub app_id: Guid,
    /// Protocol version its product speaks.
    pub version: Version,
    /// Required client count of its product class.
    pub required_clients: u32,
    activated: AtomicBool,
}

impl Machine {
    /// The request this machine sends at `now`: a first activation until one succeeded,
    /// renewals after.
    pub fn request(&self, now: FileTime) -> RequestBase {
        let renewing = self.activated.load(Ordering::Relaxed);
        RequestBase {
            version: self.version,
            vm_info: 0,
            license_status: if renewing {
                STATUS_LICENSED
            } else {
                STATUS_GRACE
            },
            binding_expiration: if renewing {
                RENEWAL_MINUTES
            } else {
                GRACE_MINUTES
            },
            app_id: self.app_id,
            sku_id: self.sku.id,
            kms_id: self.sku.kms,
            cmid: self.cmid,
            required_clients: self.required_clients,
            client_time: now,
            previous_cmid: Guid::NIL,
            workstation: self.workstation,
        }
    }

    /// Records a successful activation (the host answered with a valid response).
    pub fn activated(&self) {
        self.activated.store(true, Ordering::Relaxed);
    }

    /// Whether the machine has been activated during the run.
    pub fn is_activated(&self) -> bool {
        self.activated.load(Ordering::Relaxed)
    }
}

/// The whole fleet.
#[derive(Debug)]
pub struct Fleet {
    machines: Vec<Machine>,
}

impl Fleet {
    /// `n` machines drawn from `mix`, deterministic for a given `seed`.
    pub fn new(n: usize, mix: &Mix, seed: u64) -> Fleet {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let machines = (0..n)
            .map(|_| {
                let sku = mix.pick(rng.random_range(0..mix.total()));
                let name = if rng.random_bool(0.8) {
                    random_dns_name(&mut rng)
                } else {
                    random_netbios_name(&mut rng)
                };
                Machine {
                    cmid: Guid::new_v4(rng.random()),
                    workstation: Workstation::new(&name),
                    sku,
                    app_id: sku.application().map_or(Guid::NIL, |a| a.id),
                    version: Version {
                        major: u16::from(sku.protocol().unwrap_or(6)),
                        minor: 0,
                    },
                    required_clients: sku.class.threshold(),
                    activated: AtomicBool::new(false),
                }
            })
            .collect();
        Fleet { machines }
    }

    /// The machine for ticket `i` (round robin).
    pub fn get(&self, i: u64) -> &Machine {
        &self.machines[(i % self.machines.len() as u64) as usize]
    }

    /// Number of machines.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether the fleet is empty.
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    /// The machines.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_fleet_is_deterministic_and_distinct() {
        let mix = Mix::default_mix();
        let a = Fleet::new(500, &mix, 7);
        let b = Fleet::new(500, &mix, 7);
        assert_eq!(a.get(3).cmid, b.get(3).cmid);
        let mut ids: Vec<_> = a.machines().iter().map(|m| m.cmid).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 500);
        assert!(a.machines().iter().all(|m| m.cmid.is_rfc4122_v4()));
        // Every product of the mix shows up in a fleet this size.
        for share in mix.shares() {
            assert!(
                a.machines().iter().any(|m| m.sku.id == share.sku.id),
                "{}",
                share.sku.name
            );
        }
    }

    #[test]
    fn test_max_clients_fits_in_memory() {
        // The documented bound: a fleet of MAX_CLIENTS machines stays well under a gigabyte.
        assert!(std::mem::size_of::<Machine>() * MAX_CLIENTS < 256 << 20);
    }

    #[test]
    fn test_first_activation_then_renewal() {
        let fleet = Fleet::new(1, &Mix::default_mix(), 1);
        let m = fleet.get(0);
        assert_eq!(m.request(FileTime(1)).license_status, STATUS_GRACE);
        m.activated();
        let r = m.request(FileTime(1));
        assert_eq!(
            (r.license_status, r.binding_expiration),
            (STATUS_LICENSED, RENEWAL_MINUTES)
        );
    }
}
