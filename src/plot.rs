//! PNG line charts with plotters (pure-Rust bitmap backend, DejaVu Sans from the `dejavu`
//! crate, so no system fonts or -dev packages are needed).

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// One named curve of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws `series` into a 900×560 PNG at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
) -> Result<()> {
    register_font();
    // A diverged run logs values near ±f64::MAX: an axis over them has an infinite span
    // and plotters' tick search never ends, so such points (beyond ±1e15) are left out.
    let plottable = |p: &&(f64, f64)| p.0.abs() <= 1e15 && p.1.abs() <= 1e15;
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(plottable);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    render(path, |tmp| {
        let root = BitMapBackend::new(tmp, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(xlabel)
            .y_desc(ylabel)
            .label_style(("sans-serif", 14))
            .draw()?;
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (i, s) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().filter(plottable).copied(),
                    c.stroke_width(2),
                ))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
        Ok(())
    })
}

/// The points `(x_key, y_key)` of every line of a metrics.jsonl that has both.
fn series(text: &str, x_key: &str, y_key: &str, name: &str) -> Series {
    let points = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v[x_key].as_f64()?, v[y_key].as_f64()?)))
        .collect();
    Series {
        name: name.into(),
        points,
    }
}

/// The x axis of a run's curves: the units the task counts (`tokens`, `sentences`), which
/// every logged line carries.
fn x_key(text: &str) -> String {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            v.as_object()?
                .keys()
                .find(|k| k.ends_with("s_per_s"))
                .map(|k| k.trim_end_matches("_per_s").to_string())
        })
        .unwrap_or_else(|| "tokens".into())
}

/// loss.png from a metrics.jsonl: training loss per logging step and validation loss,
/// both against the training units seen.
pub fn loss_curves(metrics: &Path, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).map_err(|e| Error::io(metrics, e))?;
    let x = x_key(&text);
    line_chart(
        png,
        "Loss (nats per predicted unit)",
        &format!("training {x}"),
        "loss",
        &[
            series(&text, &x, "loss", "train loss"),
            series(&text, &x, "valid_loss", "validation loss"),
        ],
    )
}

/// `{metric}.png`: one validation metric (for example `valid_f1`) against training units.
pub fn metric_curve(metrics: &Path, key: &str, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).map_err(|e| Error::io(metrics, e))?;
    let x = x_key(&text);
    line_chart(
        png,
        key,
        &format!("training {x}"),
        key,
        &[series(&text, &x, key, key)],
    )
}

/// A confusion-matrix heatmap: `m[gold][pred]` counts, rows normalised to shades, each
/// cell labelled with its count. `labels` name the rows and columns.
pub fn heatmap(path: &Path, title: &str, labels: &[String], m: &[Vec<usize>]) -> Result<()> {
    register_font();
    let c = labels.len().max(1);
    let size = (160 + 70 * c as u32).clamp(360, 1400);
    render(path, |tmp| {
        let root = BitMapBackend::new(tmp, (size + 60, size)).into_drawing_area();
        root.fill(&WHITE)?;
        use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d((0..c - 1).into_segmented(), (0..c - 1).into_segmented())?;
        // `0..c − 1` segmented is c cells. Rows run top to bottom in label order: row g
        // sits at y = c − 1 − g.
        let name = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let i = if flip { c.saturating_sub(1 + i) } else { *i };
                labels.get(i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("gold")
            .x_labels(c)
            .y_labels(c)
            .x_label_formatter(&|v| name(v, false))
            .y_label_formatter(&|v| name(v, true))
            .label_style(("sans-serif", 14))
            .draw()?;
        for (g, row) in m.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &n) in row.iter().enumerate() {
                let shade = n as f64 / total;
                let y = c - 1 - g;
                let colour = RGBColor(
                    (255.0 * (1.0 - 0.8 * shade)) as u8,
                    (255.0 * (1.0 - 0.55 * shade)) as u8,
                    255,
                );
                chart.draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    n.to_string(),
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                    ("sans-serif", 18).into_text_style(&root).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                )))?;
            }
        }
        root.present()?;
        Ok(())
    })
}

/// An attention map: target tokens down, source tokens across, each cell shaded by its
/// weight (`weights[t][s]`, each row summing to one over the real source tokens).
pub fn attention_map(
    path: &Path,
    src: &[String],
    tgt: &[String],
    weights: &[Vec<f32>],
) -> Result<()> {
    register_font();
    let (ns, nt) = (src.len().max(1), tgt.len().max(1));
    let (w, h) = (
        (140 + 36 * ns as u32).clamp(300, 2400),
        (90 + 28 * nt as u32).clamp(200, 2400),
    );
    render(path, |tmp| {
        let root = BitMapBackend::new(tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let cell_w = (w as i32 - 120) / ns as i32;
        let cell_h = (h as i32 - 80) / nt as i32;
        let style = ("sans-serif", 13).into_font().color(&BLACK);
        for (t, row) in weights.iter().enumerate().take(nt) {
            for (s, &a) in row.iter().enumerate().take(ns) {
                let shade = (255.0 * (1.0 - a.clamp(0.0, 1.0))) as u8;
                let (x, y) = (110 + s as i32 * cell_w, 70 + t as i32 * cell_h);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell_w, y + cell_h)],
                    RGBColor(shade, shade, shade).filled(),
                ))?;
            }
            if let Some(label) = tgt.get(t) {
                root.draw(&Text::new(
                    label.clone(),
                    (4, 72 + t as i32 * cell_h),
                    style.clone(),
                ))?;
            }
        }
        for (s, label) in src.iter().enumerate() {
            let st = style.clone().transform(FontTransform::Rotate270);
            root.draw(&Text::new(label.clone(), (112 + s as i32 * cell_w, 66), st))?;
        }
        root.present()?;
        Ok(())
    })
}

/// Draws a PNG with `draw` into a temporary file (plotters writes PNGs to paths only), then
/// puts it at `path` through [`crate::error::write_atomic`], so a link is written through
/// and a device (`--out /dev/null`) is written, not replaced by a file — a rename over
/// `/dev/null` used to do that. The temporary file is removed whether drawing worked or not.
fn render(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("rnnkit-plot-{}-{n}.png", std::process::id()));
    let bytes = draw(&tmp)
        .map_err(|e| Error::format(path, format!("could not draw chart: {e}")))
        .and_then(|()| std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e)));
    let _ = std::fs::remove_file(&tmp);
    crate::error::write_atomic(path, &bytes?)
}
