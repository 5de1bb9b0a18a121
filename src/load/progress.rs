//! The live progress line (rate, errors, p99 of the last interval, elapsed) on a terminal, and
//! the HdrHistogram interval log; both fed once a second from the workers' interval histogram.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::schedule::{Progress, Shared};

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
                    "\r\x1b[2K{}  {:>9.0}/s  errors {:>7}  p99 {:>7} µs",
                    position(&shared.progress(now, done)),
                    rate,
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

/// The progress line's first part: done of total and the time left, as wrk2 and k6 show it.
fn position(p: &Progress) -> String {
    let secs = |d: Duration| d.as_secs_f64();
    let eta = p
        .eta()
        .map_or_else(String::new, |e| format!("  ETA {:>5.0}s", secs(e)));
    match *p {
        Progress::WarmingUp { left } => format!("warm-up, {:.0}s left", secs(left).ceil()),
        Progress::Count {
            done,
            total,
            measured,
        } => {
            format!("{:>7.1}s  done {done:>10}/{total}{eta}", secs(measured))
        }
        Progress::Time { measured, total } => {
            format!("{:>7.1}s/{:.0}s{eta}", secs(measured), secs(total))
        }
        Progress::Open { measured } => format!("{:>7.1}s", secs(measured)),
    }
}

/// Values are recorded in microseconds; the `Interval_Max` column is written in milliseconds,
/// as Java's `HistogramLogWriter` writes it for its default nanosecond values (its
/// `maxValueUnitRatio`, here 1000 for microseconds).
const HDR_LOG_MAX_DIVISOR: f64 = 1000.0;

/// The header of HdrHistogram's interval log format 1.3, as Java's `HistogramLogWriter` writes
/// it: version, start and base time, the column legend, with the unit stated in a comment.
fn write_log_header(
    w: &mut impl std::io::Write,
    start: std::time::SystemTime,
) -> std::io::Result<()> {
    let secs = start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(
        w,
        "#kmsharness load: total latency per interval; values in microseconds, Interval_Max in \
         milliseconds (HistogramLogProcessor: -outputValueUnitRatio 1000 prints milliseconds)"
    )?;
    writeln!(w, "#[Histogram log format version 1.3]")?;
    writeln!(w, "#[StartTime: {secs:.3} (seconds since epoch)]")?;
    // Interval timestamps are relative to the start, so the base time is the start too.
    writeln!(w, "#[BaseTime: {secs:.3} (seconds since epoch)]")?;
    writeln!(
        w,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )
}

fn write_log(
    path: &PathBuf,
    shared: &Shared,
    intervals: &[(Instant, Instant, hdrhistogram::Histogram<u64>)],
) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let wall_start = crate::clock::wall() - shared.start.elapsed();
    write_log_header(&mut file, wall_start)?;
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(HDR_LOG_MAX_DIVISOR)
        .begin_log_with(&mut file, &mut serializer)?;
    for (from, to, h) in intervals {
        // Untagged: the total histogram is what HistogramLogProcessor reads without `-tag`.
        writer
            .write_histogram(
                h,
                from.duration_since(shared.start),
                to.duration_since(*from),
                None,
            )
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    drop(writer);
    file.flush()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_progress_line_shows_done_of_total_and_eta() {
        let s = Duration::from_secs;
        let count = Progress::Count {
            done: 250,
            total: 1000,
            measured: s(5),
        };
        assert_eq!(count.eta(), Some(s(15)));
        let line = position(&count);
        assert!(line.contains("done        250/1000"), "{line}");
        assert!(line.contains("ETA    15s"), "{line}");
        let time = Progress::Time {
            measured: s(4),
            total: s(10),
        };
        assert_eq!(time.eta(), Some(s(6)));
        assert!(position(&time).contains("4.0s/10s"), "{}", position(&time));
        let warm = Progress::WarmingUp {
            left: Duration::from_millis(1500),
        };
        assert_eq!(warm.eta(), None);
        assert_eq!(position(&warm), "warm-up, 2s left");
        // Nothing done yet: no estimate rather than a division by zero.
        let none = Progress::Count {
            done: 0,
            total: 10,
            measured: s(1),
        };
        assert_eq!(none.eta(), None);
    }
}
