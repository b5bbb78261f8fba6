//! The benchmark's figure, an SVG drawn from the JSON report: events/s of every throughput
//! run (bar: median, dots: each repeat) and the latency run's ack latency at p50, p99 and
//! max (one line per repeat). It reads the JSON, not the in-memory report, so `fdc-bench
//! plot` redraws it from a saved report without running anything; a run is a throughput run
//! when its repeats carry `events_per_s`, so new runs appear without a change here.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

/// The figure cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the report has no throughput run and no latency run to draw")]
    Empty,
    #[error("drawing the figure: {0}")]
    Draw(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a benchmark report: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// One throughput run: its name, the median and every repeat, events/s.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    pub run: String,
    pub median: f64,
    pub repeats: Vec<f64>,
}

/// Ack latency quantiles drawn, and their labels.
pub const QUANTILES: [(&str, &str); 3] = [
    ("p50", "ack_p50_ms"),
    ("p99", "ack_p99_ms"),
    ("max", "ack_max_ms"),
];

/// What the figure shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub throughput: Vec<Throughput>,
    /// Per latency repeat, ms at each of [`QUANTILES`].
    pub latency: Vec<[f64; 3]>,
    /// Offered rate of the latency run, events/s.
    pub offered_per_s: Option<f64>,
}

/// Throughput runs drawn first, in this order (the storage limit, then what is compared with
/// it); other runs follow by name.
const FIRST: [&str; 4] = ["limit", "drain", "replicas", "auth"];

/// The figure of a report (the JSON `fdc-bench` writes).
pub fn figure_of(report: &Value) -> Result<Figure, PlotError> {
    let mut throughput = Vec::new();
    for (run, summary) in report.as_object().into_iter().flatten() {
        let repeats: Vec<f64> = summary["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["events_per_s"].as_f64())
            .collect();
        if let (false, Some(median)) = (
            repeats.is_empty(),
            summary["median"]["events_per_s"].as_f64(),
        ) {
            throughput.push(Throughput {
                run: run.clone(),
                median,
                repeats,
            });
        }
    }
    throughput.sort_by_key(|t| {
        let rank = FIRST
            .iter()
            .position(|r| *r == t.run)
            .unwrap_or(FIRST.len());
        (rank, t.run.clone())
    });
    let latency: Vec<[f64; 3]> = report["latency"]["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let q = |key: &str| r[key].as_f64();
            Some([q(QUANTILES[0].1)?, q(QUANTILES[1].1)?, q(QUANTILES[2].1)?])
        })
        .collect();
    if throughput.is_empty() && latency.is_empty() {
        return Err(PlotError::Empty);
    }
    Ok(Figure {
        throughput,
        latency,
        offered_per_s: report["latency"]["median"]["offered_per_s"].as_f64(),
    })
}

/// The figure as SVG text.
pub fn draw(figure: &Figure) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (left, right) = root.split_horizontally(560);
        draw_throughput(&left, &figure.throughput)?;
        draw_latency(&right, figure)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_throughput(area: &Area<'_>, runs: &[Throughput]) -> Result<(), PlotError> {
    let top = runs
        .iter()
        .flat_map(|r| r.repeats.iter().copied().chain([r.median]))
        .fold(0.0_f64, f64::max)
        * 1.15;
    let n = runs.len().max(1) as u32;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput per run (events/s)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top.max(1.0))
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(runs.len().max(1))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => runs
                .get(*i as usize)
                .map(|r| r.run.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(runs.iter().enumerate().map(|(i, r)| {
            let i = i as u32;
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), r.median),
                ],
                BLUE.mix(0.45).filled(),
            );
            bar.set_margin(0, 0, 14, 14);
            bar
        }))
        .map_err(draw_error)?;
    chart
        .draw_series(runs.iter().enumerate().flat_map(|(i, r)| {
            r.repeats.iter().map(move |v| {
                Circle::new((SegmentValue::CenterOf(i as u32), *v), 3, BLACK.filled())
            })
        }))
        .map_err(draw_error)?;
    Ok(())
}

fn draw_latency(area: &Area<'_>, figure: &Figure) -> Result<(), PlotError> {
    let top = figure
        .latency
        .iter()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max)
        * 1.15;
    let caption = match figure.offered_per_s {
        Some(rate) => format!("Ack latency (ms) at {rate:.0} events/s"),
        None => "Ack latency (ms)".to_string(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0..QUANTILES.len() - 1, 0.0..top.max(1.0))
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_labels(QUANTILES.len())
        .x_label_formatter(&|i| {
            QUANTILES
                .get(*i)
                .map(|q| q.0.to_string())
                .unwrap_or_default()
        })
        .draw()
        .map_err(draw_error)?;
    for (n, run) in figure.latency.iter().enumerate() {
        let color = Palette99::pick(n).to_rgba();
        chart
            .draw_series(LineSeries::new(
                run.iter().copied().enumerate(),
                color.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label(format!("repeat {}", n + 1))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(
                run.iter()
                    .copied()
                    .enumerate()
                    .map(move |p| Circle::new(p, 3, color.filled())),
            )
            .map_err(draw_error)?;
    }
    if !figure.latency.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

/// Where the figure of the report at `json` goes: beside it, `.svg` for `.json`.
pub fn svg_path(json: &Path) -> PathBuf {
    json.with_extension("svg")
}

/// Draws the figure of `report` into `out`.
pub fn write(report: &Value, out: &Path) -> Result<(), PlotError> {
    let svg = draw(&figure_of(report)?)?;
    std::fs::write(out, svg).map_err(|source| PlotError::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// Draws the figure of the saved report `from` into `out`.
pub fn write_from(from: &Path, out: &Path) -> Result<(), PlotError> {
    let text = std::fs::read_to_string(from).map_err(|source| PlotError::Io {
        path: from.to_path_buf(),
        source,
    })?;
    let report: Value = serde_json::from_str(&text).map_err(|source| PlotError::Json {
        path: from.to_path_buf(),
        source,
    })?;
    write(&report, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The text of every `<text>` element of `svg`, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = t.split_once('>')?.1;
                Some(body.split_once("</text>")?.0.trim().to_string())
            })
            .collect()
    }

    fn report() -> Value {
        json!({
            "machine": {"cores": 2},
            "limit": {"median": {"events_per_s": 50_000.0}, "runs": [
                {"events_per_s": 49_000.0}, {"events_per_s": 50_000.0}, {"events_per_s": 51_000.0}]},
            "drain": {"median": {"events_per_s": 52_000.0}, "runs": [{"events_per_s": 52_000.0}]},
            "latency": {"median": {"offered_per_s": 5000.0, "ack_p50_ms": 6.0}, "runs": [
                {"ack_p50_ms": 6.0, "ack_p99_ms": 10.0, "ack_max_ms": 16.0},
                {"ack_p50_ms": 7.0, "ack_p99_ms": 12.0, "ack_max_ms": 30.0}]},
            "targets": [], "notes": []
        })
    }

    #[test]
    fn the_figure_has_every_throughput_run_and_each_latency_repeat() {
        let f = figure_of(&report()).unwrap();
        assert_eq!(
            f.throughput,
            [
                Throughput {
                    run: "limit".into(),
                    median: 50_000.0,
                    repeats: vec![49_000.0, 50_000.0, 51_000.0]
                },
                Throughput {
                    run: "drain".into(),
                    median: 52_000.0,
                    repeats: vec![52_000.0]
                },
            ]
        );
        assert_eq!(f.latency, [[6.0, 10.0, 16.0], [7.0, 12.0, 30.0]]);
        assert_eq!(f.offered_per_s, Some(5000.0));
        assert!(matches!(
            figure_of(&json!({"machine": {}, "notes": []})),
            Err(PlotError::Empty)
        ));
    }

    #[test]
    fn the_svg_names_the_runs_and_draws_a_bar_and_dots_per_run() {
        let svg = draw(&figure_of(&report()).unwrap()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        let texts = texts(&svg);
        for text in [
            "Throughput per run (events/s)",
            "Ack latency (ms) at 5000 events/s",
            "limit",
            "drain",
            "p50",
            "p99",
            "max",
            "repeat 2",
        ] {
            assert!(texts.iter().any(|t| t == text), "no {text} in {texts:?}");
        }
        // Two bars, four repeat dots plus six latency points.
        assert_eq!(svg.matches("<circle").count(), 4 + 6);
    }

    #[test]
    fn the_committed_report_draws() {
        let committed: Value =
            serde_json::from_str(include_str!("../../../../docs/benchmark-results.json")).unwrap();
        let f = figure_of(&committed).unwrap();
        let runs: Vec<&str> = f.throughput.iter().map(|t| t.run.as_str()).collect();
        assert_eq!(runs, ["limit", "drain", "replicas", "auth"]);
        assert_eq!(f.latency.len(), 3);
        assert!(texts(&draw(&f).unwrap()).iter().any(|t| t == "replicas"));
        assert_eq!(
            svg_path(Path::new("out/bench.json")),
            Path::new("out/bench.svg")
        );
    }
}
