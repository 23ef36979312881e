//! `rnnkit plot`: curves from the metrics.jsonl of several runs in one PNG.

use anyhow::bail;
use clap::Args;
use rnnkit::plot::{line_chart, Series};
use std::path::PathBuf;

#[derive(Args)]
pub struct PlotArgs {
    /// Run folders (each with a metrics.jsonl); the folder name labels its curve.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Metric on the y axis: valid_loss, valid_ppl or loss (training).
    #[arg(long, default_value = "valid_loss")]
    pub metric: String,
    /// x axis: tokens or wall_s.
    #[arg(long, default_value = "tokens")]
    pub x: String,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: PlotArgs) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for dir in &a.runs {
        let path = dir.join("metrics.jsonl");
        let text = rnnkit::text::read::read_text(&path)?;
        let mut points = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| rnnkit::error::Error::input(&path, i + 1, format!("not JSON: {e}")))?;
            if let (Some(x), Some(y)) = (v[&a.x].as_f64(), v[&a.metric].as_f64()) {
                if v.get("epoch_end").is_none() {
                    points.push((x, y));
                }
            }
        }
        if points.is_empty() {
            bail!(
                "{}: no lines with both {} and {}",
                path.display(),
                a.x,
                a.metric
            );
        }
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        series.push(Series { name, points });
    }
    let title = a.title.clone().unwrap_or_else(|| a.metric.clone());
    line_chart(&a.out, &title, &a.x, &a.metric, &series)?;
    println!("{}", a.out.display());
    Ok(())
}
