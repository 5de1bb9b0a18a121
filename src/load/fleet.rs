//! The simulated machines of a load run: each with a stable machine ID, a workstation name,
//! a product from the mix and the protocol version that product's clients speak; each is a
//! Windows KMS client ([`Client`]) whose license moves as a real one's would: activated only by
//! an answer whose count reaches its product's threshold, its next request carrying the
//! license state that follows.

use std::sync::{Mutex, PoisonError};

use rand::{RngExt, SeedableRng};

use crate::catalog::Sku;
use crate::proto::client::names::{random_dns_name, random_netbios_name};
use crate::proto::lifecycle::{Answer, Client};
use crate::wire::Guid;
use crate::wire::kms::{FileTime, RequestBase, Version, Workstation};

use super::mix::Mix;

/// Most machines a fleet holds. Each machine is built up front and kept for the whole run
/// (about 240 bytes: two GUIDs, a 128-byte workstation name, product and license state), so a
/// million of them take about 240 MB, already far more than any one generator can activate in a
/// run; beyond that, allocation would fail before anything was sent.
pub const MAX_CLIENTS: usize = 1_000_000;

/// The share of machines that say they are virtual machines (the request's VM flag), unless
/// `--vm-share` says otherwise. No public figure gives a site's share; half, so that a host
/// sees both values as it would at any site that mixes hardware and VMs (the genuine Windows 11
/// request in `captures/genuine/` came from a VM and sets the flag).
pub const DEFAULT_VM_SHARE: f64 = 0.5;

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
    /// Whether it is a virtual machine (the request's VM flag).
    pub vm: bool,
    /// Its license over time (workers may share a machine when connections outnumber it).
    client: Mutex<Client>,
}

impl Machine {
    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        // A worker that panicked holding the lock left a whole Client: keep using it.
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request this machine sends at `now`, with the license status and minutes left
    /// that its state calls for: out-of-box grace until activated, licensed after.
    pub fn request(&self, now: FileTime) -> RequestBase {
        let (license_status, binding_expiration) = self.client().license(now);
        RequestBase {
            version: self.version,
            vm_info: u32::from(self.vm),
            license_status,
            binding_expiration,
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

    /// Takes the answer to this machine's request at `now`; true when it activated a machine
    /// that was not licensed (a count below the product's threshold, a refusal, a fault or no
    /// answer never does).
    pub fn answered(&self, now: FileTime, answer: Answer) -> bool {
        let mut client = self.client();
        let before = client.is_licensed(now);
        client.handle_answer(now, answer).activated() && !before
    }

    /// Replaces the machine's client (a site's machines start licensed, or booting later).
    pub fn set_client(&self, client: Client) {
        *self.client() = client;
    }

    /// When the machine's client next asks a host.
    pub fn next_attempt(&self) -> FileTime {
        self.client().next_attempt()
    }

    /// Whether the machine is licensed at `now`.
    pub fn is_activated(&self, now: FileTime) -> bool {
        self.client().is_licensed(now)
    }
}

/// The whole fleet.
#[derive(Debug)]
pub struct Fleet {
    machines: Vec<Machine>,
}

impl Fleet {
    /// `n` machines drawn from `mix`, deterministic for a given `seed`, all first booted now.
    pub fn new(n: usize, mix: &Mix, seed: u64) -> Fleet {
        Fleet::booted(n, mix, seed, crate::clock::now_filetime())
    }

    /// [`Fleet::new`], the machines first booted at `booted` (their out-of-box grace starts).
    pub fn booted(n: usize, mix: &Mix, seed: u64, booted: FileTime) -> Fleet {
        Fleet::with_vm_share(n, mix, seed, booted, DEFAULT_VM_SHARE)
    }

    /// [`Fleet::booted`] with `vm_share` of the machines virtual (0 to 1).
    pub fn with_vm_share(n: usize, mix: &Mix, seed: u64, booted: FileTime, vm_share: f64) -> Fleet {
        let vm_share = vm_share.clamp(0.0, 1.0);
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
                    vm: rng.random_bool(vm_share),
                    client: Mutex::new(Client::new(sku.class.threshold(), booted)),
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

    fn count(n: u32) -> Answer {
        Answer::Count {
            count: n,
            intervals: None,
        }
    }

    #[test]
    fn test_first_activation_then_renewal() {
        use crate::proto::lifecycle::{STATUS_LICENSED, STATUS_NOTIFICATION};
        let boot = FileTime::from_unix_secs(1_800_000_000);
        let later = FileTime::from_unix_secs(1_800_000_060);
        let mix = Mix::new(&[("Windows 10/11 Enterprise", 1)]).unwrap();
        let fleet = Fleet::booted(1, &mix, 1, boot);
        let m = fleet.get(0);
        let r = m.request(boot);
        assert_eq!(
            (r.license_status, r.binding_expiration),
            (STATUS_NOTIFICATION, 0)
        );
        // "Client computers that receive a count below the activation threshold aren't
        // activated" (Activate clients running Windows): still in grace.
        assert!(!m.answered(boot, count(24)));
        assert!(!m.is_activated(boot));
        assert_eq!(m.request(later).license_status, STATUS_NOTIFICATION);
        // A count of 25 activates; the next request renews with 180 days left.
        assert!(m.answered(boot, count(25)));
        assert!(m.is_activated(later));
        let r = m.request(boot);
        assert_eq!(
            (r.license_status, r.binding_expiration),
            (STATUS_LICENSED, 180 * 24 * 60)
        );
        // A renewal is not a second activation.
        assert!(!m.answered(later, count(30)));
    }

    #[test]
    fn test_vm_share_sets_the_vm_flag_on_that_share() {
        let mix = Mix::default_mix();
        let boot = FileTime::from_unix_secs(1_800_000_000);
        let vms = |share: f64| {
            let fleet = Fleet::with_vm_share(1000, &mix, 3, boot, share);
            (0..fleet.len() as u64)
                .filter(|&i| fleet.get(i).request(boot).vm_info == 1)
                .count()
        };
        assert_eq!(vms(0.0), 0);
        assert_eq!(vms(1.0), 1000);
        let half = vms(DEFAULT_VM_SHARE);
        assert!((400..=600).contains(&half), "{half}");
    }
}
