//! Measurements for the README's performance section, each against a limit measured in the same
//! run: `load` beside the bare loopback replayer (`support::bare`). Ignored by default (they
//! take minutes and need the machine to themselves); nothing is asserted about speed, only that
//! every run completed. Run with
//! `cargo test --release --test tests figures_ -- --ignored --nocapture --test-threads 1`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::bare;

const BIN: &str = env!("CARGO_BIN_EXE_kmsharness");

/// Interleaved rounds of every contender.
const ROUNDS: usize = 5;
/// Measured time per run, after `load`'s default one-second warm-up.
const MEASURE: Duration = Duration::from_secs(5);
const WARMUP: Duration = Duration::from_secs(1);
/// Fresh runs are longer: the port search slows as TIME_WAIT fills one address pair's ports,
/// which takes seconds at these rates.
const FRESH_MEASURE: Duration = Duration::from_secs(20);
/// TIME_WAIT's length on Linux (`TCP_TIMEWAIT_LEN`), and a second: each fresh run starts
/// after the last one's ports are free again.
const TIME_WAIT: Duration = Duration::from_secs(61);
/// Connections, as in the issue's `load --mode reuse -c 64`.
const CONNECTIONS: usize = 64;

/// (activations/s, CPU µs per activation) of one `kmsharness load` run, from its JSON report.
fn load(args: &[&str]) -> (f64, f64) {
    load_for(MEASURE, args)
}

/// [`load`], measuring for `measure`.
fn load_for(measure: Duration, args: &[&str]) -> (f64, f64) {
    let json = std::env::temp_dir().join(format!("kmsharness-figures-{}.json", std::process::id()));
    let c = CONNECTIONS.to_string();
    let d = format!("{}s", measure.as_secs());
    let mut full = vec!["load", "-c", &c, "-d", &d, "--json"];
    let json_arg = json.display().to_string();
    full.push(&json_arg);
    full.extend_from_slice(args);
    let out = Command::new(BIN).args(&full).output().unwrap();
    assert!(out.status.success(), "load {full:?}: {out:?}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    (
        report["throughput"].as_f64().unwrap(),
        report["cpu"]["micros_per_activation"].as_f64().unwrap(),
    )
}

/// The runtime shape `load` uses: one worker per core.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()
        .unwrap()
}

/// (activations/s, CPU µs per activation) of the bare replayer's fresh-connection clients
/// against its own bare host listening on `addresses` loopback addresses (127.0.0.1 up), in
/// the same process: the embedded fresh shape.
fn bare_fresh_run(addresses: u8) -> (f64, f64) {
    let runtime = runtime();
    let ex = bare::exchange();
    runtime.block_on(async {
        let mut addrs = Vec::new();
        let mut hosts = Vec::new();
        for i in 1..=addresses {
            let listener =
                tokio::net::TcpListener::bind(("127.0.0.".to_owned() + &i.to_string(), 0))
                    .await
                    .unwrap();
            addrs.push(listener.local_addr().unwrap());
            hosts.push(tokio::spawn(bare::serve(listener, ex.clone())));
        }
        let (n, cpu) = bare::drive_fresh(&addrs, CONNECTIONS, &ex, WARMUP, FRESH_MEASURE).await;
        for h in hosts {
            h.abort();
        }
        assert!(n > 0);
        (n as f64 / FRESH_MEASURE.as_secs_f64(), cpu * 1e6 / n as f64)
    })
}

/// (activations/s, CPU µs per activation) of the bare replayer's clients against `addr`, or,
/// without one, against its own bare host in the same process (the embedded shape).
fn bare_run(addr: Option<SocketAddr>) -> (f64, f64) {
    let runtime = runtime();
    let ex = bare::exchange();
    runtime.block_on(async {
        let (addr, host) = match addr {
            Some(a) => (a, None),
            None => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let a = listener.local_addr().unwrap();
                (a, Some(tokio::spawn(bare::serve(listener, ex.clone()))))
            }
        };
        let (n, cpu) = bare::drive(addr, CONNECTIONS, &ex, WARMUP, MEASURE).await;
        if let Some(h) = host {
            h.abort();
        }
        assert!(n > 0);
        (n as f64 / MEASURE.as_secs_f64(), cpu * 1e6 / n as f64)
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
}

/// (max - min) / median.
fn spread(v: &[f64]) -> f64 {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    (hi - lo) / median(v)
}

fn line(name: &str, rates: &[f64], cpus: &[f64]) {
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "{name:<34} {:>9.0}/s  spread {:>5.1}%  {:>6.2} µs CPU/activation  [{}]",
        median(rates),
        spread(rates) * 100.0,
        median(cpus),
        shown.join(", ")
    );
}

/// A named run giving (activations/s, CPU µs per activation).
type Contender<'a> = (&'a str, &'a dyn Fn() -> (f64, f64));

/// (rates, CPU µs per activation) of each contender, after `rounds` interleaved rounds, each
/// run after `pause`; every contender's line printed under its name.
fn interleaved<const N: usize>(
    rounds: usize,
    pause: Duration,
    contenders: [Contender<'_>; N],
) -> [(Vec<f64>, Vec<f64>); N] {
    let mut runs: [(Vec<f64>, Vec<f64>); N] = std::array::from_fn(|_| Default::default());
    for _ in 0..rounds {
        for (run, (_, contender)) in runs.iter_mut().zip(&contenders) {
            std::thread::sleep(pause);
            let (rate, cpu) = contender();
            run.0.push(rate);
            run.1.push(cpu);
        }
    }
    for ((name, _), (rates, cpus)) in contenders.iter().zip(&runs) {
        line(name, rates, cpus);
    }
    runs
}

#[test]
#[ignore = "a measurement for the README: five interleaved rounds of 6 s runs"]
fn figures_reuse_against_the_bare_loopback_limit() {
    let (host, addr) = crate::process::serve(&[]);
    let external: SocketAddr = addr.parse().unwrap();
    let runs = interleaved(
        ROUNDS,
        Duration::ZERO,
        [
            ("bare replayer, embedded", &|| bare_run(None)),
            ("load --mode reuse -c 64, embedded", &|| {
                load(&["--mode", "reuse"])
            }),
            ("bare replayer -> serve", &|| bare_run(Some(external))),
            ("load --mode reuse -c 64 -> serve", &|| {
                load(&["--mode", "reuse", "-t", &addr])
            }),
        ],
    );
    drop(host);
    println!(
        "embedded: load / bare = {:.2} of the limit; against serve, generator CPU per \
         activation load / bare = {:.2}",
        median(&runs[1].0) / median(&runs[0].0),
        median(&runs[3].1) / median(&runs[2].1),
    );
}

#[test]
#[ignore = "a measurement for the README: two interleaved rounds of 21 s runs, a minute apart"]
fn figures_fresh_past_one_address_pair() {
    let d = FRESH_MEASURE;
    let runs = interleaved(
        2,
        TIME_WAIT,
        [
            ("bare replayer, fresh, 1 address", &|| bare_fresh_run(1)),
            ("load (fresh), 1 embedded address", &|| {
                load_for(d, &["--embedded-addresses", "1"])
            }),
            ("bare replayer, fresh, 4 addresses", &|| bare_fresh_run(4)),
            ("load (fresh), 4 embedded addresses", &|| {
                load_for(d, &["--embedded-addresses", "4"])
            }),
        ],
    );
    println!(
        "fresh: 4 addresses / 1 = {:.2} (bare), {:.2} (load); load / bare = {:.2} (1), {:.2} (4)",
        median(&runs[2].0) / median(&runs[0].0),
        median(&runs[3].0) / median(&runs[1].0),
        median(&runs[1].0) / median(&runs[0].0),
        median(&runs[3].0) / median(&runs[2].0),
    );
}
