//! The plots of the HTML pages, drawn by plotters' SVG backend into strings that the pages
//! inline. Each function takes report data and returns SVG (or a note when there is nothing
//! to draw); the page modules never touch plotters.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::escape;
use crate::load::stats::{Outcome, PhaseSummary};

/// Plot size in pixels: the page's content width.
const PLOT_W: u32 = 1000;
/// Plot height in pixels.
const PLOT_H: u32 = 380;
/// Quantile iteration resolution: HdrHistogram's percentile distribution reports 5 ticks per
/// half distance to 100% (its `outputPercentileDistribution` default).
const TICKS_PER_HALF: u32 = 5;
/// Most points a per-second series is drawn with: a day-long run has 86,400 seconds, far more
/// than the plot's 1000 pixels; beyond this, seconds are averaged in equal groups.
const MAX_SERIES_POINTS: usize = 500;
/// Colours in report order (connect, bind, call, total), from the "category10" palette.
pub const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
];
/// Colours of series without a fixed meaning (hosts, groups): the whole "category10" palette.
const PALETTE: [RGBColor; 10] = [
    COLOURS[0],
    COLOURS[1],
    COLOURS[2],
    COLOURS[3],
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The `i`th series' colour (the palette repeats past ten).
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Colour of what is absent or neutral.
pub const GREY: RGBColor = RGBColor(0xbb, 0xbb, 0xbb);
/// Colour of what is pending (neither good nor failed yet).
pub const PENDING: RGBColor = RGBColor(0xf2, 0xb4, 0x47);
/// Colour of what went well.
pub const GOOD: RGBColor = COLOURS[2];
/// Colour of what failed.
pub const BAD: RGBColor = COLOURS[3];
/// Grid lines.
const LIGHT: RGBColor = RGBColor(0xee, 0xee, 0xee);

/// One plotted line: its label, colour and points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A plot drawn by `draw` into an SVG string, or a note when plotters failed.
pub fn plot(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => svg,
        Err(e) => format!("<p class=\"note\">plot not drawn: {}</p>", escape(&e)),
    }
}

/// A chart on linear axes over `x` and `0..y_max`, its caption, axis names and grid drawn:
/// the frame of every plot but the spectrum (log axis) and the category bars.
fn linear_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    x: std::ops::Range<f64>,
    y_max: f64,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(LIGHT)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// Percentile label of a point on the 1/(1-p) axis: 1 → 0%, 10 → 90%, 100 → 99%, …; only
/// powers of ten are labelled, as in HdrHistogram's plotter.
fn percentile_label(x: f64) -> String {
    let exp = x.log10();
    if (exp - exp.round()).abs() > 1e-6 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (exp.round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// The latency percentile spectrum of every phase with data, milliseconds against 1/(1-p).
pub fn spectrum(outcome: &Outcome) -> String {
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (i, name) in ["connect", "bind", "call", "total"].iter().enumerate() {
        let Some(h) = outcome
            .phases
            .get(*name)
            .filter(|p| p.count > 0)
            .and_then(|p: &PhaseSummary| p.decode().ok())
        else {
            continue;
        };
        let mut pts = Vec::new();
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            let q = v.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            pts.push((
                1.0 / (1.0 - q),
                h.highest_equivalent(v.value_iterated_to()) as f64 / 1e3,
            ));
        }
        // The maximum sits at the right edge, one decade past the count's resolution.
        let right = (h.len() as f64).max(10.0);
        pts.push((right, h.max() as f64 / 1e3));
        lines.push((name, COLOURS[i], pts));
    }
    if lines.is_empty() {
        return "<p class=\"note\">No latency recorded.</p>".into();
    }
    let x_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(10.0, f64::max);
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(0.001, f64::max)
        * 1.05;
    plot(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency by percentile", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .light_line_style(LIGHT)
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, colour, pts) in lines {
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// A per-second series as at most [`MAX_SERIES_POINTS`] steps: `(start second, width in
/// seconds, mean per second over the step)`.
fn steps_of(series: &[u64]) -> Vec<(f64, f64, f64)> {
    let group = series.len().div_ceil(MAX_SERIES_POINTS).max(1);
    series
        .chunks(group)
        .enumerate()
        .map(|(i, c)| {
            let mean = c.iter().sum::<u64>() as f64 / c.len() as f64;
            ((i * group) as f64, c.len() as f64, mean)
        })
        .collect()
}

/// A step outline of a series: each step's value held across its width.
fn step_points(steps: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    steps
        .iter()
        .flat_map(|&(x, w, v)| [(x, v), (x + w, v)])
        .collect()
}

/// Activations answered per second over the run, and of them those that failed (from
/// `failed_timeline`; reports written before it existed have none to show).
pub fn throughput(outcome: &Outcome) -> String {
    let t = &outcome.timeline;
    if t.is_empty() {
        return "<p class=\"note\">No activations answered.</p>".into();
    }
    let answered = steps_of(t);
    let failed = steps_of(&outcome.failed_timeline);
    let y_max = answered.iter().map(|s| s.2).fold(1.0, f64::max) * 1.1;
    let x_max = t.len() as f64;
    let averaged = t.len() > MAX_SERIES_POINTS;
    let x_desc = if averaged {
        "second of the run, warm-up included (seconds averaged in groups)"
    } else {
        "second of the run, warm-up included"
    };
    plot(|root| {
        let mut chart = linear_chart(
            root,
            "Activations per second",
            x_desc,
            "activations/s",
            0.0..x_max,
            y_max,
        )?;
        let blue = COLOURS[0];
        chart
            .draw_series(
                AreaSeries::new(step_points(&answered), 0.0, blue.mix(0.25))
                    .border_style(blue.stroke_width(2)),
            )
            .map_err(|e| e.to_string())?
            .label("answered")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], blue.mix(0.5).filled())
            });
        if failed.iter().any(|s| s.2 > 0.0) {
            chart
                .draw_series(
                    AreaSeries::new(step_points(&failed), 0.0, BAD.mix(0.35))
                        .border_style(BAD.stroke_width(2)),
                )
                .map_err(|e| e.to_string())?
                .label("failed")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAD.mix(0.5).filled())
                });
        }
        legend(&mut chart)
    })
}

/// One line of [`lines`]: its label, colour and `(x, y)` points.
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Line colour.
    pub colour: RGBColor,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Lines on linear axes from 0: a value per day of each host (simulate's counts).
pub fn lines(caption: &str, x_desc: &str, y_desc: &str, series: &[Series<'_>]) -> String {
    if series.iter().all(|s| s.points.is_empty()) {
        return "<p class=\"note\">Nothing to plot.</p>".into();
    }
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    plot(|root| {
        let mut chart = linear_chart(root, caption, x_desc, y_desc, 0.0..x_max, y_max)?;
        for s in series {
            let colour = s.colour;
            chart
                .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        legend(&mut chart)
    })
}

/// What happened to one row of a [`timeline`]: spans (a host down, from and to in days) and
/// marks (a failover, at a day).
pub struct Track<'a> {
    /// The row's name.
    pub label: &'a str,
    /// `(from, to)` spans, days since the start.
    pub spans: Vec<(f64, f64)>,
    /// Instants, days since the start.
    pub marks: Vec<f64>,
}

/// One row per track across `days`: spans as bars in `BAD`, marks as diamonds (simulate's
/// hosts going down and machines failing over).
pub fn timeline(caption: &str, days: f64, tracks: &[Track<'_>]) -> String {
    if tracks.is_empty() {
        return "<p class=\"note\">Nothing to plot.</p>".into();
    }
    let rows = tracks.len() as f64;
    let height = (80 + 44 * tracks.len() as u32).min(PLOT_H);
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, (PLOT_W, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let mut chart = ChartBuilder::on(&root)
                    .caption(caption, ("sans-serif", 18))
                    .margin(12)
                    .x_label_area_size(36)
                    .y_label_area_size(120)
                    .build_cartesian_2d(0.0..days.max(1.0), 0.0..rows)
                    .map_err(|e| e.to_string())?;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .x_desc("day")
                    .y_labels(tracks.len() * 2 + 1)
                    .y_label_formatter(&|y| {
                        // Rows are drawn top down; labels sit at their centres.
                        let i = rows - y - 0.5;
                        if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
                            tracks
                                .get(i.round() as usize)
                                .map_or_else(String::new, |t| t.label.to_owned())
                        } else {
                            String::new()
                        }
                    })
                    .light_line_style(LIGHT)
                    .draw()
                    .map_err(|e| e.to_string())?;
                for (i, t) in tracks.iter().enumerate() {
                    let centre = rows - i as f64 - 0.5;
                    chart
                        .draw_series(t.spans.iter().map(|&(from, to)| {
                            Rectangle::new(
                                [(from, centre - 0.3), (to.max(from), centre + 0.3)],
                                BAD.mix(0.7).filled(),
                            )
                        }))
                        .map_err(|e| e.to_string())?;
                    chart
                        .draw_series(
                            t.marks
                                .iter()
                                .map(|&d| TriangleMarker::new((d, centre), 7, COLOURS[0].filled())),
                        )
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => svg,
        Err(e) => format!("<p class=\"note\">plot not drawn: {}</p>", escape(&e)),
    }
}

/// One stacked layer of a bar chart: its label, colour and a count per bar.
pub struct Layer<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Fill colour.
    pub colour: RGBColor,
    /// One count per bar.
    pub counts: Vec<u64>,
}

/// Bars of equal width from `x0`, each the stack of the layers' counts at its index: counts
/// of things per interval (exchanges per time bin; simulate's machines by state per day).
pub fn stacked_bars(
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    x0: f64,
    width: f64,
    layers: &[Layer<'_>],
) -> String {
    let bars = layers.iter().map(|l| l.counts.len()).max().unwrap_or(0);
    if bars == 0 {
        return "<p class=\"note\">Nothing to plot.</p>".into();
    }
    let y_max = highest_stack(layers, bars) as f64 * 1.1;
    let x_max = x0 + width * bars as f64;
    plot(|root| {
        let mut chart = linear_chart(root, caption, x_desc, y_desc, x0..x_max, y_max)?;
        let mut base = vec![0u64; bars];
        for layer in layers {
            let colour = layer.colour;
            let rects: Vec<Rectangle<(f64, f64)>> = layer
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| {
                    let left = x0 + width * i as f64;
                    let (lo, hi) = (base[i] as f64, (base[i] + c) as f64);
                    Rectangle::new([(left, lo), (left + width, hi)], colour.filled())
                })
                .collect();
            for (b, c) in base.iter_mut().zip(&layer.counts) {
                *b += c;
            }
            chart
                .draw_series(rects)
                .map_err(|e| e.to_string())?
                .label(layer.label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.filled())
                });
        }
        legend(&mut chart)
    })
}

/// The highest stack of the layers' counts over the first `bars` indices, at least 1.
fn highest_stack(layers: &[Layer<'_>], bars: usize) -> u64 {
    let total = |i: usize| -> u64 {
        layers
            .iter()
            .map(|l| l.counts.get(i).copied().unwrap_or(0))
            .sum()
    };
    (0..bars).map(total).max().unwrap_or(1).max(1)
}

/// The legend of a chart's labelled series, in its upper right corner.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

/// One bar per label, each the stack of the layers' counts at its index: counts per category
/// (conform's cases by family and verdict).
pub fn category_bars(
    caption: &str,
    y_desc: &str,
    labels: &[String],
    layers: &[Layer<'_>],
) -> String {
    if labels.is_empty() {
        return "<p class=\"note\">Nothing to plot.</p>".into();
    }
    let y_max = (highest_stack(layers, labels.len()) as f64 * 1.15).ceil() as u64;
    let n = labels.len() as u32;
    // A segmented range of integers has one segment per value, both ends included: `0..n`
    // would leave an empty segment after the last bar. With one label the range cannot be
    // empty, and keeps that spare segment.
    let last = if n > 1 { n - 1 } else { n };
    plot(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((0u32..last).into_segmented(), 0u64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .x_labels(labels.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .light_line_style(LIGHT)
            .draw()
            .map_err(|e| e.to_string())?;
        let mut base = vec![0u64; labels.len()];
        for layer in layers {
            let colour = layer.colour;
            let mut rects = Vec::new();
            for (i, c) in layer.counts.iter().enumerate().take(labels.len()) {
                if *c == 0 {
                    continue;
                }
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as u32), base[i]),
                        (SegmentValue::Exact(i as u32 + 1), base[i] + c),
                    ],
                    colour.filled(),
                );
                r.set_margin(0, 0, 12, 12);
                rects.push(r);
                base[i] += c;
            }
            chart
                .draw_series(rects)
                .map_err(|e| e.to_string())?
                .label(layer.label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.filled())
                });
        }
        legend(&mut chart)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_labels_decades() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
        assert_eq!(percentile_label(20.0), "");
    }

    #[test]
    fn long_series_are_averaged_down_to_the_plot() {
        let day = vec![2u64; 86_400];
        let steps = steps_of(&day);
        assert!(steps.len() <= MAX_SERIES_POINTS, "{}", steps.len());
        assert!(steps.iter().all(|s| s.2 == 2.0));
        let covered: f64 = steps.iter().map(|s| s.1).sum();
        assert_eq!(covered, 86_400.0);
        assert_eq!(
            steps_of(&[1, 2, 3]),
            [(0.0, 1.0, 1.0), (1.0, 1.0, 2.0), (2.0, 1.0, 3.0)]
        );
    }
}
