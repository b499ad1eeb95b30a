//! SVG plots for reports: horizontal (stacked) bars, a Gantt-style timeline and line charts for
//! sweeps, drawn with the `plotters` SVG backend and returned as self-contained SVG documents.
//!
//! plotters is built without a font feature, so it cannot measure text. The layout is therefore
//! computed here, from a deliberately generous estimate of text width ([`CHAR_EM`] of the font
//! size per character): the left label area is sized from the longest label, the number of x
//! ticks is the largest that keeps tick labels apart, the legend sits below the axis and wraps,
//! and the reference-line label has its own band above the plot (a line chart's y axis label
//! likewise, written horizontally, since the overlap estimate knows no rotation). Nothing is left
//! to chance placement, so no text overlaps at the default size (the tests check this on the SVG
//! text).
//!
//! Every function is deterministic byte for byte: no hash-ordered iteration, no clocks.

use std::error::Error;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Default (and only) width of every plot, in pixels.
pub const WIDTH: u32 = 960;

/// Layout estimate of a character's advance, as a fraction of the font size. Typical sans-serif
/// text averages 0.5–0.55 em; 0.62 leaves room for capitals and digits.
const CHAR_EM: f64 = 0.62;
/// plotters' SVG backend writes `font-size` as the requested size divided by 1.24.
const SVG_FONT_SCALE: f64 = 1.24;

const MARGIN: i32 = 12;
const TITLE_PX: f64 = 16.0;
const LABEL_PX: f64 = 11.0;
const TICK_PX: f64 = 11.0;
const DESC_PX: f64 = 12.0;
const LEGEND_PX: f64 = 11.0;
const VALUE_PX: f64 = 10.0;
const REF_PX: f64 = 11.0;
const NO_DATA_PX: f64 = 14.0;

/// Height of the band under the plot holding tick marks, tick labels and the axis label.
const X_AREA: i32 = 46;
const LEGEND_ROW: i32 = 18;
const SWATCH: i32 = 12;
/// Gap between a label's right edge and the plot.
const LABEL_GAP: i32 = 8;
/// The left label area never takes more than this fraction of the width; longer labels are cut.
const MAX_LABEL_FRACTION: f64 = 0.38;
/// A timeline lane draws at most (plot width / this) rectangles; denser lanes are rasterised.
const LANE_BUDGET_DIV: i32 = 3;

const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x77, 0x77, 0x77);
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
const STRIPE: RGBColor = RGBColor(0xF4, 0xF4, 0xF4);
const REFERENCE: RGBColor = RGBColor(0xB2, 0x22, 0x22);

/// Colours of unknown kinds, chosen by a stable hash of the kind's name.
const FALLBACK: [RGBColor; 12] = [
    RGBColor(0x8D, 0xD3, 0xC7),
    RGBColor(0xBE, 0xBA, 0xDA),
    RGBColor(0xFB, 0x80, 0x72),
    RGBColor(0x80, 0xB1, 0xD3),
    RGBColor(0xFD, 0xB4, 0x62),
    RGBColor(0xB3, 0xDE, 0x69),
    RGBColor(0xFC, 0xCD, 0xE5),
    RGBColor(0xBC, 0x80, 0xBD),
    RGBColor(0xCC, 0xEB, 0xC5),
    RGBColor(0xFF, 0xED, 0x6F),
    RGBColor(0xA6, 0x76, 0x1D),
    RGBColor(0x66, 0x66, 0x66),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

/// One colour per kind, the same in every plot. Kinds used: "forward", "backward", "weight_grad",
/// "bubble", "optimizer", "ep", "tp", "cp", "pp", "dp" (exposed communication kinds), "compute"
/// (generic), "weights", "grads", "optimizer_state", "activations", "free" (memory), "cost"
/// (phase cost bars), and any other string (hashed deterministically onto a fixed fallback
/// palette).
pub fn color(kind: &str) -> RGBColor {
    match kind {
        "forward" => RGBColor(0x4C, 0x78, 0xA8),
        "backward" => RGBColor(0xF5, 0x85, 0x18),
        "weight_grad" => RGBColor(0xEE, 0xCA, 0x3B),
        "bubble" => RGBColor(0xBA, 0xB0, 0xAC),
        "optimizer" => RGBColor(0xB2, 0x79, 0xA2),
        "ep" => RGBColor(0xE4, 0x57, 0x56),
        "tp" => RGBColor(0x72, 0xB7, 0xB2),
        "cp" => RGBColor(0xFF, 0x9D, 0xA6),
        "pp" => RGBColor(0x9D, 0x75, 0x5D),
        "dp" => RGBColor(0x54, 0xA2, 0x4B),
        "compute" => RGBColor(0x2A, 0x57, 0x83),
        "weights" => RGBColor(0x1B, 0x9E, 0x77),
        "grads" => RGBColor(0xD9, 0x5F, 0x02),
        "optimizer_state" => RGBColor(0x75, 0x70, 0xB3),
        "activations" => RGBColor(0xE7, 0x29, 0x8A),
        "free" => RGBColor(0xD0, 0xD0, 0xD0),
        "cost" => RGBColor(0x6B, 0x6E, 0xCF),
        // Where a run's wall time goes (the goodput section).
        "training" => RGBColor(0x2A, 0x57, 0x83),
        "stragglers" => RGBColor(0xEE, 0xCA, 0x3B),
        "checkpoints" => RGBColor(0x54, 0xA2, 0x4B),
        "lost work" => RGBColor(0xE4, 0x57, 0x56),
        "restarts" => RGBColor(0xB2, 0x79, 0xA2),
        // DualPipe's second direction: the same pass, a darker shade.
        other if other.ends_with(" (reverse)") => {
            let RGBColor(r, g, b) = color(other.trim_end_matches(" (reverse)"));
            let d = |c: u8| (c as u16 * 55 / 100) as u8;
            RGBColor(d(r), d(g), d(b))
        }
        other => {
            // FNV-1a: stable across runs, platforms and Rust versions (unlike `DefaultHasher`).
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in other.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            FALLBACK[(h % FALLBACK.len() as u64) as usize]
        }
    }
}

/// A horizontal stacked bar chart: one bar per (label, segments), segments stacked left to right
/// as (kind, value). `x_label` is the axis label WITH units, e.g. "seconds per step (s)".
/// `reference`: an optional vertical line with its label, e.g. ("HBM capacity 80 GiB", 80.0).
/// A legend lists every kind present (in first-seen order) with its colour.
///
/// Non-finite and negative values count as 0; zero segments are not drawn. Each bar carries its
/// total at its right end.
pub fn stacked_bars(
    title: &str,
    x_label: &str,
    bars: &[(String, Vec<(String, f64)>)],
    reference: Option<(&str, f64)>,
) -> String {
    let mut kinds: Vec<String> = Vec::new();
    let mut rows: Vec<BarRow> = Vec::with_capacity(bars.len());
    for (label, segments) in bars {
        let mut segs = Vec::with_capacity(segments.len());
        for (kind, value) in segments {
            let v = clean(*value);
            if v > 0.0 {
                segs.push((kind_index(&mut kinds, kind), v));
            }
        }
        rows.push(BarRow {
            label: label.clone(),
            segments: segs,
        });
    }
    let reference = reference.map(|(label, value)| (label.to_string(), clean(value)));
    bar_chart(title, x_label, &rows, &kinds, reference, true)
}

/// Simple horizontal bars, one per (label, value), all in colour `kind`; x axis labelled
/// `x_label` (with units). Each bar carries its value at its right end; one kind, so no legend.
pub fn bars(title: &str, x_label: &str, kind: &str, bars: &[(String, f64)]) -> String {
    let kinds = vec![kind.to_string()];
    let rows: Vec<BarRow> = bars
        .iter()
        .map(|(label, value)| {
            let v = clean(*value);
            BarRow {
                label: label.clone(),
                segments: if v > 0.0 { vec![(0, v)] } else { Vec::new() },
            }
        })
        .collect();
    bar_chart(title, x_label, &rows, &kinds, None, false)
}

/// A lane of a timeline: spans (start, end, kind) in seconds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lane {
    pub name: String,
    pub spans: Vec<(f64, f64, String)>,
}

/// A Gantt-style timeline: one row per lane (top to bottom in the given order), each span a
/// rectangle coloured by kind, x axis "time (s)" from 0 to `end_s`, lane names as y labels.
///
/// Spans are clipped to `[0, end_s]` (a non-finite or non-positive `end_s` means "the latest span
/// end"); non-finite or negative times count as 0. Per lane and kind, spans that touch or are
/// closer than one pixel are merged, so ~100,000 spans stay a small SVG; spans of different kinds
/// are never merged. A lane that still needs more than a third of its pixel width in rectangles
/// is drawn column by column instead, each column (1 px, widened only as far as needed to meet
/// that budget) in the kind that covers most of it; so the SVG stays under about 25 kB per lane.
/// Rows are at least 12 px and the plot at least 300 px tall. The legend lists the kinds present.
pub fn timeline(title: &str, lanes: &[Lane], end_s: f64) -> String {
    let mut end = clean(end_s);
    if end <= 0.0 {
        end = lanes
            .iter()
            .flat_map(|l| l.spans.iter())
            .map(|(s, e, _)| clean(*s).max(clean(*e)))
            .fold(0.0, f64::max);
    }
    // Clip and index spans; collect kinds in first-seen order of the drawable spans.
    let mut kinds: Vec<String> = Vec::new();
    let mut clipped: Vec<Vec<(f64, f64, usize)>> = Vec::with_capacity(lanes.len());
    let mut any = false;
    for lane in lanes {
        let mut spans = Vec::with_capacity(lane.spans.len());
        if end > 0.0 {
            for (s, e, kind) in &lane.spans {
                let s = clean(*s).min(end);
                let e = clean(*e).min(end);
                if e > s {
                    spans.push((s, e, kind_index(&mut kinds, kind)));
                }
            }
        }
        any |= !spans.is_empty();
        clipped.push(spans);
    }
    if !any {
        return no_data(title);
    }

    let n = lanes.len() as i32;
    let row_h = (300 / n).max(12);
    let label_px = if row_h < 16 { 10.0 } else { LABEL_PX };
    let labels: Vec<String> = lanes.iter().map(|l| l.name.clone()).collect();
    let (labels, label_w) = fit_labels(&labels, label_px);
    let plot_left = MARGIN + label_w + LABEL_GAP;
    let (x_axis, right) = x_axis_for(end, plot_left, |_| end);
    let plot_w = WIDTH as i32 - plot_left - right;
    let thickness = (row_h - 3).min(40);

    let frame = Frame {
        title,
        x_label: "time (s)",
        plot_left,
        plot_w,
        row_h,
        labels,
        label_px,
        stripes: true,
        axis: x_axis,
        reference: None,
        value_labels: Vec::new(),
        legend: kinds.iter().map(|k| (k.clone(), color(k))).collect(),
    };
    let colors: Vec<RGBColor> = kinds.iter().map(|k| color(k)).collect();
    render(&frame, |root, top, map| {
        for (i, spans) in clipped.iter().enumerate() {
            let y0 = top + i as i32 * row_h + (row_h - thickness) / 2;
            for (x0, x1, k) in lane_rects(spans, kinds.len(), end, map) {
                root.draw(&Rectangle::new(
                    [(x0, y0), (x1, y0 + thickness)],
                    colors[k].filled(),
                ))?;
            }
        }
        Ok(())
    })
}

/// One line of [`lines`]: its name and its `(x, y)` points (`y == None`: infeasible).
pub type Series = (String, Vec<(f64, Option<f64>)>);

/// A line chart for sweeps: `y` against `x`, one line per series (a series is one value of the
/// sweep's second axis, or the only line). `x_label` / `y_label` carry units, e.g.
/// "scale-up bandwidth (GB/s)" and "step time (s)". `points[i] = (x, y)`; `y == None` marks an
/// infeasible point: it is drawn as a red × on the x axis baseline (stacked upwards when several
/// series are infeasible at the same x), listed once in the legend as "infeasible", and the
/// series' line is broken there (never connected across it).
/// `x_ticks`: when Some (and not empty), the x values are categorical (0, 1, 2, ...) and these
/// are their tick labels (e.g. chip names); otherwise x is numeric. `log_x`: numeric x on a log2
/// scale (used for bandwidth sweeps that double; ignored with categories); ticks then sit at the
/// data's x values (up to 16 distinct values, thinned where labels would collide), else at powers
/// of 10 (or of 2). Linear numeric x gets round ticks, as many as keep their labels apart.
///
/// Points are drawn in x order (a stable sort; the given order breaks ties). Each series' colour
/// is [`color`] of its name, so a name has the same colour in every plot; only when two series of
/// one chart would share a colour does the later one take the next free fallback colour. Series
/// named "" get no legend entry (so a single unnamed line has no legend); the legend sits below
/// the x axis and wraps.
///
/// The y axis starts at 0 when all values are ≥ 0 and the smallest is at most half the largest
/// (zero is then no farther from the data than the data's own spread); otherwise it spans the
/// data with 5% padding, so a sweep between 10.2 and 12.5 s shows its differences. The y axis
/// label is written horizontally above the axis (top left), not rotated.
///
/// Degenerate input: a `Some(y)` that is not finite (or beyond ±1e300) breaks the line like an
/// infeasible point but draws no marker; a point whose x cannot be placed (not finite, beyond
/// ±1e300, ≤ 0 on a log axis, or outside `-0.5..=n-0.5` for n categories) is left out. When no
/// point remains (no series, no points, all NaN) the result is the "no data" SVG; when only
/// infeasible points remain, the axes (y from 0 to 1) and their markers are still drawn.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_ticks: Option<&[String]>,
    log_x: bool,
) -> String {
    let categories = x_ticks.filter(|t| !t.is_empty());
    let scale = match categories {
        Some(c) => XScale::Categories(c),
        None if log_x => XScale::Log,
        None => XScale::Linear,
    };
    let mut used: Vec<RGBColor> = Vec::with_capacity(series.len());
    let mut plotted: Vec<PlotLine> = Vec::with_capacity(series.len());
    for (name, pts) in series {
        let mut points: Vec<(f64, f64, LinePoint)> = pts
            .iter()
            .filter_map(|&(x, y)| {
                let t = scale.position(x)?;
                let p = match y {
                    None => LinePoint::Infeasible,
                    Some(v) if v.is_finite() && v.abs() <= 1e300 => LinePoint::Value(v),
                    Some(_) => LinePoint::Gap,
                };
                Some((t, x, p))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = distinct_color(name, &used);
        used.push(c);
        plotted.push(PlotLine {
            name: name.clone(),
            color: c,
            points,
        });
    }
    let drawable = |l: &PlotLine| l.points.iter().any(|p| p.2 != LinePoint::Gap);
    if !plotted.iter().any(drawable) {
        return no_data(title);
    }

    // y axis.
    let values = plotted
        .iter()
        .flat_map(|l| l.points.iter())
        .filter_map(|p| match p.2 {
            LinePoint::Value(v) => Some(v),
            _ => None,
        });
    let (y_lo, y_hi) = y_range(values);
    let plot_h = LINE_PLOT_H;
    let y_ticks = y_ticks(y_lo, y_hi, plot_h);
    let y_tick_w = y_ticks
        .iter()
        .map(|(_, s)| text_w(s, TICK_PX))
        .max()
        .unwrap_or(0);

    // x axis: the t range (t is x, or log2 x), then the plot's left and right edges, widened until
    // the outermost tick labels stay inside the picture.
    let (t0, t1) = scale.range(
        plotted
            .iter()
            .flat_map(|l| l.points.iter().map(|p| (p.0, p.1))),
    );
    let base_left = MARGIN + y_tick_w + LABEL_GAP;
    let (mut left, mut right) = (base_left, MARGIN + 16);
    let mut ticks_x: Vec<(i32, String)> = Vec::new();
    for _ in 0..3 {
        let plot_w = WIDTH as i32 - left - right;
        ticks_x = scale.ticks(&plotted, t0, t1, left, plot_w);
        let lx = ticks_x
            .iter()
            .map(|(x, s)| x - text_w(s, TICK_PX) / 2)
            .min()
            .unwrap_or(MARGIN);
        let rx = ticks_x
            .iter()
            .map(|(x, s)| x + text_w(s, TICK_PX) / 2)
            .max()
            .unwrap_or(0);
        let new_left = left.max(left + MARGIN - lx).max(base_left);
        let new_right = right.max(right + rx - (WIDTH as i32 - MARGIN)).min(160);
        if (new_left, new_right) == (left, right) {
            break;
        }
        (left, right) = (new_left.min(WIDTH as i32 / 3), new_right);
    }
    let plot_w = WIDTH as i32 - left - right;
    // Whatever still leaves the picture is dropped (only in extreme cases).
    ticks_x.retain(|(x, s)| {
        let w = text_w(s, TICK_PX);
        x - w / 2 >= MARGIN && x + w - w / 2 <= WIDTH as i32 - MARGIN
    });

    let title_h = TITLE_PX as i32 + 12;
    let y_label_top = MARGIN + title_h;
    let plot_top = y_label_top + DESC_PX as i32 + 8;
    let plot_bottom = plot_top + plot_h;
    let map_x = |t: f64| left + ((t - t0) / (t1 - t0) * f64::from(plot_w)).round() as i32;
    let map_y =
        |v: f64| plot_bottom - ((v - y_lo) / (y_hi - y_lo) * f64::from(plot_h)).round() as i32;

    let any_infeasible = plotted
        .iter()
        .any(|l| l.points.iter().any(|p| p.2 == LinePoint::Infeasible));
    let mut legend_items: Vec<(String, RGBColor)> = plotted
        .iter()
        .filter(|l| !l.name.is_empty() && drawable(l))
        .map(|l| (l.name.clone(), l.color))
        .collect();
    let n_series_items = legend_items.len();
    if any_infeasible {
        legend_items.push(("infeasible".to_string(), REFERENCE));
    }
    let legend = legend_layout(&legend_items, left);
    let (legend_top, height) = below_axis(&legend, plot_bottom);

    svg_of((WIDTH, height as u32), title, |root| {
        root.fill(&WHITE)?;
        draw_title(root, title)?;
        let y_desc = fit(y_label, DESC_PX, WIDTH as i32 - 2 * MARGIN);
        let style = font(DESC_PX).pos(Pos::new(HPos::Left, VPos::Top));
        root.draw_text(&y_desc, &style, (MARGIN, y_label_top))?;

        // Grid, axes and x tick marks.
        for (v, _) in &y_ticks {
            let y = map_y(*v);
            root.draw(&PathElement::new(vec![(left, y), (left + plot_w, y)], GRID))?;
        }
        for (x, _) in &ticks_x {
            root.draw(&PathElement::new(
                vec![(*x, plot_top), (*x, plot_bottom)],
                GRID,
            ))?;
        }
        draw_axes(root, (left, plot_top), (left + plot_w, plot_bottom))?;
        for (x, _) in &ticks_x {
            root.draw(&PathElement::new(
                vec![(*x, plot_bottom), (*x, plot_bottom + 5)],
                INK,
            ))?;
        }

        // Lines, broken at every point that is not a value; then the markers on top.
        for line in &plotted {
            let style = line.color.stroke_width(2);
            let mut run: Vec<(i32, i32)> = Vec::new();
            for p in line.points.iter().map(Some).chain([None]) {
                match p {
                    Some(&(t, _, LinePoint::Value(v))) => run.push((map_x(t), map_y(v))),
                    _ => {
                        if run.len() >= 2 {
                            root.draw(&PathElement::new(run.clone(), style))?;
                        }
                        run.clear();
                    }
                }
            }
        }
        for line in &plotted {
            for &(t, _, p) in &line.points {
                if let LinePoint::Value(v) = p {
                    root.draw(&Circle::new(
                        (map_x(t), map_y(v)),
                        MARKER_R,
                        line.color.filled(),
                    ))?;
                }
            }
        }
        // Infeasible points: a red × on the baseline, stacked when they share a position.
        let mut stacked: Vec<(i32, i32)> = Vec::new();
        for line in &plotted {
            for &(t, _, p) in &line.points {
                if p != LinePoint::Infeasible {
                    continue;
                }
                let x = map_x(t);
                let k = match stacked.iter_mut().find(|(sx, _)| *sx == x) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        stacked.push((x, 0));
                        0
                    }
                };
                root.draw(&Cross::new(
                    (x, plot_bottom - k * (2 * CROSS_R + 2)),
                    CROSS_R,
                    REFERENCE.stroke_width(2),
                ))?;
            }
        }

        // Tick labels and the x axis label.
        let y_style = font(TICK_PX).pos(Pos::new(HPos::Right, VPos::Center));
        for (v, text) in &y_ticks {
            root.draw_text(text, &y_style, (left - LABEL_GAP, map_y(*v)))?;
        }
        let x_style = font(TICK_PX).pos(Pos::new(HPos::Center, VPos::Top));
        for (x, text) in &ticks_x {
            root.draw_text(text, &x_style, (*x, plot_bottom + 8))?;
        }
        let x_desc = fit(x_label, DESC_PX, plot_w);
        let style = font(DESC_PX).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw_text(&x_desc, &style, (left + plot_w / 2, plot_bottom + 26))?;

        // Legend: a line sample with its marker per series, a red × for "infeasible".
        let legend_style = font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (x, row, text, c)) in legend.iter().enumerate() {
            let cy = legend_top + row * LEGEND_ROW + LEGEND_ROW / 2;
            if i < n_series_items {
                root.draw(&Rectangle::new(
                    [(*x, cy - 1), (x + SWATCH, cy + 1)],
                    c.filled(),
                ))?;
                root.draw(&Circle::new((x + SWATCH / 2, cy), MARKER_R, c.filled()))?;
            } else {
                root.draw(&Cross::new(
                    (x + SWATCH / 2, cy),
                    CROSS_R,
                    c.stroke_width(2),
                ))?;
            }
            root.draw_text(text, &legend_style, (x + SWATCH + 5, cy))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Scatter

/// A scatter layer: its legend name, how it is drawn, and its points (x, y).
pub struct Layer {
    pub name: String,
    pub style: Mark,
    pub points: Vec<(f64, f64)>,
}

/// How a [`Layer`]'s points are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Small grey dots (a cloud); one dot per pixel it covers.
    Cloud,
    /// Markers joined by a line, in x order (a front).
    Line,
    /// A large ringed marker (a chosen point).
    Highlight,
}

/// A dashed limit line of a scatter: its value and legend name.
pub type Limit<'a> = Option<(f64, &'a str)>;

/// A shaded region of a scatter plot: its legend name and the boxes `[x_lo, x_hi, y_lo, y_hi]`
/// it covers (infinite bounds reach the plot's edge).
pub struct Region {
    pub name: String,
    pub boxes: Vec<[f64; 4]>,
}

/// Fill colours of regions, in order, drawn translucent under the points.
const REGION_FILLS: [RGBColor; 3] = [
    RGBColor(0xE4, 0x1A, 0x1C),
    RGBColor(0xFF, 0x7F, 0x00),
    RGBColor(0x37, 0x7E, 0xB8),
];

/// A scatter plot of `layers` on linear axes, with optional limits drawn as dashed red lines
/// (`x_limit`: a vertical one, `y_limit`: a horizontal one, each with its legend name).
/// Points that are not finite are left out; with none left, the "no data" SVG.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    layers: &[Layer],
    x_limit: Option<(f64, &str)>,
    y_limit: Option<(f64, &str)>,
) -> String {
    scatter_regions(title, x_label, y_label, layers, (x_limit, y_limit), &[])
}

/// [`scatter`] over shaded `regions` (each in the legend; their finite edges inside the axes).
pub fn scatter_regions(
    title: &str,
    x_label: &str,
    y_label: &str,
    layers: &[Layer],
    (x_limit, y_limit): (Limit, Limit),
    regions: &[Region],
) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite() && p.0.abs() <= 1e300;
    let pts = || layers.iter().flat_map(|l| l.points.iter().filter(finite));
    if pts().next().is_none() {
        return no_data(title);
    }
    let edges = |i: usize| {
        regions
            .iter()
            .flat_map(|r| r.boxes.iter())
            .flat_map(move |b| [b[i], b[i + 1]])
            .filter(|v| v.is_finite())
    };
    let (x_lo, x_hi) = y_range(
        pts()
            .map(|p| p.0)
            .chain(x_limit.map(|l| l.0))
            .chain(edges(0)),
    );
    let (y_lo, y_hi) = y_range(
        pts()
            .map(|p| p.1)
            .chain(y_limit.map(|l| l.0))
            .chain(edges(2)),
    );
    let plot_h = LINE_PLOT_H;
    let yt = y_ticks(y_lo, y_hi, plot_h);
    let y_tick_w = yt
        .iter()
        .map(|(_, s)| text_w(s, TICK_PX))
        .max()
        .unwrap_or(0);
    let left = MARGIN + y_tick_w + LABEL_GAP;
    let right = MARGIN + 24;
    let plot_w = WIDTH as i32 - left - right;
    let mut xt = y_ticks(x_lo, x_hi, plot_w * 36 / 90);
    let title_h = TITLE_PX as i32 + 12;
    let y_label_top = MARGIN + title_h;
    let plot_top = y_label_top + DESC_PX as i32 + 8;
    let plot_bottom = plot_top + plot_h;
    let map_x = |v: f64| left + ((v - x_lo) / (x_hi - x_lo) * f64::from(plot_w)).round() as i32;
    let map_y =
        |v: f64| plot_bottom - ((v - y_lo) / (y_hi - y_lo) * f64::from(plot_h)).round() as i32;
    xt.retain(|(v, s)| {
        let (x, w) = (map_x(*v), text_w(s, TICK_PX));
        x - w / 2 >= MARGIN && x + w - w / 2 <= WIDTH as i32 - MARGIN
    });
    let mut used: Vec<RGBColor> = Vec::new();
    let colors: Vec<RGBColor> = layers
        .iter()
        .map(|l| {
            let c = match l.style {
                Mark::Cloud => RGBColor(0xAA, 0xAA, 0xAA),
                _ => distinct_color(&l.name, &used),
            };
            used.push(c);
            c
        })
        .collect();
    let mut items: Vec<(String, RGBColor)> = layers
        .iter()
        .zip(&colors)
        .filter(|(l, _)| !l.name.is_empty() && l.points.iter().any(|p| finite(&p)))
        .map(|(l, c)| (l.name.clone(), *c))
        .collect();
    let n_layers = items.len();
    for (_, name) in x_limit.iter().chain(y_limit.iter()) {
        items.push((name.to_string(), REFERENCE));
    }
    let fills: Vec<RGBColor> = (0..regions.len())
        .map(|i| REGION_FILLS[i % REGION_FILLS.len()])
        .collect();
    let n_lines = items.len();
    items.extend(
        regions
            .iter()
            .zip(&fills)
            .map(|(r, c)| (r.name.clone(), *c)),
    );
    let legend = legend_layout(&items, left);
    let (legend_top, height) = below_axis(&legend, plot_bottom);
    svg_of((WIDTH, height as u32), title, |root| {
        root.fill(&WHITE)?;
        draw_title(root, title)?;
        let y_desc = fit(y_label, DESC_PX, WIDTH as i32 - 2 * MARGIN);
        root.draw_text(
            &y_desc,
            &font(DESC_PX).pos(Pos::new(HPos::Left, VPos::Top)),
            (MARGIN, y_label_top),
        )?;
        for (v, _) in &yt {
            let y = map_y(*v);
            root.draw(&PathElement::new(vec![(left, y), (left + plot_w, y)], GRID))?;
        }
        for (v, _) in &xt {
            let x = map_x(*v);
            root.draw(&PathElement::new(
                vec![(x, plot_top), (x, plot_bottom)],
                GRID,
            ))?;
            root.draw(&PathElement::new(
                vec![(x, plot_bottom), (x, plot_bottom + 5)],
                INK,
            ))?;
        }
        for (r, c) in regions.iter().zip(&fills) {
            for b in &r.boxes {
                let cx = |v: f64| map_x(v.clamp(x_lo, x_hi));
                let cy = |v: f64| map_y(v.clamp(y_lo, y_hi));
                let (x0, x1, y0, y1) = (cx(b[0]), cx(b[1]), cy(b[3]), cy(b[2]));
                if x1 > x0 && y1 > y0 {
                    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], c.mix(0.18).filled()))?;
                }
            }
        }
        draw_axes(root, (left, plot_top), (left + plot_w, plot_bottom))?;
        let dashed = |a: (i32, i32), b: (i32, i32)| -> Vec<PathElement<(i32, i32)>> {
            let (len, n) = (f64::from((b.0 - a.0).abs().max((b.1 - a.1).abs())), 12.0);
            let steps = (len / n).ceil().max(1.0) as i32;
            (0..steps)
                .step_by(2)
                .map(|k| {
                    let t0 = f64::from(k) / f64::from(steps);
                    let t1 = (f64::from(k + 1) / f64::from(steps)).min(1.0);
                    let at = |t: f64| {
                        (
                            a.0 + (f64::from(b.0 - a.0) * t).round() as i32,
                            a.1 + (f64::from(b.1 - a.1) * t).round() as i32,
                        )
                    };
                    PathElement::new(vec![at(t0), at(t1)], REFERENCE.stroke_width(2))
                })
                .collect()
        };
        if let Some((v, _)) = x_limit {
            let x = map_x(v);
            for e in dashed((x, plot_top), (x, plot_bottom)) {
                root.draw(&e)?;
            }
        }
        if let Some((v, _)) = y_limit {
            let y = map_y(v);
            for e in dashed((left, y), (left + plot_w, y)) {
                root.draw(&e)?;
            }
        }
        for (l, c) in layers.iter().zip(&colors) {
            let mut at: Vec<(i32, i32)> = l
                .points
                .iter()
                .filter(finite)
                .map(|&(x, y)| (map_x(x), map_y(y)))
                .collect();
            match l.style {
                Mark::Cloud => {
                    at.sort_unstable();
                    at.dedup();
                    for p in at {
                        root.draw(&Circle::new(p, 2, c.filled()))?;
                    }
                }
                Mark::Line => {
                    at.sort_unstable();
                    if at.len() >= 2 {
                        root.draw(&PathElement::new(at.clone(), c.stroke_width(2)))?;
                    }
                    for p in at {
                        root.draw(&Circle::new(p, MARKER_R, c.filled()))?;
                    }
                }
                Mark::Highlight => {
                    for p in at {
                        root.draw(&Circle::new(p, MARKER_R + 5, c.stroke_width(3)))?;
                        root.draw(&Circle::new(p, MARKER_R, c.filled()))?;
                    }
                }
            }
        }
        let y_style = font(TICK_PX).pos(Pos::new(HPos::Right, VPos::Center));
        for (v, text) in &yt {
            root.draw_text(text, &y_style, (left - LABEL_GAP, map_y(*v)))?;
        }
        let x_style = font(TICK_PX).pos(Pos::new(HPos::Center, VPos::Top));
        for (v, text) in &xt {
            root.draw_text(text, &x_style, (map_x(*v), plot_bottom + 8))?;
        }
        let x_desc = fit(x_label, DESC_PX, plot_w);
        root.draw_text(
            &x_desc,
            &font(DESC_PX).pos(Pos::new(HPos::Center, VPos::Top)),
            (left + plot_w / 2, plot_bottom + 26),
        )?;
        let legend_style = font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (x, row, text, c)) in legend.iter().enumerate() {
            let cy = legend_top + row * LEGEND_ROW + LEGEND_ROW / 2;
            let cx = x + SWATCH / 2;
            if i < n_layers {
                let style = layers
                    .iter()
                    .filter(|l| !l.name.is_empty() && l.points.iter().any(|p| finite(&p)))
                    .nth(i)
                    .map_or(Mark::Line, |l| l.style);
                match style {
                    Mark::Cloud => root.draw(&Circle::new((cx, cy), 2, c.filled()))?,
                    Mark::Line => {
                        root.draw(&Rectangle::new(
                            [(*x, cy - 1), (x + SWATCH, cy + 1)],
                            c.filled(),
                        ))?;
                        root.draw(&Circle::new((cx, cy), MARKER_R, c.filled()))?;
                    }
                    Mark::Highlight => {
                        root.draw(&Circle::new((cx, cy), MARKER_R + 2, c.stroke_width(2)))?;
                        root.draw(&Circle::new((cx, cy), MARKER_R - 1, c.filled()))?;
                    }
                }
            } else if i < n_lines {
                root.draw(&PathElement::new(
                    vec![(*x, cy), (x + SWATCH, cy)],
                    c.stroke_width(2),
                ))?;
            } else {
                root.draw(&Rectangle::new(
                    [(*x, cy - SWATCH / 2), (x + SWATCH, cy + SWATCH / 2)],
                    c.mix(0.35).filled(),
                ))?;
            }
            root.draw_text(text, &legend_style, (x + SWATCH + 5, cy))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Bars

struct BarRow {
    label: String,
    /// (kind index, value > 0)
    segments: Vec<(usize, f64)>,
}

fn bar_chart(
    title: &str,
    x_label: &str,
    rows: &[BarRow],
    kinds: &[String],
    reference: Option<(String, f64)>,
    legend: bool,
) -> String {
    let totals: Vec<f64> = rows
        .iter()
        .map(|r| r.segments.iter().map(|(_, v)| v).sum())
        .collect();
    let data_max = totals.iter().copied().fold(0.0, f64::max);
    if rows.is_empty() || data_max <= 0.0 {
        return no_data(title);
    }
    let n = rows.len() as i32;
    let row_h = (300 / n).clamp(22, 44);
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let (labels, label_w) = fit_labels(&labels, LABEL_PX);
    let plot_left = MARGIN + label_w + LABEL_GAP;
    let value_text: Vec<String> = totals.iter().map(|t| fmt_value(*t)).collect();
    let ref_value = reference.as_ref().map_or(0.0, |r| r.1);

    // The x range leaves room for each bar's value label inside the plot, and for the reference.
    let x_max_for = |plot_w: i32| {
        let pw = f64::from(plot_w.max(1));
        let mut x_max = (data_max * 1.02).max(ref_value * 1.03);
        for (total, text) in totals.iter().zip(&value_text) {
            let room = (pw - f64::from(text_w(text, VALUE_PX) + 8)).max(pw / 2.0);
            x_max = x_max.max(total * pw / room);
        }
        x_max
    };
    let (axis, right) = x_axis_for(0.0, plot_left, x_max_for);
    let plot_w = WIDTH as i32 - plot_left - right;
    let thickness = ((f64::from(row_h) * 0.64).round() as i32).max(8);

    let frame = Frame {
        title,
        x_label,
        plot_left,
        plot_w,
        row_h,
        labels,
        label_px: LABEL_PX,
        stripes: false,
        axis,
        reference,
        value_labels: totals.iter().copied().zip(value_text).collect(),
        legend: if legend {
            kinds.iter().map(|k| (k.clone(), color(k))).collect()
        } else {
            Vec::new()
        },
    };
    let colors: Vec<RGBColor> = kinds.iter().map(|k| color(k)).collect();
    render(&frame, |root, top, map| {
        for (i, row) in rows.iter().enumerate() {
            let y0 = top + i as i32 * row_h + (row_h - thickness) / 2;
            let mut acc = 0.0;
            for &(k, v) in &row.segments {
                let (x0, x1) = (map(acc), map(acc + v));
                acc += v;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x1, y0 + thickness)],
                    colors[k].filled(),
                ))?;
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Lines

/// Height of a line chart's plotting area.
const LINE_PLOT_H: i32 = 300;
/// Radius of a line chart's point markers.
const MARKER_R: i32 = 3;
/// Half-size of an infeasible point's ×.
const CROSS_R: i32 = 4;
/// Minimum gap between neighbouring x tick labels.
const TICK_GAP: i32 = 12;
/// On a log axis, at most this many distinct x values are labelled individually.
const MAX_DATA_TICKS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
enum LinePoint {
    Value(f64),
    Infeasible,
    /// A value that cannot be drawn (not finite): breaks the line, no marker.
    Gap,
}

struct PlotLine {
    name: String,
    color: RGBColor,
    /// (position on the x axis, x, point), sorted by position.
    points: Vec<(f64, f64, LinePoint)>,
}

enum XScale<'a> {
    Categories(&'a [String]),
    Linear,
    /// Positions are log2 of x.
    Log,
}

impl XScale<'_> {
    /// Where `x` sits on the axis, or None when it cannot be placed.
    fn position(&self, x: f64) -> Option<f64> {
        if !x.is_finite() || x.abs() > 1e300 {
            return None;
        }
        match self {
            XScale::Categories(c) => (-0.5..=c.len() as f64 - 0.5).contains(&x).then_some(x),
            XScale::Linear => Some(x),
            XScale::Log => (x > 0.0).then(|| x.log2()),
        }
    }

    /// The axis range in positions, from the points' (position, x): every category, or the data
    /// with 4% padding (a single position: ±10% of x, or a halving/doubling on a log axis).
    fn range(&self, points: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
        if let XScale::Categories(c) = self {
            return (-0.5, c.len() as f64 - 0.5);
        }
        let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (t, _)| {
            (lo.min(t), hi.max(t))
        });
        if lo > hi {
            return (0.0, 1.0);
        }
        if hi - lo > lo.abs().max(hi.abs()) * 1e-9 {
            let pad = (hi - lo) * 0.04;
            return (lo - pad, hi + pad);
        }
        let pad = match self {
            XScale::Log => 1.0,
            _ if lo == 0.0 => 1.0,
            _ => lo.abs() * 0.1,
        };
        (lo - pad, hi + pad)
    }

    /// Tick positions in pixels with their labels, none closer than [`TICK_GAP`].
    fn ticks(
        &self,
        lines: &[PlotLine],
        t0: f64,
        t1: f64,
        left: i32,
        plot_w: i32,
    ) -> Vec<(i32, String)> {
        let px = |t: f64| left + ((t - t0) / (t1 - t0) * f64::from(plot_w)).round() as i32;
        let ticks: Vec<(i32, String)> = match self {
            XScale::Categories(c) => {
                let slot = plot_w / c.len() as i32;
                let max_w = (slot - TICK_GAP).max(36);
                c.iter()
                    .enumerate()
                    .map(|(i, s)| (px(i as f64), fit(s, TICK_PX, max_w)))
                    .collect()
            }
            XScale::Linear => {
                let (hint, format, _) = choose_ticks_in(t0, t1, plot_w);
                RangedCoordf64::from(t0..t1)
                    .key_points(hint)
                    .into_iter()
                    .map(|v| (px(v), fmt_tick(v, format)))
                    .collect()
            }
            XScale::Log => {
                let mut xs: Vec<f64> = lines
                    .iter()
                    .flat_map(|l| l.points.iter().map(|p| p.1))
                    .collect();
                xs.sort_by(f64::total_cmp);
                xs.dedup();
                if xs.len() > MAX_DATA_TICKS {
                    xs = powers_within(10.0, t0, t1);
                    if xs.len() < 2 {
                        xs = powers_within(2.0, t0, t1);
                    }
                }
                xs.into_iter()
                    .map(|x| (px(x.log2()), fmt_short(x)))
                    .collect()
            }
        };
        // Greedy from the left: keep a tick when its label clears the last one kept.
        let mut kept: Vec<(i32, String)> = Vec::with_capacity(ticks.len());
        let mut last_right = i32::MIN;
        for (x, s) in ticks {
            let w = text_w(&s, TICK_PX);
            if x - w / 2 >= last_right.saturating_add(TICK_GAP) {
                last_right = x + w - w / 2;
                kept.push((x, s));
            }
        }
        kept
    }
}

/// The powers of `base` whose log2 lies in `t0..=t1`.
fn powers_within(base: f64, t0: f64, t1: f64) -> Vec<f64> {
    let per = base.log2();
    let (k0, k1) = ((t0 / per).ceil() as i32, (t1 / per).floor() as i32);
    (k0..=k1).map(|k| base.powi(k)).collect()
}

/// The y range: from 0 when zero is no farther from the data than its spread (all values ≥ 0
/// and the smallest at most half the largest, or all equal; likewise for all ≤ 0), else the
/// data ± 5%. No values (or only zeros): 0 to 1.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo <= lo.abs().max(hi.abs()) * 1e-9 {
        // Constant, as far as an axis can tell.
        lo = hi;
    }
    if lo >= 0.0 && (lo <= hi / 2.0 || lo == hi) {
        lo = 0.0;
    }
    if hi <= 0.0 && (hi >= lo / 2.0 || lo == hi) {
        hi = 0.0;
    }
    if lo == hi {
        return (0.0, 1.0);
    }
    let pad = (hi - lo) * 0.05;
    if lo != 0.0 {
        lo -= pad;
    }
    if hi != 0.0 {
        hi += pad;
    }
    (lo, hi)
}

/// y ticks with their labels: the most (at most 10) that stay at least 36 px apart.
fn y_ticks(lo: f64, hi: f64, plot_h: i32) -> Vec<(f64, String)> {
    let magnitude = lo.abs().max(hi.abs());
    for hint in (2..=10).rev() {
        let points = RangedCoordf64::from(lo..hi).key_points(hint);
        if points.len() < 2 {
            continue;
        }
        let step = points[1] - points[0];
        if step / (hi - lo) * f64::from(plot_h) >= 36.0 || hint == 2 {
            let format = tick_format(step, magnitude);
            return points
                .into_iter()
                .map(|v| (v, fmt_tick(v, format)))
                .collect();
        }
    }
    // A range too narrow for plotters' key points: label its ends.
    vec![(lo, fmt_value(lo)), (hi, fmt_value(hi))]
}

/// A series' colour: [`color`] of its name, unless an earlier series of the same chart has it;
/// then the next fallback colour not yet used (or the name's colour, when all are).
/// An unnamed series (a sweep's only line) is drawn in the strong "compute" blue.
fn distinct_color(name: &str, used: &[RGBColor]) -> RGBColor {
    let own = if name.is_empty() {
        color("compute")
    } else {
        color(name)
    };
    if !used.contains(&own) {
        return own;
    }
    let start = FALLBACK.iter().position(|c| *c == own).map_or(0, |i| i + 1);
    (0..FALLBACK.len())
        .map(|i| FALLBACK[(start + i) % FALLBACK.len()])
        .find(|c| !used.contains(c))
        .unwrap_or(own)
}

/// [`fmt_value`] without trailing zeros: "50", "12.5", "1.5e9".
fn fmt_short(v: f64) -> String {
    let s = fmt_value(v);
    let (mantissa, exp) = match s.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (s.as_str(), None),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    match exp {
        Some(e) => format!("{mantissa}e{e}"),
        None => mantissa.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Timeline coalescing

/// Pixel rectangles `(x0, x1, kind)` for one lane's spans (already clipped to `[0, end]`, with
/// `end > start`). `map` takes seconds to pixels.
fn lane_rects(
    spans: &[(f64, f64, usize)],
    n_kinds: usize,
    end: f64,
    map: &dyn Fn(f64) -> i32,
) -> Vec<(i32, i32, usize)> {
    let (left, right) = (map(0.0), map(end));
    let cols = (right - left).max(1);
    let pixel_s = end / f64::from(cols);

    // Per kind: sort, then merge spans that touch or are less than a pixel apart.
    let mut by_kind: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n_kinds];
    for &(s, e, k) in spans {
        by_kind[k].push((s, e));
    }
    let mut rects = Vec::new();
    for (k, list) in by_kind.iter_mut().enumerate() {
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut current: Option<(f64, f64)> = None;
        let flush = |(s, e): (f64, f64), rects: &mut Vec<(i32, i32, usize)>| {
            let x0 = map(s);
            rects.push((x0, map(e).max(x0 + 1), k));
        };
        for &(s, e) in list.iter() {
            current = match current {
                Some((cs, ce)) if s - ce < pixel_s => Some((cs, ce.max(e))),
                Some(done) => {
                    flush(done, &mut rects);
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        if let Some(done) = current {
            flush(done, &mut rects);
        }
    }
    let budget = (cols / LANE_BUDGET_DIV).max(1) as usize;
    if rects.len() <= budget {
        return rects;
    }

    // Denser than the display can show: give each pixel column to the kind covering most of it,
    // widening the columns until the lane fits its budget of rectangles.
    let ncols = cols as usize;
    let mut cover = vec![0.0f64; ncols * n_kinds];
    for &(s, e, k) in spans {
        let c0 = ((s / pixel_s) as usize).min(ncols - 1);
        let c1 = ((e / pixel_s) as usize).min(ncols - 1);
        for c in c0..=c1 {
            let lo = s.max(c as f64 * pixel_s);
            let hi = e.min((c + 1) as f64 * pixel_s);
            if hi > lo {
                cover[c * n_kinds + k] += hi - lo;
            }
        }
    }
    let mut width = 1;
    loop {
        let raster = raster_runs(&cover, n_kinds, ncols, width, left);
        if raster.len() <= budget || width * budget >= ncols {
            return if raster.len() < rects.len() {
                raster
            } else {
                rects
            };
        }
        width += 1;
    }
}

/// Rectangles of runs of equal dominant kind over columns `width` pixels wide.
fn raster_runs(
    cover: &[f64],
    n_kinds: usize,
    ncols: usize,
    width: usize,
    left: i32,
) -> Vec<(i32, i32, usize)> {
    let mut out: Vec<(i32, i32, usize)> = Vec::new();
    let mut sums = vec![0.0f64; n_kinds];
    for c0 in (0..ncols).step_by(width) {
        let c1 = (c0 + width).min(ncols);
        sums.iter_mut().for_each(|v| *v = 0.0);
        for c in c0..c1 {
            for (k, v) in sums.iter_mut().enumerate() {
                *v += cover[c * n_kinds + k];
            }
        }
        // Ties go to the first-seen kind.
        let mut best: Option<(usize, f64)> = None;
        for (k, &v) in sums.iter().enumerate() {
            if v > 0.0 && best.is_none_or(|(_, b)| v > b) {
                best = Some((k, v));
            }
        }
        if let Some((k, _)) = best {
            let (x0, x1) = (left + c0 as i32, left + c1 as i32);
            match out.last_mut() {
                Some(last) if last.2 == k && last.1 == x0 => last.1 = x1,
                _ => out.push((x0, x1, k)),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Shared frame: title, rows with labels, x axis, reference line, value labels, legend

struct XAxis {
    x_max: f64,
    ticks: usize,
    format: TickFormat,
}

/// How tick labels are printed: fixed decimals, or scientific with a mantissa precision for
/// ranges too large or too small to print plainly.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TickFormat {
    Fixed(usize),
    Sci(usize),
}

struct Frame<'t> {
    title: &'t str,
    x_label: &'t str,
    plot_left: i32,
    plot_w: i32,
    row_h: i32,
    /// One per row, already cut to fit.
    labels: Vec<String>,
    label_px: f64,
    stripes: bool,
    axis: XAxis,
    reference: Option<(String, f64)>,
    /// Per row: (x position in data units, text).
    value_labels: Vec<(f64, String)>,
    legend: Vec<(String, RGBColor)>,
}

/// Legend entries laid out in rows: (x, row, text, colour).
/// Where a legend laid out by [`legend_layout`] starts below the x axis, and the SVG's height
/// with it.
fn below_axis(legend: &[(i32, i32, String, RGBColor)], plot_bottom: i32) -> (i32, i32) {
    let legend_top = plot_bottom + X_AREA + 10;
    let height = match legend.last() {
        Some(last) => legend_top + (last.1 + 1) * LEGEND_ROW + MARGIN,
        None => plot_bottom + X_AREA + MARGIN,
    };
    (legend_top, height)
}

fn legend_layout(items: &[(String, RGBColor)], x_start: i32) -> Vec<(i32, i32, String, RGBColor)> {
    let right = WIDTH as i32 - MARGIN;
    let max_text = right - x_start - SWATCH - 5;
    let mut out = Vec::with_capacity(items.len());
    let (mut x, mut row) = (x_start, 0);
    for (name, c) in items {
        let text = fit(name, LEGEND_PX, max_text);
        let w = SWATCH + 5 + text_w(&text, LEGEND_PX);
        if x > x_start && x + w > right {
            x = x_start;
            row += 1;
        }
        out.push((x, row, text, *c));
        x += w + 20;
    }
    out
}

fn render(
    frame: &Frame,
    data: impl FnOnce(&Area, i32, &dyn Fn(f64) -> i32) -> DrawResult,
) -> String {
    let n = frame.labels.len() as i32;
    let title_h = TITLE_PX as i32 + 12;
    let ref_h = if frame.reference.is_some() {
        REF_PX as i32 + 6
    } else {
        0
    };
    let plot_top = MARGIN + title_h + ref_h;
    let plot_h = (n * frame.row_h).max(1);
    let plot_bottom = plot_top + plot_h;
    let legend = legend_layout(&frame.legend, frame.plot_left);
    let (legend_top, height) = below_axis(&legend, plot_bottom);

    svg_of((WIDTH, height as u32), frame.title, |root| {
        root.fill(&WHITE)?;
        draw_title(root, frame.title)?;

        if frame.stripes {
            for i in (1..n).step_by(2) {
                let y = plot_top + i * frame.row_h;
                root.draw(&Rectangle::new(
                    [
                        (frame.plot_left, y),
                        (frame.plot_left + frame.plot_w, y + frame.row_h),
                    ],
                    STRIPE.filled(),
                ))?;
            }
        }

        let panel = root
            .clone()
            .shrink((frame.plot_left, plot_top), (frame.plot_w, plot_h + X_AREA));
        let mut chart = ChartBuilder::on(&panel)
            .x_label_area_size(X_AREA)
            .build_cartesian_2d(0f64..frame.axis.x_max, 0f64..1f64)?;
        let x_desc = fit(frame.x_label, DESC_PX, frame.plot_w);
        let format = frame.axis.format;
        let formatter = |v: &f64| fmt_tick(*v, format);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .max_light_lines(0)
            .x_labels(frame.axis.ticks)
            .x_label_formatter(&formatter)
            .x_desc(x_desc)
            .label_style(font(TICK_PX))
            .axis_desc_style(font(DESC_PX))
            .bold_line_style(GRID)
            .axis_style(INK)
            .draw()?;
        root.draw(&PathElement::new(
            vec![(frame.plot_left, plot_top), (frame.plot_left, plot_bottom)],
            INK,
        ))?;

        let map = |v: f64| chart.backend_coord(&(v, 0.0)).0;
        data(root, plot_top, &map)?;

        let label_style = font(frame.label_px).pos(Pos::new(HPos::Right, VPos::Center));
        for (i, label) in frame.labels.iter().enumerate() {
            let y = plot_top + i as i32 * frame.row_h + frame.row_h / 2;
            root.draw_text(label, &label_style, (frame.plot_left - LABEL_GAP, y))?;
        }
        let value_style = font(VALUE_PX)
            .color(&MUTED)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (x, text)) in frame.value_labels.iter().enumerate() {
            let y = plot_top + i as i32 * frame.row_h + frame.row_h / 2;
            root.draw_text(text, &value_style, (map(*x) + 4, y))?;
        }

        if let Some((label, value)) = &frame.reference {
            let x = map(*value);
            root.draw(&PathElement::new(
                vec![(x, plot_top - 3), (x, plot_bottom)],
                REFERENCE.stroke_width(2),
            ))?;
            let text = fit(label, REF_PX, WIDTH as i32 - 2 * MARGIN);
            let w = text_w(&text, REF_PX);
            let x_left = (x - w / 2).clamp(MARGIN, WIDTH as i32 - MARGIN - w);
            let style = font(REF_PX)
                .color(&REFERENCE)
                .pos(Pos::new(HPos::Left, VPos::Top));
            root.draw_text(&text, &style, (x_left, MARGIN + title_h))?;
        }

        let legend_style = font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center));
        for (x, row, text, c) in &legend {
            let y = legend_top + row * LEGEND_ROW;
            let sy = y + (LEGEND_ROW - SWATCH) / 2;
            root.draw(&Rectangle::new(
                [(*x, sy), (x + SWATCH, sy + SWATCH)],
                c.filled(),
            ))?;
            root.draw_text(text, &legend_style, (x + SWATCH + 5, y + LEGEND_ROW / 2))?;
        }
        Ok(())
    })
}

/// Picks the x range and tick count for a plot starting at `plot_left`; returns the axis and the
/// right margin, which leaves room for half of the widest tick label. `x_max_for(plot_w)` gives
/// the range's upper end for a plot width (or `fixed` when positive).
fn x_axis_for(fixed: f64, plot_left: i32, x_max_for: impl Fn(i32) -> f64) -> (XAxis, i32) {
    let mut right = MARGIN + 16;
    let mut axis = XAxis {
        x_max: 1.0,
        ticks: 2,
        format: TickFormat::Fixed(0),
    };
    for _ in 0..3 {
        let plot_w = WIDTH as i32 - plot_left - right;
        let x_max = if fixed > 0.0 {
            fixed
        } else {
            x_max_for(plot_w)
        };
        let (ticks, format, widest) = choose_ticks(x_max, plot_w);
        axis = XAxis {
            x_max,
            ticks,
            format,
        };
        let needed = (widest / 2 + 6).clamp(MARGIN, 120);
        if needed <= right {
            break;
        }
        right = needed;
    }
    (axis, right)
}

/// The largest tick count (at most 10) whose labels, centred on their ticks, stay apart.
/// Returns (count hint for plotters, label format, widest label in pixels).
fn choose_ticks(x_max: f64, plot_w: i32) -> (usize, TickFormat, i32) {
    choose_ticks_in(0.0, x_max, plot_w)
}

/// [`choose_ticks`] for an axis spanning `lo..hi` (`lo < hi`) over `plot_w` pixels.
fn choose_ticks_in(lo: f64, hi: f64, plot_w: i32) -> (usize, TickFormat, i32) {
    let mut fallback = (2, TickFormat::Fixed(0), 0);
    let magnitude = lo.abs().max(hi.abs());
    for hint in (2..=10).rev() {
        let points = RangedCoordf64::from(lo..hi).key_points(hint);
        if points.len() < 2 {
            continue;
        }
        let step = points[1] - points[0];
        let format = tick_format(step, magnitude);
        let widest = points
            .iter()
            .map(|v| text_w(&fmt_tick(*v, format), TICK_PX))
            .max()
            .unwrap_or(0);
        let spacing = step / (hi - lo) * f64::from(plot_w);
        if spacing >= f64::from(widest + 16) && spacing >= 48.0 {
            return (hint, format, widest);
        }
        fallback = (hint, format, widest);
    }
    fallback
}

fn draw_title(root: &Area, title: &str) -> DrawResult {
    let text = fit(title, TITLE_PX * 1.1, WIDTH as i32 - 2 * MARGIN);
    let style = TextStyle::from(
        ("sans-serif", TITLE_PX * SVG_FONT_SCALE)
            .into_font()
            .style(FontStyle::Bold),
    )
    .color(&INK)
    .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw_text(&text, &style, (WIDTH as i32 / 2, MARGIN))?;
    Ok(())
}

/// The left and bottom axis lines of a plot area from `top_left` to `bottom_right`.
fn draw_axes(
    root: &DrawingArea<SVGBackend, Shift>,
    (left, top): (i32, i32),
    (right, bottom): (i32, i32),
) -> DrawResult {
    root.draw(&PathElement::new(
        vec![(left, top), (left, bottom), (right, bottom)],
        INK,
    ))?;
    Ok(())
}

/// An SVG of `size` drawn by `draw` (plotters), or the hand-written fallback with `title` and the
/// error should plotters fail.
fn svg_of(
    size: (u32, u32),
    title: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> String {
    let mut svg = String::new();
    let result = (|| -> DrawResult {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    match result {
        Ok(()) => svg,
        Err(e) => fallback_svg(title, &format!("plot error: {e}")),
    }
}

/// A valid SVG with the title and "no data".
fn no_data(title: &str) -> String {
    let mut svg = String::new();
    let result = (|| -> DrawResult {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 160)).into_drawing_area();
        root.fill(&WHITE)?;
        draw_title(&root, title)?;
        let style = font(NO_DATA_PX)
            .color(&MUTED)
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw_text("no data", &style, (WIDTH as i32 / 2, 90))?;
        root.present()?;
        Ok(())
    })();
    match result {
        Ok(()) => svg,
        Err(e) => fallback_svg(title, &format!("no data ({e})")),
    }
}

/// Hand-written last resort, should plotters ever fail on a string buffer.
fn fallback_svg(title: &str, message: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<svg width=\"{WIDTH}\" height=\"160\" viewBox=\"0 0 {WIDTH} 160\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"480\" y=\"30\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"16\">{}</text>\n\
         <text x=\"480\" y=\"90\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"14\">{}</text>\n</svg>\n",
        esc(title),
        esc(message)
    )
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// A text style of `px` pixels as written in the SVG.
fn font(px: f64) -> TextStyle<'static> {
    ("sans-serif", px * SVG_FONT_SCALE).into_font().color(&INK)
}

/// Layout estimate of a text's width in pixels.
fn text_w(s: &str, px: f64) -> i32 {
    (s.chars().count() as f64 * px * CHAR_EM).ceil() as i32
}

/// One line, cut with an ellipsis to fit `max_w` pixels.
fn fit(s: &str, px: f64, max_w: i32) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text_w(&s, px) <= max_w {
        return s;
    }
    let max_chars = (f64::from(max_w.max(0)) / (px * CHAR_EM)).floor() as usize;
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Labels cut to the maximum label area, and the width of the widest.
fn fit_labels(labels: &[String], px: f64) -> (Vec<String>, i32) {
    let max_w = (f64::from(WIDTH) * MAX_LABEL_FRACTION) as i32;
    let fitted: Vec<String> = labels.iter().map(|l| fit(l, px, max_w)).collect();
    let widest = fitted.iter().map(|l| text_w(l, px)).max().unwrap_or(0);
    (fitted, widest)
}

fn kind_index(kinds: &mut Vec<String>, kind: &str) -> usize {
    match kinds.iter().position(|k| k == kind) {
        Some(i) => i,
        None => {
            kinds.push(kind.to_string());
            kinds.len() - 1
        }
    }
}

/// Non-finite and negative values count as 0.
fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

/// The format for multiples of `step` (1, 2 or 5 times a power of ten) up to `x_max`.
fn tick_format(step: f64, x_max: f64) -> TickFormat {
    let step_exp = (step.log10() + 1e-9).floor();
    if !(1e-3..1e7).contains(&x_max) {
        let top_exp = (x_max.log10() + 1e-9).floor();
        TickFormat::Sci(((top_exp - step_exp).max(0.0) as usize).min(12))
    } else if step_exp >= 0.0 {
        TickFormat::Fixed(0)
    } else {
        TickFormat::Fixed((-step_exp as usize).min(12))
    }
}

fn fmt_tick(v: f64, format: TickFormat) -> String {
    match format {
        _ if v == 0.0 => "0".to_string(),
        TickFormat::Fixed(decimals) => format!("{v:.decimals$}"),
        TickFormat::Sci(precision) => format!("{v:.precision$e}"),
    }
}

/// About three significant digits.
fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-4..1e7).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        ((2.0 - a.log10().floor()) as usize).min(12)
    };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- a tiny SVG reader: enough for plotters' flat output ----

    #[derive(Debug)]
    struct El {
        name: String,
        attrs: Vec<(String, String)>,
        text: String,
    }

    impl El {
        fn attr(&self, key: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
        fn num(&self, key: &str) -> f64 {
            self.attr(key)
                .unwrap_or_else(|| panic!("{} lacks {key}", self.name))
                .parse()
                .unwrap()
        }
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    fn parse(svg: &str) -> Vec<El> {
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            if rest.starts_with('/') {
                continue;
            }
            let end = rest.find('>').expect("unterminated tag");
            let tag = rest[..end].trim_end_matches('/');
            let (name, mut attrs_src) = tag.split_once(' ').unwrap_or((tag, ""));
            let mut attrs = Vec::new();
            while let Some(eq) = attrs_src.find("=\"") {
                let key = attrs_src[..eq].trim().to_string();
                let after = &attrs_src[eq + 2..];
                let close = after.find('"').expect("unterminated attribute");
                attrs.push((key, unescape(&after[..close])));
                attrs_src = &after[close + 1..];
            }
            let mut text = String::new();
            rest = &rest[end + 1..];
            if name == "text" {
                let close = rest.find("</text>").expect("unterminated text");
                text = unescape(rest[..close].trim());
            }
            out.push(El {
                name: name.to_string(),
                attrs,
                text,
            });
        }
        out
    }

    fn texts(els: &[El]) -> Vec<&str> {
        els.iter()
            .filter(|e| e.name == "text")
            .map(|e| e.text.as_str())
            .collect()
    }

    fn count(els: &[El], name: &str) -> usize {
        els.iter().filter(|e| e.name == name).count()
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    fn rects_filled(els: &[El], c: RGBColor) -> Vec<&El> {
        let h = hex(c);
        els.iter()
            .filter(|e| e.name == "rect" && e.attr("fill") == Some(h.as_str()))
            .collect()
    }

    /// Structure without coordinates: element names (runs of identical ones folded), fills,
    /// font sizes and text contents.
    fn summary(svg: &str) -> String {
        let els = parse(svg);
        let mut lines: Vec<(String, usize)> = Vec::new();
        for e in &els {
            let line = match e.name.as_str() {
                "svg" => format!(
                    "svg {}x{}",
                    e.attr("width").unwrap(),
                    e.attr("height").unwrap()
                ),
                "text" => format!(
                    "text {} {} {:?}",
                    e.attr("font-size").unwrap(),
                    e.attr("text-anchor").unwrap(),
                    e.text
                ),
                "rect" => format!("rect fill={}", e.attr("fill").unwrap()),
                "circle" => format!("circle fill={}", e.attr("fill").unwrap()),
                "polyline" | "line" => {
                    format!("{} stroke={}", e.name, e.attr("stroke").unwrap())
                }
                other => other.to_string(),
            };
            match lines.last_mut() {
                Some((l, n)) if *l == line => *n += 1,
                _ => lines.push((line, 1)),
            }
        }
        lines
            .into_iter()
            .map(|(l, n)| {
                if n > 1 {
                    format!("{l} ×{n}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    /// Estimated box of every non-empty text: width 0.6 × font-size × chars, height font-size,
    /// placed by text-anchor and plotters' `dy` (0.76em: top, 0.5ex: centre, -0.5ex: bottom).
    fn text_boxes(els: &[El]) -> Vec<(String, [f64; 4])> {
        els.iter()
            .filter(|e| e.name == "text" && !e.text.is_empty())
            .map(|e| {
                let (x, y, fs) = (e.num("x"), e.num("y"), e.num("font-size"));
                let w = 0.6 * fs * e.text.chars().count() as f64;
                let x0 = match e.attr("text-anchor") {
                    Some("middle") => x - w / 2.0,
                    Some("end") => x - w,
                    _ => x,
                };
                let y0 = match e.attr("dy") {
                    Some("0.76em") => y,
                    Some("0.5ex") => y - fs / 2.0,
                    Some("-0.5ex") => y - fs,
                    other => panic!("unexpected dy {other:?}"),
                };
                (e.text.clone(), [x0, y0, x0 + w, y0 + fs])
            })
            .collect()
    }

    fn assert_no_text_overlap(svg: &str) {
        let els = parse(svg);
        let width: f64 = els[0].num("width");
        let height: f64 = els[0].num("height");
        let boxes = text_boxes(&els);
        assert!(boxes.len() > 3);
        for (t, b) in &boxes {
            assert!(
                b[0] >= 0.0 && b[2] <= width && b[1] >= 0.0 && b[3] <= height,
                "{t:?} {b:?} leaves the {width}x{height} picture"
            );
        }
        for (i, (ta, a)) in boxes.iter().enumerate() {
            for (tb, b) in &boxes[i + 1..] {
                let apart = a[2] <= b[0] || b[2] <= a[0] || a[3] <= b[1] || b[3] <= a[1];
                assert!(apart, "{ta:?} {a:?} overlaps {tb:?} {b:?}");
            }
        }
    }

    fn six_kind_bars() -> Vec<(String, Vec<(String, f64)>)> {
        let kinds = [
            "forward",
            "backward",
            "weight_grad",
            "bubble",
            "optimizer",
            "dp",
        ];
        (0..5)
            .map(|i| {
                let segs = kinds
                    .iter()
                    .enumerate()
                    .map(|(k, kind)| (kind.to_string(), 1.0 + (i * k) as f64 * 0.7))
                    .collect();
                (format!("pipeline-parallel plan {i}"), segs)
            })
            .collect()
    }

    fn stage_lanes(lanes: usize, spans_per_lane: usize, end: f64) -> Vec<Lane> {
        let kinds = ["forward", "backward", "tp", "pp"];
        let slot = end / spans_per_lane as f64;
        (0..lanes)
            .map(|l| Lane {
                name: format!("stage {} · compute", l),
                spans: (0..spans_per_lane)
                    .map(|i| {
                        let t = i as f64 * slot;
                        // 1F1B-like: forward/backward pairs with short exposed communication.
                        let kind = kinds[(i / 2 + l) % 2 + if i % 7 == 6 { 2 } else { 0 }];
                        (t, t + slot * 0.9, kind.to_string())
                    })
                    .collect(),
            })
            .collect()
    }

    const CHIPS: [&str; 7] = ["H800", "H100", "H20", "H200", "A800", "A100", "B200"];

    fn chip_ticks() -> Vec<String> {
        CHIPS.iter().map(|c| c.to_string()).collect()
    }

    /// Three series over the seven chips; "TP 8 · PP 1" is infeasible on the H20 (index 2).
    fn chip_series() -> Vec<Series> {
        ["TP 2 · PP 4", "TP 4 · PP 2", "TP 8 · PP 1"]
            .iter()
            .enumerate()
            .map(|(s, name)| {
                let pts = (0..7)
                    .map(|i| {
                        let y = 3.0 + (i as f64 * 0.9 + s as f64 * 1.7).sin() + s as f64 * 0.4;
                        (i as f64, (!(s == 2 && i == 2)).then_some(y))
                    })
                    .collect();
                (name.to_string(), pts)
            })
            .collect()
    }

    /// Two series over a doubling bandwidth sweep, 50..1600 GB/s.
    fn bandwidth_series() -> Vec<Series> {
        ["TP 8", "TP 4 · EP 16"]
            .iter()
            .enumerate()
            .map(|(s, name)| {
                let pts = (0..6)
                    .map(|i| {
                        let bw = 50.0 * f64::from(1u32 << i);
                        (bw, Some(2.0 + 40.0 / bw * (1.0 + s as f64)))
                    })
                    .collect();
                (name.to_string(), pts)
            })
            .collect()
    }

    fn polylines_stroked(els: &[El], c: RGBColor) -> usize {
        let h = hex(c);
        els.iter()
            .filter(|e| e.name == "polyline" && e.attr("stroke") == Some(h.as_str()))
            .count()
    }

    fn circles_filled(els: &[El], c: RGBColor) -> usize {
        let h = hex(c);
        els.iter()
            .filter(|e| e.name == "circle" && e.attr("fill") == Some(h.as_str()))
            .count()
    }

    /// Each × is two red `<line>`s.
    fn crosses(els: &[El]) -> usize {
        let h = hex(REFERENCE);
        let n = els
            .iter()
            .filter(|e| e.name == "line" && e.attr("stroke") == Some(h.as_str()))
            .count();
        assert_eq!(n % 2, 0);
        n / 2
    }

    /// Tick labels under the x axis (top-anchored, centred, 11 px), left to right.
    fn x_tick_labels(els: &[El]) -> Vec<(f64, &str)> {
        let mut v: Vec<(f64, &str)> = els
            .iter()
            .filter(|e| e.name == "text" && e.attr("dy") == Some("0.76em"))
            .filter(|e| e.attr("text-anchor") == Some("middle") && e.num("font-size") == 11.0)
            .map(|e| (e.num("x"), e.text.as_str()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }

    /// y tick labels (right-anchored, centred vertically), bottom to top.
    fn y_tick_labels(els: &[El]) -> Vec<&str> {
        let mut v: Vec<(f64, &str)> = els
            .iter()
            .filter(|e| e.name == "text" && e.attr("text-anchor") == Some("end"))
            .map(|e| (e.num("y"), e.text.as_str()))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        v.into_iter().map(|x| x.1).collect()
    }

    // ---- scatter ----

    /// Shaded regions: one translucent rectangle per box, an infinite bound reaching the
    /// plot's edge and the axes reaching every finite edge (so a box below the data still
    /// shows), each region once in the legend with a swatch; no text overlaps.
    #[test]
    fn scatter_regions_structure() {
        let inf = f64::INFINITY;
        let layers = [Layer {
            name: "A100, A800".into(),
            style: Mark::Highlight,
            points: vec![(4992.0, 6.0)],
        }];
        let regions = [
            Region {
                name: "controlled".into(),
                boxes: vec![[4800.0, inf, -inf, inf], [1600.0, 4800.0, 5.92, inf]],
            },
            Region {
                name: "notified".into(),
                boxes: vec![[2400.0, 4800.0, 1.6, 5.92], [-inf, -1.0, -inf, -1.0]],
            },
        ];
        let svg = scatter_regions(
            "Chips",
            "TPP",
            "density (TPP per mm²)",
            &layers,
            (None, None),
            &regions,
        );
        let els = parse(&svg);
        let t = texts(&els);
        for s in [
            "Chips",
            "TPP",
            "density (TPP per mm²)",
            "A100, A800",
            "controlled",
            "notified",
        ] {
            assert_eq!(t.iter().filter(|x| **x == s).count(), 1, "{s}");
        }
        // Four boxes and two legend swatches, all translucent.
        let translucent = els
            .iter()
            .filter(|e| e.name == "rect" && e.attr("opacity").is_some_and(|o| o != "1"))
            .count();
        assert_eq!(translucent, 4 + 2, "{svg}");
        // The box below the data pulls the y axis under zero.
        assert!(t.iter().any(|x| x.starts_with('-')), "{t:?}");
        assert_no_text_overlap(&svg);
    }

    /// A cloud drawn one dot per pixel, a front as one line with its markers, a ringed pick,
    /// dashed limits, and every layer and limit in the legend once; axis labels with units.
    #[test]
    fn scatter_structure() {
        let cloud: Vec<(f64, f64)> = (0..200)
            .map(|i| (10.0 + f64::from(i % 20), 1.0 + f64::from(i / 20) * 0.5))
            .chain([(10.0, 1.0), (10.0, 1.0), (f64::NAN, 2.0)])
            .collect();
        let layers = [
            Layer {
                name: "priced".into(),
                style: Mark::Cloud,
                points: cloud,
            },
            Layer {
                name: "front".into(),
                style: Mark::Line,
                points: vec![(30.0, 1.0), (10.0, 5.5), (20.0, 2.0)],
            },
            Layer {
                name: "chosen".into(),
                style: Mark::Highlight,
                points: vec![(20.0, 2.0)],
            },
        ];
        let svg = scatter(
            "Days against dollars",
            "wall-clock (days)",
            "cost (million USD)",
            &layers,
            Some((25.0, "deadline")),
            Some((4.0, "budget")),
        );
        let els = parse(&svg);
        let t = texts(&els);
        for s in [
            "Days against dollars",
            "wall-clock (days)",
            "cost (million USD)",
            "priced",
            "front",
            "chosen",
            "deadline",
            "budget",
        ] {
            assert_eq!(t.iter().filter(|x| **x == s).count(), 1, "{s}");
        }
        // 200 distinct cloud points (the NaN and the duplicates dropped), plus the legend's.
        let grey = RGBColor(0xAA, 0xAA, 0xAA);
        assert_eq!(circles_filled(&els, grey), 201);
        // The front: one polyline through its three points sorted by x, three markers + legend.
        let front_c = distinct_color("front", &[grey]);
        assert_eq!(polylines_stroked(&els, front_c), 1);
        assert_eq!(circles_filled(&els, front_c), 4);
        // Dashed limits: several short red segments each, and a legend line each.
        let red = hex(REFERENCE);
        let dashes = els
            .iter()
            .filter(|e| e.name == "polyline" && e.attr("stroke") == Some(red.as_str()))
            .count();
        assert!(dashes > 10, "{dashes}");
        // x ticks inside the picture, increasing.
        let xs = x_tick_labels(&els);
        assert!(xs.len() >= 3);
        assert!(xs.iter().all(|(x, _)| *x > 0.0 && *x < f64::from(WIDTH)));
        // Nothing drawable: the "no data" SVG.
        let empty = scatter("t", "x", "y", &[], None, None);
        assert!(empty.contains("no data"), "{empty}");
    }

    // ---- colours ----

    #[test]
    fn colors_are_fixed_distinct_and_deterministic() {
        let known = [
            "forward",
            "backward",
            "weight_grad",
            "bubble",
            "optimizer",
            "ep",
            "tp",
            "cp",
            "pp",
            "dp",
            "compute",
            "weights",
            "grads",
            "optimizer_state",
            "activations",
            "free",
            "cost",
        ];
        let hexes: Vec<String> = known.iter().map(|k| hex(color(k))).collect();
        for (i, h) in hexes.iter().enumerate() {
            assert!(!hexes[i + 1..].contains(h), "{} shares {h}", known[i]);
            assert!(
                !FALLBACK.iter().any(|c| hex(*c) == *h),
                "{} is a fallback colour",
                known[i]
            );
        }
        assert_eq!(hex(color("forward")), "#4C78A8");
        let a = color("some new kind");
        assert_eq!(hex(a), hex(color("some new kind")));
        assert!(FALLBACK.contains(&a));
        // The fallback spreads over the palette.
        let mut seen: Vec<String> = (0..100).map(|i| hex(color(&format!("kind{i}")))).collect();
        seen.sort();
        seen.dedup();
        assert!(seen.len() >= 8, "{seen:?}");
    }

    #[test]
    fn same_kind_gets_the_same_fill_in_different_plots() {
        let sb = stacked_bars(
            "time",
            "seconds per step (s)",
            &[(
                "a".into(),
                vec![("dp".into(), 1.0), ("forward".into(), 2.0)],
            )],
            None,
        );
        let tl = timeline(
            "timeline",
            &[Lane {
                name: "gpu 0".into(),
                spans: vec![(0.0, 1.0, "forward".into()), (1.0, 2.0, "dp".into())],
            }],
            2.0,
        );
        let b = bars("dp only", "bytes (GiB)", "dp", &[("x".into(), 3.0)]);
        for kind in ["dp", "forward"] {
            let h = hex(color(kind));
            for svg in [&sb, &tl] {
                // the segment or span, and the legend swatch
                assert_eq!(
                    rects_filled(&parse(svg), color(kind)).len(),
                    2,
                    "{kind} {h}"
                );
            }
        }
        assert_eq!(rects_filled(&parse(&b), color("dp")).len(), 1);
    }

    // ---- structure ----

    #[test]
    fn stacked_bars_structure() {
        let data = six_kind_bars();
        let svg = stacked_bars(
            "Step time by phase",
            "seconds per step (s)",
            &data,
            Some(("target 20 s", 20.0)),
        );
        let els = parse(&svg);
        assert_eq!(els[0].name, "svg");
        assert_eq!(els[0].attr("width"), Some("960"));
        assert!(svg.trim_end().ends_with("</svg>"));
        let t = texts(&els);
        assert!(t.contains(&"Step time by phase"));
        assert!(t.contains(&"seconds per step (s)"));
        assert!(t.contains(&"target 20 s"));
        for i in 0..5 {
            let label = format!("pipeline-parallel plan {i}");
            assert_eq!(t.iter().filter(|x| **x == label).count(), 1);
        }
        // One legend entry per kind, in first-seen order.
        let kinds = [
            "forward",
            "backward",
            "weight_grad",
            "bubble",
            "optimizer",
            "dp",
        ];
        let legend: Vec<&str> = t.iter().copied().filter(|x| kinds.contains(x)).collect();
        assert_eq!(legend, kinds);
        // background + 5 bars × 6 segments + 6 swatches
        assert_eq!(count(&els, "rect"), 1 + 30 + 6);
        for kind in kinds {
            assert_eq!(rects_filled(&els, color(kind)).len(), 5 + 1, "{kind}");
        }
        // Tick labels: numbers, at least three of them, increasing.
        let ticks: Vec<f64> = els
            .iter()
            .filter(|e| e.name == "text" && e.attr("dy") == Some("0.76em"))
            .filter_map(|e| e.text.parse().ok())
            .collect();
        assert!(ticks.len() >= 3, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
        // Reference line: one polyline in the reference colour.
        let red = hex(REFERENCE);
        let refs = els
            .iter()
            .filter(|e| e.name == "polyline" && e.attr("stroke") == Some(red.as_str()))
            .count();
        assert_eq!(refs, 1);
        insta::assert_snapshot!("stacked_bars", summary(&svg));
    }

    #[test]
    fn bars_structure() {
        let data: Vec<(String, f64)> = vec![
            ("data parallel".into(), 12.5),
            ("tensor parallel".into(), 3.25),
            ("pipeline".into(), 0.0),
            ("expert parallel".into(), 7.0),
        ];
        let svg = bars("Exposed communication", "time per step (ms)", "cost", &data);
        let els = parse(&svg);
        let t = texts(&els);
        assert!(t.contains(&"Exposed communication"));
        assert!(t.contains(&"time per step (ms)"));
        for (label, _) in &data {
            assert!(t.contains(&label.as_str()));
        }
        // Values at the bar ends; the zero bar has no rectangle but still its label and "0".
        for v in ["12.5", "3.25", "0", "7.00"] {
            assert!(t.contains(&v), "{v} in {t:?}");
        }
        assert_eq!(rects_filled(&els, color("cost")).len(), 3);
        assert_eq!(count(&els, "rect"), 1 + 3, "background + bars, no legend");
        insta::assert_snapshot!("bars", summary(&svg));
    }

    #[test]
    fn timeline_structure() {
        let lanes = vec![
            Lane {
                name: "stage 0".into(),
                spans: vec![
                    (0.0, 1.0, "forward".into()),
                    (1.0, 2.0, "forward".into()), // touches: merged
                    (2.5, 3.0, "backward".into()),
                    (3.0, 3.5, "tp".into()), // touches, other kind: kept apart
                ],
            },
            Lane {
                name: "stage 1".into(),
                spans: vec![(0.5, 1.5, "forward".into()), (4.0, 9.0, "pp".into())],
            },
            Lane {
                name: "stage 2 (idle)".into(),
                spans: vec![],
            },
        ];
        let svg = timeline("Pipeline schedule", &lanes, 10.0);
        let els = parse(&svg);
        let t = texts(&els);
        for s in [
            "Pipeline schedule",
            "time (s)",
            "stage 0",
            "stage 1",
            "stage 2 (idle)",
        ] {
            assert!(t.contains(&s), "{s}");
        }
        let kinds = ["forward", "backward", "tp", "pp"];
        let legend: Vec<&str> = t.iter().copied().filter(|x| kinds.contains(x)).collect();
        assert_eq!(legend, kinds);
        // spans after merging + one swatch each
        assert_eq!(rects_filled(&els, color("forward")).len(), 2 + 1);
        assert_eq!(rects_filled(&els, color("backward")).len(), 1 + 1);
        assert_eq!(rects_filled(&els, color("tp")).len(), 1 + 1);
        assert_eq!(rects_filled(&els, color("pp")).len(), 1 + 1);
        // background + one stripe (row 1 of 3) + 5 spans + 4 swatches
        assert_eq!(count(&els, "rect"), 1 + 1 + 5 + 4);
        // Minimum plot height 300 px: three rows of 100 px.
        let rows = rects_filled(&els, STRIPE);
        assert_eq!(rows[0].num("height"), 100.0);
        insta::assert_snapshot!("timeline", summary(&svg));
    }

    #[test]
    fn lines_structure() {
        let ticks = chip_ticks();
        let data = chip_series();
        let svg = lines(
            "Step time by chip",
            "chip",
            "step time (s)",
            &data,
            Some(&ticks),
            false,
        );
        let els = parse(&svg);
        assert_eq!(els[0].attr("width"), Some("960"));
        assert!(svg.trim_end().ends_with("</svg>"));
        let t = texts(&els);
        for s in ["Step time by chip", "chip", "step time (s)"] {
            assert_eq!(t.iter().filter(|x| **x == s).count(), 1, "{s}");
        }
        let xs: Vec<&str> = x_tick_labels(&els).into_iter().map(|x| x.1).collect();
        assert_eq!(xs, CHIPS);
        // Legend: the series in order, then "infeasible".
        let legend: Vec<&str> = t
            .iter()
            .copied()
            .filter(|x| x.starts_with("TP ") || *x == "infeasible")
            .collect();
        assert_eq!(
            legend,
            ["TP 2 · PP 4", "TP 4 · PP 2", "TP 8 · PP 1", "infeasible"]
        );
        // y ticks: numbers from 0, increasing upwards.
        let ys: Vec<f64> = y_tick_labels(&els)
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(ys.len() >= 3 && ys[0] == 0.0, "{ys:?}");
        assert!(ys.windows(2).all(|w| w[0] < w[1]), "{ys:?}");
        // A marker per feasible point plus the legend's; one line per series, the third broken.
        let feasible = [7, 7, 6];
        for ((name, _), n) in data.iter().zip(feasible) {
            assert_eq!(circles_filled(&els, color(name)), n + 1, "{name}");
        }
        assert_eq!(polylines_stroked(&els, color("TP 2 · PP 4")), 1);
        assert_eq!(polylines_stroked(&els, color("TP 8 · PP 1")), 2);
        assert_eq!(
            crosses(&els),
            1 + 1,
            "the infeasible point and its legend entry"
        );
        insta::assert_snapshot!("lines", summary(&svg));
    }

    #[test]
    fn no_text_overlaps_in_lines_with_chip_categories() {
        let ticks = chip_ticks();
        let svg = lines(
            "Step time by chip and parallelism",
            "chip",
            "step time (s)",
            &chip_series(),
            Some(&ticks),
            false,
        );
        assert_no_text_overlap(&svg);
        assert_eq!(x_tick_labels(&parse(&svg)).len(), 7);
    }

    #[test]
    fn no_text_overlaps_in_lines_with_log_x() {
        let svg = lines(
            "Step time against scale-up bandwidth",
            "scale-up bandwidth (GB/s)",
            "step time (s)",
            &bandwidth_series(),
            None,
            true,
        );
        assert_no_text_overlap(&svg);
        let els = parse(&svg);
        // Ticks at the data's values, equally spaced on the log axis.
        let xs = x_tick_labels(&els);
        let labels: Vec<&str> = xs.iter().map(|x| x.1).collect();
        assert_eq!(labels, ["50", "100", "200", "400", "800", "1600"]);
        let gaps: Vec<f64> = xs.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().all(|g| (g - gaps[0]).abs() <= 1.0), "{gaps:?}");
        let t = texts(&els);
        assert!(t.contains(&"TP 8") && t.contains(&"TP 4 · EP 16"));
        assert!(!t.contains(&"infeasible"));
        assert_eq!(crosses(&els), 0);

        // Wide sweeps: powers of ten; linear x; many long series names (the legend wraps).
        let wide: Vec<Series> = (0..14)
            .map(|s| {
                let pts = (0..30)
                    .map(|i| (1.7f64.powi(i), Some(1e-3 * (s + i) as f64)))
                    .collect();
                (format!("a rather long series name number {s}"), pts)
            })
            .collect();
        for log in [true, false] {
            let svg = lines("wide", "x (B)", "time (s)", &wide, None, log);
            assert_no_text_overlap(&svg);
        }
    }

    #[test]
    fn infeasible_markers_are_drawn_and_counted() {
        let data: Vec<Series> = vec![
            (
                "a".into(),
                vec![(1.0, Some(2.0)), (2.0, None), (3.0, None), (4.0, Some(1.0))],
            ),
            // Infeasible at the same x as one of a's: stacked, still one marker each.
            ("b".into(), vec![(2.0, None), (3.0, Some(5.0))]),
        ];
        let svg = lines("markers", "x (s)", "y (s)", &data, None, false);
        let els = parse(&svg);
        assert_eq!(crosses(&els), 3 + 1);
        assert_eq!(
            texts(&els).iter().filter(|t| **t == "infeasible").count(),
            1
        );
        let red = hex(REFERENCE);
        let mut centres: Vec<(i64, i64)> = els
            .iter()
            .filter(|e| e.name == "line" && e.attr("stroke") == Some(red.as_str()))
            .map(|e| {
                let c = |a: &str, b: &str| (e.num(a) + e.num(b)) as i64 / 2;
                (c("x1", "x2"), c("y1", "y2"))
            })
            .collect();
        centres.sort();
        centres.dedup();
        assert_eq!(centres.len(), 4, "no two markers on top of each other");

        // Only infeasible points: axes and markers, no "no data".
        let none: Vec<Series> = vec![("".into(), vec![(0.0, None), (1.0, None), (2.0, None)])];
        let ticks = chip_ticks()[..3].to_vec();
        let svg = lines(
            "all infeasible",
            "chip",
            "y (s)",
            &none,
            Some(&ticks),
            false,
        );
        let els = parse(&svg);
        let t = texts(&els);
        assert!(!t.contains(&"no data"));
        assert!(t.contains(&"infeasible") && t.contains(&"H20"));
        assert_eq!(crosses(&els), 3 + 1);
        assert_eq!(count(&els, "circle"), 0);
        assert_no_text_overlap(&svg);
    }

    #[test]
    fn a_line_is_broken_at_an_infeasible_point() {
        let one = |pts: Vec<(f64, Option<f64>)>| vec![(String::new(), pts)];
        // An unnamed line is drawn in the "compute" colour.
        let c = color("compute");
        let broken = one(vec![
            (1.0, Some(1.0)),
            (2.0, Some(2.0)),
            (3.0, None),
            (4.0, Some(4.0)),
            (5.0, Some(5.0)),
        ]);
        let els = parse(&lines("broken", "x (s)", "y (s)", &broken, None, false));
        assert_eq!(polylines_stroked(&els, c), 2);
        assert_eq!(circles_filled(&els, c), 4, "unnamed: no legend marker");
        assert_eq!(count(&els, "rect"), 1, "background only: no legend swatch");

        // Unsorted input is sorted by x first: the None still falls between 2 and 4.
        let shuffled = one(vec![
            (4.0, Some(4.0)),
            (1.0, Some(1.0)),
            (3.0, None),
            (5.0, Some(5.0)),
            (2.0, Some(2.0)),
        ]);
        let els = parse(&lines("shuffled", "x (s)", "y (s)", &shuffled, None, false));
        assert_eq!(polylines_stroked(&els, c), 2);

        // A NaN breaks the line without a marker; a lone point between breaks is a marker only.
        let nan = one(vec![
            (1.0, Some(1.0)),
            (2.0, Some(f64::NAN)),
            (3.0, Some(3.0)),
            (4.0, None),
            (5.0, Some(5.0)),
            (6.0, Some(6.0)),
        ]);
        let els = parse(&lines("nan", "x (s)", "y (s)", &nan, None, false));
        assert_eq!(polylines_stroked(&els, c), 1);
        assert_eq!(circles_filled(&els, c), 4);
        assert_eq!(crosses(&els), 1 + 1);

        // Without gaps: one line.
        let whole = one((0..5).map(|i| (i as f64, Some(i as f64))).collect());
        let els = parse(&lines("whole", "x (s)", "y (s)", &whole, None, false));
        assert_eq!(polylines_stroked(&els, c), 1);
    }

    #[test]
    fn lines_y_axis_starts_at_zero_unless_the_data_is_far_from_it() {
        let one = |ys: &[f64]| {
            let pts = ys
                .iter()
                .enumerate()
                .map(|(i, y)| (i as f64, Some(*y)))
                .collect();
            let svg = lines("y", "x (s)", "y (s)", &[("s".into(), pts)], None, false);
            let els = parse(&svg);
            y_tick_labels(&els)
                .iter()
                .map(|s| s.parse::<f64>().unwrap())
                .collect::<Vec<f64>>()
        };
        assert_eq!(one(&[2.0, 10.0])[0], 0.0);
        assert_eq!(one(&[5.0, 5.0])[0], 0.0, "a constant series from 0");
        let far = one(&[10.2, 12.5, 11.0]);
        assert!(far[0] >= 10.0, "{far:?}");
        let negative = one(&[-3.0, -1.0]);
        assert_eq!(*negative.last().unwrap(), 0.0, "{negative:?}");
    }

    #[test]
    fn lines_colours_follow_the_series_names() {
        // Two names that hash to the same fallback colour still get distinct colours.
        let first = "series 0".to_string();
        let twin = (1..1000)
            .map(|i| format!("series {i}"))
            .find(|n| color(n) == color(&first))
            .unwrap();
        let data: Vec<Series> = vec![
            ("forward".into(), vec![(1.0, Some(1.0)), (2.0, Some(2.0))]),
            (first.clone(), vec![(1.0, Some(2.0)), (2.0, Some(3.0))]),
            (twin.clone(), vec![(1.0, Some(3.0)), (2.0, Some(4.0))]),
        ];
        let els = parse(&lines("colours", "x (s)", "y (s)", &data, None, false));
        assert_eq!(polylines_stroked(&els, color("forward")), 1);
        assert_eq!(
            polylines_stroked(&els, color(&first)),
            1,
            "the first keeps its own"
        );
        let strokes: Vec<&str> = els
            .iter()
            .filter(|e| e.name == "polyline" && e.attr("stroke-width") == Some("2"))
            .map(|e| e.attr("stroke").unwrap())
            .collect();
        assert_eq!(strokes.len(), 3);
        assert!(strokes[0] != strokes[1] && strokes[1] != strokes[2] && strokes[0] != strokes[2]);
    }

    #[test]
    fn lines_survive_odd_inputs() {
        let inf = f64::INFINITY;
        let odd: Vec<Vec<(f64, Option<f64>)>> = vec![
            vec![(1.0, Some(1.0))],
            vec![(0.0, Some(0.0)), (0.0, Some(0.0))],
            vec![(1.0, Some(1.0)), (1.0 + 1e-15, Some(1.0 + 1e-15))],
            vec![(1e-300, Some(1e-300)), (1e300, Some(-1e300))],
            vec![
                (inf, Some(1.0)),
                (2.0, Some(inf)),
                (3.0, Some(-inf)),
                (4.0, None),
            ],
            vec![(-5.0, Some(-2.0)), (5.0, Some(3.0))],
            (0..200)
                .map(|i| (i as f64 * 0.37, Some((i % 7) as f64)))
                .collect(),
        ];
        let many: Vec<String> = (0..60).map(|i| format!("category {i}")).collect();
        for pts in &odd {
            let data = vec![("s".to_string(), pts.clone())];
            for (ticks, log) in [(None, false), (None, true), (Some(&many[..]), false)] {
                let svg = lines("odd", "x (s)", "y (s)", &data, ticks, log);
                let els = parse(&svg);
                assert_eq!(els[0].name, "svg");
                assert!(svg.trim_end().ends_with("</svg>"));
                if !texts(&els).contains(&"no data") {
                    assert_no_text_overlap(&svg);
                }
            }
        }
    }

    #[test]
    fn outputs_are_deterministic() {
        let data = six_kind_bars();
        let a = stacked_bars("t", "x (s)", &data, Some(("r", 3.0)));
        assert_eq!(a, stacked_bars("t", "x (s)", &data, Some(("r", 3.0))));
        let lanes = stage_lanes(8, 300, 5.0);
        assert_eq!(timeline("t", &lanes, 5.0), timeline("t", &lanes, 5.0));
        let (ticks, series) = (chip_ticks(), chip_series());
        let l = lines("t", "x", "y (s)", &series, Some(&ticks), false);
        assert_eq!(l, lines("t", "x", "y (s)", &series, Some(&ticks), false));
        let series = bandwidth_series();
        let l = lines("t", "x (GB/s)", "y (s)", &series, None, true);
        assert_eq!(l, lines("t", "x (GB/s)", "y (s)", &series, None, true));
    }

    // ---- edge cases ----

    #[test]
    fn empty_and_degenerate_inputs_say_no_data() {
        let nan = f64::NAN;
        let cases = [
            stacked_bars("empty", "x (s)", &[], None),
            stacked_bars(
                "zeros",
                "x (s)",
                &[("a".into(), vec![("dp".into(), 0.0), ("tp".into(), -3.0)])],
                Some(("ref", 5.0)),
            ),
            stacked_bars("no segments", "x (s)", &[("a".into(), vec![])], None),
            stacked_bars(
                "nan",
                "x (s)",
                &[("a".into(), vec![("dp".into(), nan)])],
                None,
            ),
            bars("empty", "x (s)", "cost", &[]),
            bars(
                "zeros",
                "x (s)",
                "cost",
                &[("a".into(), 0.0), ("b".into(), nan)],
            ),
            timeline("no lanes", &[], 10.0),
            timeline(
                "no spans",
                &[Lane {
                    name: "a".into(),
                    spans: vec![],
                }],
                10.0,
            ),
            timeline(
                "zero length",
                &[Lane {
                    name: "a".into(),
                    spans: vec![(1.0, 1.0, "dp".into()), (nan, -1.0, "dp".into())],
                }],
                nan,
            ),
            lines("no series", "x (s)", "y (s)", &[], None, false),
            lines(
                "no points",
                "x (s)",
                "y (s)",
                &[("a".into(), vec![]), ("".into(), vec![])],
                None,
                true,
            ),
            lines(
                "all nan",
                "x (s)",
                "y (s)",
                &[(
                    "a".into(),
                    vec![(1.0, Some(nan)), (nan, Some(1.0)), (nan, None)],
                )],
                None,
                false,
            ),
            lines(
                "log of nothing positive",
                "x (s)",
                "y (s)",
                &[("a".into(), vec![(0.0, Some(1.0)), (-2.0, None)])],
                None,
                true,
            ),
            lines(
                "outside the categories",
                "chip",
                "y (s)",
                &[("a".into(), vec![(7.0, Some(1.0)), (-1.0, None)])],
                Some(&chip_ticks()),
                false,
            ),
        ];
        for svg in &cases {
            let els = parse(svg);
            assert_eq!(els[0].name, "svg");
            assert!(svg.trim_end().ends_with("</svg>"));
            let t = texts(&els);
            assert!(t.contains(&"no data"), "{svg}");
            assert_eq!(t.len(), 2, "title and 'no data' only: {t:?}");
        }
    }

    #[test]
    fn nan_and_negative_values_count_as_zero() {
        let svg = stacked_bars(
            "mixed",
            "memory (GiB)",
            &[
                (
                    "rank 0".into(),
                    vec![
                        ("weights".into(), 10.0),
                        ("grads".into(), f64::NAN),
                        ("activations".into(), -5.0),
                        ("free".into(), f64::INFINITY),
                    ],
                ),
                ("rank 1".into(), vec![("weights".into(), 12.0)]),
            ],
            Some(("HBM capacity 80 GiB", f64::NAN)),
        );
        let els = parse(&svg);
        let t = texts(&els);
        assert!(!t.contains(&"grads") && !t.contains(&"activations") && !t.contains(&"free"));
        assert_eq!(rects_filled(&els, color("weights")).len(), 2 + 1);
        assert!(t.contains(&"10.0") && t.contains(&"12.0"), "{t:?}");

        // A timeline with NaN end and a span running past it.
        let tl = timeline(
            "nan end",
            &[Lane {
                name: "gpu".into(),
                spans: vec![
                    (f64::NAN, 2.0, "compute".into()),
                    (3.0, f64::NAN, "dp".into()),
                ],
            }],
            f64::NAN,
        );
        let els = parse(&tl);
        assert_eq!(rects_filled(&els, color("compute")).len(), 1 + 1);
        assert_eq!(rects_filled(&els, color("dp")).len(), 0);
    }

    #[test]
    fn long_labels_are_cut_to_the_label_area() {
        let long = "a very long label that goes on and on ".repeat(6);
        let svg = bars(
            "long",
            "x (s)",
            "cost",
            &[(long.clone(), 1.0), ("b".into(), 2.0)],
        );
        let els = parse(&svg);
        let cut = texts(&els)
            .into_iter()
            .find(|t| t.starts_with("a very long"))
            .unwrap()
            .to_string();
        assert!(cut.ends_with('…') && cut.chars().count() < long.chars().count());
        assert_no_text_overlap(&svg);
    }

    #[test]
    fn extreme_magnitudes_stay_readable() {
        assert_eq!(fmt_tick(0.0, TickFormat::Fixed(2)), "0");
        assert_eq!(fmt_tick(0.25, tick_format(0.05, 0.3)), "0.25");
        assert_eq!(fmt_tick(40.0, tick_format(10.0, 55.0)), "40");
        assert_eq!(fmt_tick(1.5e9, tick_format(5e8, 2.2e9)), "1.5e9");
        assert_eq!(fmt_value(1234.5), "1234");
        assert_eq!(fmt_value(0.01234), "0.0123");
        assert_eq!(fmt_value(3.0e12), "3.00e12");
        for scale in [1e-9, 1e-3, 1e6, 1e12, 1e300] {
            let data: Vec<(String, f64)> = (1..5)
                .map(|i| (format!("bar {i}"), i as f64 * 1.37 * scale))
                .collect();
            let svg = bars("magnitudes", "flops (FLOP)", "compute", &data);
            assert_no_text_overlap(&svg);
            let els = parse(&svg);
            let ticks = els
                .iter()
                .filter(|e| e.name == "text" && e.attr("dy") == Some("0.76em"))
                .filter(|e| e.text.parse::<f64>().is_ok())
                .count();
            assert!(ticks >= 3, "scale {scale}: {ticks} ticks");
        }
    }

    // ---- overlap ----

    #[test]
    fn no_text_overlaps_in_stacked_bars_with_reference() {
        let svg = stacked_bars(
            "Step time by phase, 6 kinds",
            "seconds per step (s)",
            &six_kind_bars(),
            Some(("HBM capacity 80 GiB", 30.0)),
        );
        assert_no_text_overlap(&svg);
        // Reference at the far right and at zero: its label still fits.
        for r in [0.0, 1e3] {
            let svg = stacked_bars("t", "x (s)", &six_kind_bars(), Some(("limit", r)));
            assert_no_text_overlap(&svg);
        }
        // Many kinds: the legend wraps without overlapping.
        let many: Vec<(String, Vec<(String, f64)>)> = vec![(
            "all".into(),
            (0..24)
                .map(|i| (format!("kind number {i}"), 1.0 + i as f64))
                .collect(),
        )];
        let svg = stacked_bars("many kinds", "cost ($)", &many, None);
        assert_no_text_overlap(&svg);
        assert_eq!(
            texts(&parse(&svg))
                .iter()
                .filter(|t| t.starts_with("kind number"))
                .count(),
            24
        );
    }

    #[test]
    fn no_text_overlaps_in_timeline_with_80_lanes() {
        let lanes = stage_lanes(80, 50, 12.3);
        let svg = timeline("80 stages", &lanes, 12.3);
        assert_no_text_overlap(&svg);
        let els = parse(&svg);
        assert!(texts(&els).contains(&"stage 79 · compute"));
        // Values of other magnitudes.
        for end in [0.0031, 1.0, 7.7e4] {
            let svg = timeline("scale", &stage_lanes(3, 10, end), end);
            assert_no_text_overlap(&svg);
        }
    }

    // ---- coalescing ----

    #[test]
    fn timeline_coalescing_keeps_100k_spans_small() {
        let lanes = stage_lanes(80, 1250, 10.0);
        let svg = timeline("100,000 spans", &lanes, 10.0);
        assert!(svg.len() < 3_000_000, "{} bytes", svg.len());
        let rects = count(&parse(&svg), "rect");
        assert!(rects < 80 * 1250 / 4, "{rects} rectangles");

        // Adversarial: three kinds interleaved below pixel scale, never touching per kind.
        let kinds = ["forward", "backward", "dp"];
        let lanes: Vec<Lane> = (0..80)
            .map(|l| Lane {
                name: format!("gpu {l}"),
                spans: (0..1250)
                    .map(|i| {
                        let t = i as f64 * 0.08;
                        (t, t + 0.06, kinds[i % 3].to_string())
                    })
                    .collect(),
            })
            .collect();
        let svg = timeline("interleaved", &lanes, 100.0);
        assert!(svg.len() < 3_000_000, "{} bytes", svg.len());
    }

    #[test]
    fn coalescing_never_merges_different_kinds() {
        let map = |v: f64| 100 + (v * 80.0).floor() as i32; // 10 s over 800 px
                                                            // Same kind, touching or closer than a pixel: one rectangle.
        let same = lane_rects(
            &[(0.0, 1.0, 0), (1.0, 2.0, 0), (2.005, 3.0, 0)],
            1,
            10.0,
            &map,
        );
        assert_eq!(same, vec![(100, 340, 0)]);
        // A gap of more than a pixel: two.
        let gap = lane_rects(&[(0.0, 1.0, 0), (1.1, 2.0, 0)], 1, 10.0, &map);
        assert_eq!(gap.len(), 2);
        // Different kinds, touching: two, in their own colours.
        let two = lane_rects(&[(0.0, 1.0, 0), (1.0, 2.0, 1)], 2, 10.0, &map);
        assert_eq!(two, vec![(100, 180, 0), (180, 260, 1)]);
        // Sub-pixel spans still get one pixel.
        let tiny = lane_rects(&[(5.0, 5.0001, 1)], 2, 10.0, &map);
        assert_eq!(tiny, vec![(500, 501, 1)]);
        // Sub-pixel interleaving of two kinds: each kind merges into one band (within budget).
        let fine: Vec<(f64, f64, usize)> = (0..3000)
            .map(|i| (i as f64 / 300.0, i as f64 / 300.0 + 0.002, i % 2))
            .collect();
        assert_eq!(
            lane_rects(&fine, 2, 10.0, &map),
            vec![(100, 899, 0), (100, 899, 1)]
        );
        // Interleaving too sparse to merge per kind (same-kind gaps of 1.3 px) and too dense to
        // draw: columns get their dominant kind, never merging kinds, within the budget.
        let dense: Vec<(f64, f64, usize)> = (0..1000)
            .map(|i| (i as f64 * 0.01, i as f64 * 0.01 + 0.004, i % 2))
            .collect();
        let r = lane_rects(&dense, 2, 10.0, &map);
        assert!(r.len() <= 800 / 3, "{}", r.len());
        assert!(r.iter().any(|x| x.2 == 0) && r.iter().any(|x| x.2 == 1));
        for w in r.windows(2) {
            assert!(w[0].1 <= w[1].0, "ordered and disjoint: {w:?}");
            if w[0].1 == w[1].0 {
                assert_ne!(
                    w[0].2, w[1].2,
                    "adjacent columns of one kind are one rectangle"
                );
            }
        }

        // End to end: two touching spans of different kinds are two rectangles.
        let svg = timeline(
            "two kinds",
            &[Lane {
                name: "gpu".into(),
                spans: vec![(0.0, 1.0, "forward".into()), (1.0, 2.0, "backward".into())],
            }],
            2.0,
        );
        let els = parse(&svg);
        assert_eq!(rects_filled(&els, color("forward")).len(), 1 + 1);
        assert_eq!(rects_filled(&els, color("backward")).len(), 1 + 1);
    }

    #[test]
    fn font_sizes_are_written_plainly() {
        let svg = stacked_bars("t", "x (s)", &six_kind_bars(), Some(("r", 2.0)));
        for e in parse(&svg).iter().filter(|e| e.name == "text") {
            let fs = e.attr("font-size").unwrap();
            assert!(fs.len() <= 4, "font-size {fs}");
        }
    }

    #[test]
    #[ignore = "writes sample SVGs to target/plots for a visual check"]
    fn write_samples() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plots");
        std::fs::create_dir_all(&dir).unwrap();
        let samples = [
            (
                "stacked.svg",
                stacked_bars(
                    "Step time by phase",
                    "seconds per step (s)",
                    &six_kind_bars(),
                    Some(("HBM capacity 80 GiB", 30.0)),
                ),
            ),
            (
                "bars.svg",
                bars(
                    "Cost by phase",
                    "cost ($)",
                    "cost",
                    &[("train".into(), 1234.5), ("eval".into(), 99.0)],
                ),
            ),
            (
                "timeline.svg",
                timeline("Timeline", &stage_lanes(80, 1250, 10.0), 10.0),
            ),
            (
                "timeline_small.svg",
                timeline("Timeline", &stage_lanes(4, 40, 2.0), 2.0),
            ),
            ("empty.svg", bars("Nothing", "x (s)", "cost", &[])),
            (
                "lines_chips.svg",
                lines(
                    "Step time by chip and parallelism",
                    "chip",
                    "step time (s)",
                    &chip_series(),
                    Some(&chip_ticks()),
                    false,
                ),
            ),
            (
                "lines_bandwidth.svg",
                lines(
                    "Step time against scale-up bandwidth",
                    "scale-up bandwidth (GB/s)",
                    "step time (s)",
                    &bandwidth_series(),
                    None,
                    true,
                ),
            ),
            (
                "lines_wide.svg",
                lines(
                    "Many series on a linear axis",
                    "global batch (sequences)",
                    "MFU (%)",
                    &(0..9)
                        .map(|s| {
                            let pts = (1..=12)
                                .map(|i| {
                                    let y = 30.0 + (i * (s + 2)) as f64 % 17.0;
                                    (256.0 * i as f64, (i != s + 2).then_some(y))
                                })
                                .collect();
                            (format!("TP {} · PP {}", 1 << (s % 4), 1 << (s / 4)), pts)
                        })
                        .collect::<Vec<_>>(),
                    None,
                    false,
                ),
            ),
        ];
        for (name, svg) in samples {
            println!("{name}: {} bytes", svg.len());
            std::fs::write(dir.join(name), svg).unwrap();
        }
    }
}
