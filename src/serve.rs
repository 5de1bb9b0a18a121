//! `serve`: the bundled reference host assembled from its parts (listeners, RPC sessions, the
//! KMS engine, a clock, optional state file and control port). [`start`] runs it in-process,
//! which is how tests and the embedded default of `load`, `replay` and `conform` use it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::RngExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::AppKind;
use crate::epid::YearDay;
use crate::net::host::{KmsService, ListenConfig, Server};
use crate::proto::faults::FaultSet;
use crate::proto::host::engine::{Handled, Policy, activate};
use crate::proto::host::message::HostRandom;
use crate::proto::host::{
    config::HostConfig,
    engine::KmsHost,
    state::{decode_state, encode_state},
};
use crate::wire::HResult;
use crate::wire::kms::FileTime;

/// A clock the host reads; the virtual one can be moved by hand.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// The system clock plus an adjustable offset.
    Virtual(Arc<VirtualClock>),
}

/// System time plus an offset in FILETIME ticks, moved by [`VirtualClock::advance`].
#[derive(Debug, Default)]
pub struct VirtualClock {
    offset: AtomicI64,
}

fn system_ticks() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ((d.as_secs() + FileTime::UNIX_EPOCH_SECS) * FileTime::TICKS_PER_SEC
        + u64::from(d.subsec_nanos() / 100)) as i64
}

impl VirtualClock {
    /// Moves the clock forward (or back, with a negative amount) by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(
            secs.saturating_mul(FileTime::TICKS_PER_SEC as i64),
            Ordering::Relaxed,
        );
    }

    /// How far the clock is from the system clock, in seconds.
    pub fn offset_secs(&self) -> i64 {
        self.offset.load(Ordering::Relaxed) / FileTime::TICKS_PER_SEC as i64
    }
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> FileTime {
        let offset = match self {
            Clock::System => 0,
            Clock::Virtual(v) => v.offset.load(Ordering::Relaxed),
        };
        FileTime(system_ticks().saturating_add(offset).max(0) as u64)
    }

    /// Today's date, for generated ePIDs.
    pub fn today(&self) -> YearDay {
        let (y, m, d, ..) = self.now().to_utc();
        YearDay::from_ymd(y as u16, m as u8, d as u8).unwrap_or(YearDay { year: 2026, day: 1 })
    }
}

/// Everything a running host needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
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

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
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

/// The KMS side of the running host.
#[derive(Debug)]
pub struct Service {
    policy: Mutex<Policy>,
    clock: Clock,
    faults: FaultSet,
    log: bool,
}

impl Service {
    /// Current count for an application.
    pub fn count(&self, app: AppKind) -> u32 {
        let now = self.clock.now();
        self.policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .host()
            .count(app, now)
    }

    /// The host's state, as the state file holds it.
    pub fn state_bytes(&self) -> Vec<u8> {
        encode_state(
            &self
                .policy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .host()
                .state(),
        )
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

impl KmsService for Service {
    fn activate(&self, peer: SocketAddr, request: &[u8], out: &mut Vec<u8>) -> Result<(), HResult> {
        let now = self.clock.now();
        let mut rng = rand::rng();
        let random = HostRandom {
            salt: rng.random(),
            iv: rng.random(),
        };
        let (handled, result) = activate(
            request,
            now,
            &random,
            self.faults,
            |req, checks| {
                self.policy
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .decide(req, checks, now)
            },
            out,
        );
        if self.log {
            match handled {
                Handled::Granted { request, count } => tracing::info!(
                    %peer, version = %request.version, cmid = %request.base.cmid,
                    kms_id = %request.base.kms_id, workstation = %request.base.workstation,
                    count, "activation granted"
                ),
                Handled::Refused { request, refusal } => tracing::info!(
                    %peer, version = %request.version, cmid = %request.base.cmid,
                    kms_id = %request.base.kms_id, hresult = %refusal.hresult,
                    rule = refusal.rule.name(), "activation refused"
                ),
                Handled::Undecodable => {
                    tracing::info!(%peer, bytes = request.len(), "undecodable request refused")
                }
            }
        }
        result
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

/// How often a running host writes its state file by default (besides at shutdown), so that a
/// crash loses at most this much of the client table.
pub const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Starts a host with `config`; fails with one line naming what is wrong.
pub async fn start(config: ServeConfig) -> Result<RunningHost, String> {
    let clock = if config.virtual_clock {
        Clock::Virtual(Arc::new(VirtualClock::default()))
    } else {
        Clock::System
    };
    let seed: u64 = rand::rng().random();
    let host = match &config.state {
        Some(path) if path.exists() => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("state file {}: {e}", path.display()))?;
            let state =
                decode_state(&bytes).map_err(|e| format!("state file {}: {e}", path.display()))?;
            KmsHost::restore(config.host.clone(), state)
                .map_err(|e| format!("state file {}: {e}", path.display()))?
        }
        _ => KmsHost::new(config.host.clone(), clock.today(), seed)
            .map_err(|e| format!("host configuration: {e}"))?,
    };
    let mut listen = config.listen.clone();
    listen.rpc.faults = config.faults;
    let server = Server::bind(listen).await.map_err(|e| e.to_string())?;
    let addrs = server.local_addrs();
    let service = Arc::new(Service {
        policy: Mutex::new(Policy::new(host, config.faults)),
        clock,
        faults: config.faults,
        log: config.log,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(service.clone(), async move {
        let _ = stopped.await;
    }));
    let (control, control_task) = match config.control {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for control on {addr}: {e}"))?;
            let local = l.local_addr().ok();
            (local, Some(tokio::spawn(control_loop(l, service.clone()))))
        }
        None => (None, None),
    };
    let every = config.state_interval.max(Duration::from_millis(10));
    let save_task = config.state.clone().map(|path| {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut last = Vec::new();
            loop {
                tick.tick().await;
                let bytes = service.state_bytes();
                if bytes != last {
                    if let Err(e) = write_atomically(&path, &bytes) {
                        tracing::warn!(path = %path.display(), "cannot save the state file: {e}");
                    }
                    last = bytes;
                }
            }
        })
    });
    Ok(RunningHost {
        addrs,
        control,
        service,
        save_task,
        state: config.state,
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
        match self.service.clock() {
            Clock::Virtual(v) => Some(v),
            Clock::System => None,
        }
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

/// Parses durations like `30d`, `4h`, `90m`, `15s`, `-1d` or plain seconds.
pub fn parse_secs(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The control protocol, one command per line, one answer line each:
/// `now` → `ok <FILETIME> <UTC>`; `advance <duration>` (virtual clock only) → `ok …`;
/// `count <windows|office2010|office2013>` → `ok <n>`; `save` → `ok`.
async fn control_loop(listener: TcpListener, service: Arc<Service>) {
    while let Ok((stream, _)) = listener.accept().await {
        let service = service.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = control_command(&service, &line);
                if w.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn control_command(service: &Service, line: &str) -> String {
    let mut words = line.split_whitespace();
    let now = |s: &Service| {
        let t = s.clock.now();
        format!("ok {} {t}\n", t.0)
    };
    match (words.next(), words.next()) {
        (Some("now"), None) => now(service),
        (Some("advance"), Some(d)) => match (&service.clock, parse_secs(d)) {
            (Clock::Virtual(v), Some(secs)) => {
                v.advance(secs);
                now(service)
            }
            (Clock::System, _) => {
                "error the host runs on the system clock (start it with --clock virtual)\n".into()
            }
            (_, None) => format!("error {d:?} is not a duration like 30d, 4h, 90m or 15s\n"),
        },
        (Some("count"), Some(app)) => {
            let app = match app {
                "windows" => Some(AppKind::Windows),
                "office2010" => Some(AppKind::Office2010),
                "office2013" => Some(AppKind::Office2013),
                _ => None,
            };
            match app {
                Some(a) => format!("ok {}\n", service.count(a)),
                None => "error application must be windows, office2010 or office2013\n".into(),
            }
        }
        _ => "error commands: now | advance <duration> | count <application>\n".into(),
    }
}

/// Idle timeout the embedded host uses (long: a load run may pause between phases).
pub const EMBEDDED_IDLE: Duration = Duration::from_secs(60);
