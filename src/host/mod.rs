//! The bundled reference host assembled from its parts: listeners and RPC sessions (`net`), the
//! KMS engine (`proto::host`), a clock, an optional state file and control port. [`start`] runs
//! it in this process; `serve` runs it until stopped, and `load`, `replay`, `conform` start it
//! on loopback as their embedded default.

pub mod control;
mod service;
mod state_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::{Clock, VirtualClock};
use crate::net::host::{ListenConfig, Server};
use crate::proto::faults::FaultSet;
use crate::proto::host::config::{ConfigError, HostConfig};
use crate::proto::host::engine::{KmsHost, Policy};
use crate::proto::host::state::{StateError, decode_state};

pub use self::service::Service;
pub use self::state_file::{STATE_SAVE_INTERVAL, temp_path, write_atomically};

/// Idle timeout of a host embedded in another subcommand (long: a load run may pause between
/// phases).
pub const EMBEDDED_IDLE: Duration = Duration::from_secs(60);

/// Everything a running host needs.
#[derive(Debug, Clone)]
pub struct HostSetup {
    /// Listening and RPC behaviour.
    pub listen: ListenConfig,
    /// KMS behaviour.
    pub host: HostConfig,
    /// Injected faults (also in `listen.rpc.faults`).
    pub faults: FaultSet,
    /// Use a virtual clock.
    pub virtual_clock: bool,
    /// Keep the client table in this file across restarts.
    pub state: Option<PathBuf>,
    /// How often the state file is written while running (when it changed).
    pub state_interval: Duration,
    /// Accept control commands (advance the virtual clock, read counts) on this address.
    pub control: Option<SocketAddr>,
    /// Log one line per request.
    pub log: bool,
}

impl Default for HostSetup {
    fn default() -> Self {
        HostSetup {
            listen: ListenConfig::default(),
            host: HostConfig::default(),
            faults: FaultSet::NONE,
            virtual_clock: false,
            state: None,
            state_interval: STATE_SAVE_INTERVAL,
            control: None,
            log: false,
        }
    }
}

impl HostSetup {
    /// A quiet host on a free loopback port, as another subcommand embeds it.
    pub fn loopback() -> HostSetup {
        let mut setup = HostSetup::default();
        setup.listen.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        setup.listen.idle_timeout = EMBEDDED_IDLE;
        setup
    }
}

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state file exists but cannot be read.
    #[error("state file {}: {source}", path.display())]
    StateRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file does not decode.
    #[error("state file {}: {source}", path.display())]
    StateDecode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StateError,
    },
    /// The state file cannot be written (a directory, a missing or read-only directory):
    /// found at start rather than at the first save.
    #[error("state file {}: cannot write: {source}", path.display())]
    StateWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configured key group has no ePID: the state file was saved with other key groups.
    #[error(
        "state file {} holds no ePID for key group \"{name}\" (it was saved with other key \
         groups): give one with --epid \"{name}=EPID\", or start without this state file",
        path.display()
    )]
    StateKeyGroup {
        /// The file.
        path: PathBuf,
        /// The key group.
        name: &'static str,
    },
    /// The state file does not fit the configuration.
    #[error("state file {}: {source}", path.display())]
    StateRestore {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ConfigError,
    },
    /// The host configuration is impossible.
    #[error("host configuration: {0}")]
    Config(#[source] ConfigError),
    /// A listening address could not be bound.
    #[error("{0}")]
    Listen(#[source] std::io::Error),
    /// The control address could not be bound.
    #[error("cannot listen for control on {addr}: {source}")]
    Control {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl StartError {
    /// The exit status this failure calls for: a local file problem is 6, the rest usage (2).
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            StartError::StateRead { .. } | StartError::StateWrite { .. } => {
                crate::exit::Exit::LocalIo
            }
            _ => crate::exit::Exit::Usage,
        }
    }
}

/// A host running in this process.
#[derive(Debug)]
pub struct RunningHost {
    /// Addresses it listens on.
    pub addrs: Vec<SocketAddr>,
    /// The control port, if any.
    pub control: Option<SocketAddr>,
    /// Its KMS side (counts, clock, state).
    pub service: Arc<Service>,
    state: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    control_task: Option<JoinHandle<()>>,
    save_task: Option<JoinHandle<()>>,
}

/// Restores the engine from the state file when there is one, else builds a new one.
fn engine(setup: &HostSetup, clock: &Clock) -> Result<KmsHost, StartError> {
    if let Some(path) = &setup.state {
        state_file::check_writable(path).map_err(|source| StartError::StateWrite {
            path: path.clone(),
            source,
        })?;
    }
    match &setup.state {
        Some(path) if path.exists() => {
            let bytes = std::fs::read(path).map_err(|source| StartError::StateRead {
                path: path.clone(),
                source,
            })?;
            let state = decode_state(&bytes).map_err(|source| StartError::StateDecode {
                path: path.clone(),
                source,
            })?;
            KmsHost::restore(setup.host.clone(), state).map_err(|source| match source {
                ConfigError::MissingEpid { name } => StartError::StateKeyGroup {
                    path: path.clone(),
                    name,
                },
                source => StartError::StateRestore {
                    path: path.clone(),
                    source,
                },
            })
        }
        _ => KmsHost::new(setup.host.clone(), clock.today(), rand::rng().random())
            .map_err(StartError::Config),
    }
}

/// Starts a host with `setup`.
pub async fn start(setup: HostSetup) -> Result<RunningHost, StartError> {
    let clock = if setup.virtual_clock {
        Clock::new_virtual()
    } else {
        Clock::System
    };
    let host = engine(&setup, &clock)?;
    let mut listen = setup.listen.clone();
    listen.rpc.faults = setup.faults;
    let server = Server::bind(listen).await.map_err(StartError::Listen)?;
    let addrs = server.local_addrs();
    let service = Arc::new(Service::new(
        Mutex::new(Policy::new(host, setup.faults)),
        clock,
        setup.faults,
        setup.log,
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(service.clone(), async move {
        let _ = stopped.await;
    }));
    let (control, control_task) = match setup.control {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Control { addr, source })?;
            let local = l.local_addr().ok();
            (
                local,
                Some(tokio::spawn(control::serve(l, service.clone()))),
            )
        }
        None => (None, None),
    };
    let save_task = setup.state.clone().map(|path| {
        tokio::spawn(state_file::save_while_running(
            path,
            service.clone(),
            setup.state_interval,
        ))
    });
    Ok(RunningHost {
        addrs,
        control,
        service,
        save_task,
        state: setup.state,
        stop: Some(stop),
        task,
        control_task,
    })
}

impl RunningHost {
    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The virtual clock, if the host has one.
    pub fn virtual_clock(&self) -> Option<&Arc<VirtualClock>> {
        self.service.clock().as_virtual()
    }

    /// Saves the state file now (if one is configured).
    pub fn save(&self) -> std::io::Result<()> {
        match &self.state {
            Some(path) => write_atomically(path, &self.service.state_bytes()),
            None => Ok(()),
        }
    }

    /// Stops listening, waits for the server to wind down, and saves the state.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.control_task.take() {
            t.abort();
        }
        if let Some(t) = self.save_task.take() {
            t.abort();
        }
        let _ = (&mut self.task).await;
        self.save()
    }
}
