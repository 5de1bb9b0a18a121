//! The live progress line (rate, errors, p99 of the last interval, elapsed) on a terminal, and
//! the HdrHistogram interval log; both fed once a second from the workers' interval histogram.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::schedule::Shared;

/// How often the display and log are updated.
const TICK: Duration = Duration::from_secs(1);

/// A running display; [`Display::finish`] stops it and clears the line.
#[derive(Debug)]
pub struct Display {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Option<LogError>>,
}

/// The interval log could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct LogError {
    /// The log file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl Display {
    /// Stops the display, writes the last interval, and returns a log-writing error, if any.
    pub async fn finish(mut self) -> Option<LogError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.ok().flatten()
    }
}

/// Starts the display task. `show` puts a progress line on stderr; `log` writes intervals.
pub fn spawn(shared: Arc<Shared>, show: bool, log: Option<PathBuf>) -> Display {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut intervals = Vec::new();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        let mut last_done = 0;
        let mut last = Instant::now();
        loop {
            let finished = tokio::select! {
                _ = tick.tick() => false,
                _ = &mut stopped => true,
            };
            let h = shared.take_interval();
            let now = Instant::now();
            let done = shared.done.load(Ordering::Relaxed);
            if show {
                let rate =
                    (done - last_done) as f64 / now.duration_since(last).as_secs_f64().max(1e-9);
                let p99 = if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{:>7.1}s  {:>9.0}/s  done {:>10}  errors {:>7}  p99 {:>7} µs",
                    now.duration_since(shared.start).as_secs_f64(),
                    rate,
                    done,
                    shared.failed.load(Ordering::Relaxed),
                    p99
                );
                if finished {
                    let _ = writeln!(err);
                }
            }
            if log.is_some() && !h.is_empty() {
                intervals.push((last, now, h));
            }
            last_done = done;
            last = now;
            if finished {
                break;
            }
        }
        let path = log?;
        write_log(&path, &shared, &intervals)
            .err()
            .map(|source| LogError { path, source })
    });
    Display {
        stop: Some(stop),
        task,
    }
}

fn write_log(
    path: &PathBuf,
    shared: &Shared,
    intervals: &[(Instant, Instant, hdrhistogram::Histogram<u64>)],
) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let wall_start = crate::clock::wall() - shared.start.elapsed();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("kmsharness load: total latency per interval, microseconds")
        .with_start_time(wall_start)
        .with_base_time(wall_start)
        .with_max_value_divisor(1.0)
        .begin_log_with(&mut file, &mut serializer)?;
    let tag = Tag::new("total");
    for (from, to, h) in intervals {
        writer
            .write_histogram(
                h,
                from.duration_since(shared.start),
                to.duration_since(*from),
                tag,
            )
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    drop(writer);
    file.flush()
}
