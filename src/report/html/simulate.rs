//! The page of a `simulate` report: headline figures and thresholds, machines by state per
//! day, each host's counts and requests per day, the distribution of time to first
//! activation per group, hosts down and failovers on the timeline, and the run parameters.

use std::fmt::Write as _;

use super::plot::{
    BAD, GOOD, GREY, Layer, PENDING, Series, Track, category_bars, colour, lines, stacked_bars,
    timeline,
};
use super::{escape, page, parameters, table, tiles};
use crate::simulate::ClockMode;
use crate::simulate::report::{Counts, Report, measured, taken_at};

/// One application's count out of a host's counts.
type CountOf = fn(&Counts) -> u32;

/// The applications a host counts, with their names on the page.
const APPS: [(&str, CountOf); 3] = [
    ("Windows", |c| c.windows),
    ("Office 2010", |c| c.office2010),
    ("Office 2013+", |c| c.office2013),
];

/// Machines by state at the end of each day.
fn states(r: &Report) -> String {
    let layer = |label, colour, f: fn(&crate::simulate::report::DayReport) -> u64| Layer {
        label,
        colour,
        counts: r.days.iter().map(f).collect(),
    };
    stacked_bars(
        "Machines by state at the end of each day",
        "day",
        "machines",
        0.0,
        1.0,
        &[
            layer("activated", GOOD, |d| d.activated),
            layer("not activated", PENDING, |d| d.not_activated),
            layer("out of tolerance", BAD, |d| d.out_of_tolerance),
            layer("absent", GREY, |d| d.absent),
        ],
    )
}

/// The host names, in the order of the first day that lists them.
fn host_names(r: &Report) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for d in &r.days {
        for h in &d.hosts {
            if !names.contains(&h.name) {
                names.push(h.name.clone());
            }
        }
    }
    names
}

/// Each host's count per application per day (applications it never counted left out).
fn counts(r: &Report, hosts: &[String]) -> String {
    let mut labelled: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for host in hosts {
        for (app, of) in APPS {
            let points: Vec<(f64, f64)> = r
                .days
                .iter()
                .filter_map(|d| {
                    let h = d.hosts.iter().find(|h| &h.name == host)?;
                    Some((f64::from(d.day), f64::from(of(&h.counts))))
                })
                .collect();
            if points.iter().any(|p| p.1 > 0.0) {
                labelled.push((format!("{host} ({app})"), points));
            }
        }
    }
    let series: Vec<Series<'_>> = labelled
        .iter()
        .enumerate()
        .map(|(i, (label, points))| Series {
            label,
            colour: colour(i),
            points: points.clone(),
        })
        .collect();
    lines(
        "Count each host returns, by application (end of day)",
        "day",
        "count (distinct machines in 30 days)",
        &series,
    )
}

/// Requests each host answered per day, stacked.
fn requests(r: &Report, hosts: &[String]) -> String {
    let layers: Vec<Layer<'_>> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| Layer {
            label: host,
            colour: colour(i),
            counts: r
                .days
                .iter()
                .map(|d| {
                    d.hosts
                        .iter()
                        .find(|h| &h.name == host)
                        .map_or(0, |h| h.requests)
                })
                .collect(),
        })
        .collect();
    stacked_bars(
        "Requests each host answered per day",
        "day",
        "requests",
        0.0,
        1.0,
        &layers,
    )
}

/// A bin's label from its lower and upper edges, minutes.
fn bin_label(lower: u32, upper: Option<u32>) -> String {
    let short = |m: u32| match m {
        m if m % 1440 == 0 && m > 0 => format!("{}d", m / 1440),
        m if m % 60 == 0 && m > 0 => format!("{}h", m / 60),
        m => format!("{m}m"),
    };
    match upper {
        Some(u) => format!("{}–{}", short(lower), short(u)),
        None => format!("≥{}", short(lower)),
    }
}

/// Machines per bin of time to first activation, stacked by group.
fn time_to_activation(r: &Report) -> String {
    let Some(first) = r
        .groups
        .iter()
        .find(|g| !g.first_activation_bins.is_empty())
    else {
        return "<p class=\"note\">No machine activated.</p>".into();
    };
    let mut lower = 0;
    let labels: Vec<String> = first
        .first_activation_bins
        .iter()
        .map(|b| {
            let l = bin_label(lower, b.below_minutes);
            lower = b.below_minutes.unwrap_or(lower);
            l
        })
        .collect();
    let layers: Vec<Layer<'_>> = r
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| Layer {
            label: &g.name,
            colour: colour(i),
            counts: g.first_activation_bins.iter().map(|b| b.machines).collect(),
        })
        .collect();
    category_bars(
        "Time from first boot to first activation",
        "machines",
        &labels,
        &layers,
    )
}

/// Hosts down (spans) and failovers away from them (marks) across the run.
fn events(r: &Report, hosts: &[String]) -> String {
    let mut tracks: Vec<Track<'_>> = hosts
        .iter()
        .map(|h| Track {
            label: h,
            spans: Vec::new(),
            marks: Vec::new(),
        })
        .collect();
    let end = r
        .minutes
        .map_or(f64::from(r.days_simulated), |m| f64::from(m) / 1440.0);
    let mut down: Vec<(usize, f64)> = Vec::new();
    for e in &r.events {
        let Some(i) = hosts.iter().position(|h| h == &e.host) else {
            continue;
        };
        match e.event.as_str() {
            "host down" => down.push((i, e.day)),
            "host up" => {
                if let Some(k) = down.iter().position(|(j, _)| *j == i) {
                    let (_, from) = down.remove(k);
                    tracks[i].spans.push((from, e.day));
                }
            }
            // A failover is counted on its day; drawn at the day's middle.
            _ => tracks[i].marks.push(e.day + 0.5),
        }
    }
    for (i, from) in down {
        tracks[i].spans.push((from, end));
    }
    let mut s = timeline(
        "Hosts down (bars) and failovers away from them (triangles)",
        end,
        &tracks,
    );
    if r.events.is_empty() {
        s.push_str("<p class=\"note\">No host went down; no machine failed over.</p>");
        return s;
    }
    let rows: Vec<Vec<String>> = r
        .events
        .iter()
        .map(|e| {
            vec![
                format!("{:.2}", e.day),
                escape(&e.event),
                escape(&e.host),
                e.to.as_deref().map_or_else(String::new, escape),
                e.machines.map_or_else(String::new, |n| n.to_string()),
            ]
        })
        .collect();
    s.push_str(&table(
        &["day", "event", "host", "to", "machines"],
        &[0, 4],
        &rows,
    ));
    s
}

/// The thresholds section, when there are any.
fn thresholds(r: &Report) -> String {
    if r.thresholds.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = r
        .thresholds
        .iter()
        .map(|t| {
            vec![
                format!("<code>{}</code>", escape(&t.expr)),
                escape(&taken_at(t)),
                escape(&measured(t)),
                if t.passed {
                    "<span class=\"pass\">ok</span>".into()
                } else {
                    "<span class=\"fail\">FAILED</span>".into()
                },
            ]
        })
        .collect();
    format!(
        "<h2>Thresholds</h2><section>{}</section>",
        table(
            &["threshold", "taken at", "measured", "verdict"],
            &[],
            &rows
        )
    )
}

/// The page of a simulate report.
pub fn simulate(r: &Report) -> String {
    let s = &r.summary;
    let mut body = tiles(&[
        ("machines", s.machines.to_string()),
        ("activated at the end", s.activated_at_end.to_string()),
        ("never activated", s.never_activated.to_string()),
        ("exchanges", s.exchanges.to_string()),
        ("days simulated", r.days_simulated.to_string()),
    ]);
    body.push_str(&thresholds(r));
    let hosts = host_names(r);
    let _ = write!(
        body,
        "<h2>Machines</h2><section>{}</section>\
         <h2>Hosts</h2><section>{}{}</section>\
         <h2>Time to first activation</h2><section>{}",
        states(r),
        counts(r, &hosts),
        requests(r, &hosts),
        time_to_activation(r),
    );
    let rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            let m = g.first_activation_minutes;
            vec![
                escape(&g.name),
                escape(&g.product),
                g.machines.to_string(),
                g.activated_at_end.to_string(),
                g.never_activated.to_string(),
                m.map_or_else(String::new, |m| m.p50.to_string()),
                m.map_or_else(String::new, |m| m.p90.to_string()),
                m.map_or_else(String::new, |m| m.max.to_string()),
                g.never_activated_reason
                    .as_deref()
                    .map_or_else(String::new, escape),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "group",
            "product",
            "machines",
            "activated at end",
            "never activated",
            "p50 min",
            "p90 min",
            "max min",
            "why never",
        ],
        &[2, 3, 4, 5, 6, 7],
        &rows,
    ));
    let mut failures: std::collections::BTreeMap<&str, u64> = Default::default();
    for d in &r.days {
        for (k, v) in &d.failures {
            *failures.entry(k).or_default() += v;
        }
    }
    let _ = write!(
        body,
        "</section><h2>Events</h2><section>{}</section>",
        events(r, &hosts)
    );
    if !failures.is_empty() {
        let rows: Vec<Vec<String>> = failures
            .iter()
            .map(|(k, v)| vec![format!("<code>{}</code>", escape(k)), v.to_string()])
            .collect();
        let _ = write!(
            body,
            "<h2>Attempts that did not activate</h2><section>{}</section>",
            table(&["reason", "attempts"], &[1], &rows)
        );
    }
    let clock = match r.clock {
        ClockMode::Virtual => "virtual",
        ClockMode::Real => "real",
    };
    let mut params = vec![
        ("seed", r.seed.to_string()),
        ("days", r.days_simulated.to_string()),
        ("clock", clock.to_owned()),
    ];
    if let Some(m) = r.minutes {
        params.push(("minutes", m.to_string()));
    }
    params.push((
        "exchanges per second (wall clock)",
        format!("{:.0}", s.exchanges_per_sec),
    ));
    body.push_str(&parameters(&params));
    let subtitle = match r.minutes {
        Some(m) => format!("{m} minutes, {} machines, seed {}", s.machines, r.seed),
        None => format!(
            "{} days, {} machines, seed {}",
            r.days_simulated, s.machines, r.seed
        ),
    };
    page("kmsharness simulate", &subtitle, &body)
}
