//! The control port of a host: one command per line, one answer line each, so that tests and
//! simulations can read counts and move a virtual clock over a socket.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::catalog::AppKind;
use crate::clock::{Clock, parse_secs};

use super::Service;

/// The control protocol, one command per line, one answer line each:
/// `now` → `ok <FILETIME> <UTC>`; `advance <duration>` (virtual clock only) → `ok …`;
/// `count <windows|office2010|office2013>` → `ok <n>`; `save` → `ok`.
pub(super) async fn serve(listener: TcpListener, service: Arc<Service>) {
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
        let t = s.clock().now();
        format!("ok {} {t}\n", t.0)
    };
    match (words.next(), words.next()) {
        (Some("now"), None) => now(service),
        (Some("advance"), Some(d)) => match (&service.clock(), parse_secs(d)) {
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
