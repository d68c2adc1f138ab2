//! A soak run's store: `<root>/<UTC time>-<seed>/` with the settings, the
//! schedule, the history (one JSON op a line), the faults as they
//! happened, each checker's verdict, the summary line, node and worker
//! logs, and two PNG plots (throughput and latency over time, the fault
//! windows shaded), drawn with plotters' bitmap backend.

use crate::nemesis::FaultWindow;
use crate::soak::{OpRecord, Outcome};
use plotters::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Errors writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value could not be encoded.
    #[error("encoding {0}: {1}")]
    Json(String, serde_json::Error),
    /// A plot could not be drawn.
    #[error("plot {0}: {1}")]
    Plot(String, String),
}

/// One run's directory.
pub struct Store {
    dir: PathBuf,
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (civil date from days, Howard Hinnant's method).
fn utc_stamp(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

impl Store {
    /// Makes `<root>/<time>-<seed>/`.
    pub fn create(root: &Path, seed: u64) -> Result<Store, StoreError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let dir = root.join(format!("{}-{seed}", utc_stamp(now)));
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        Ok(Store { dir })
    }

    /// The run's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` with `text`.
    pub fn write_text(&self, name: &str, text: &str) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|source| StoreError::Io { path, source })
    }

    /// Writes `name` as pretty JSON.
    pub fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| StoreError::Json(name.into(), e))?;
        self.write_text(name, &text)
    }

    /// Writes `name` with one JSON value a line.
    pub fn write_lines<T: Serialize>(&self, name: &str, values: &[T]) -> Result<(), StoreError> {
        let mut text = String::new();
        for value in values {
            text.push_str(&serde_json::to_string(value).map_err(|e| StoreError::Json(name.into(), e))?);
            text.push('\n');
        }
        self.write_text(name, &text)
    }

    /// Draws `throughput.png` and `latency.png`.
    pub fn plots(&self, ops: &[OpRecord], faults: &[FaultWindow], length: f64) -> Result<(), StoreError> {
        let font = font_loaded();
        let end = faults.iter().map(|f| f.end).fold(length, f64::max).max(1.0);
        let path = self.dir.join("throughput.png");
        throughput(&path, ops, faults, end, font).map_err(|e| StoreError::Plot("throughput.png".into(), e))?;
        let path = self.dir.join("latency.png");
        latency(&path, ops, faults, end, font).map_err(|e| StoreError::Plot("latency.png".into(), e))
    }
}

/// Registers a system TrueType font for the plots' text once; `false`
/// when none was found (the plots are then drawn without text).
fn font_loaded() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        const CANDIDATES: [&str; 4] = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        ];
        for path in CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// The colour of a workload's series.
fn colour(workload: &str) -> RGBColor {
    match workload {
        "registers" => RGBColor(31, 119, 180),
        "set" => RGBColor(44, 160, 44),
        "effects" => RGBColor(214, 39, 40),
        _ => RGBColor(148, 103, 189),
    }
}

/// The shade of a nemesis's fault windows.
fn shade(nemesis: &str) -> RGBColor {
    match nemesis {
        "partition" => RGBColor(255, 127, 14),
        "kill" => RGBColor(200, 0, 0),
        "pause" => RGBColor(140, 86, 75),
        "netem" => RGBColor(23, 190, 207),
        "membership" => RGBColor(188, 189, 34),
        "worker" => RGBColor(227, 119, 194),
        _ => RGBColor(127, 127, 127),
    }
}

const WORKLOADS: [&str; 4] = ["registers", "set", "effects", "traps"];
const SIZE: (u32, u32) = (900, 330);

type Result2 = Result<(), String>;

/// Draws the fault windows as translucent bands over `0..y_max`, one row
/// band per nemesis kind so overlapping faults stay visible.
fn bands<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    faults: &[FaultWindow],
    y: (f64, f64),
    font: bool,
) -> Result2
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let kinds = ["partition", "kill", "pause", "netem", "membership", "worker", "heal"];
    let mut labelled: Vec<&str> = Vec::new();
    for window in faults.iter().filter(|w| !w.skipped || w.nemesis == "heal") {
        let row = kinds.iter().position(|k| *k == window.nemesis).unwrap_or(kinds.len() - 1);
        let style = shade(&window.nemesis).mix(0.18).filled();
        let end = if window.end > window.start { window.end } else { window.start + 0.2 };
        // Full height, lightly; plus a strong strip at the bottom per kind.
        chart
            .draw_series(std::iter::once(Rectangle::new([(window.start, y.0), (end, y.1)], style)))
            .map_err(|e| e.to_string())?;
        let strip_height = (y.1 - y.0) * 0.03;
        let (low, high) = if y.0 > 0.0 {
            // Log axis: strips by ratio.
            let ratio = (y.1 / y.0).powf(0.03);
            (y.0 * ratio.powi(row as i32), y.0 * ratio.powi(row as i32 + 1))
        } else {
            (y.0 + strip_height * row as f64, y.0 + strip_height * (row as f64 + 1.0))
        };
        let strong = shade(&window.nemesis).mix(0.9).filled();
        chart
            .draw_series(std::iter::once(Rectangle::new([(window.start, low), (end, high)], strong)))
            .map_err(|e| e.to_string())?;
        if font && !labelled.contains(&window.nemesis.as_str()) {
            labelled.push(window.nemesis.as_str());
            let text = Text::new(window.nemesis.clone(), (window.start, high), ("sans-serif", 11).into_font());
            chart.draw_series(std::iter::once(text)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn legend_note(faults: &[FaultWindow]) -> String {
    let mut kinds: Vec<&str> = faults.iter().filter(|w| !w.skipped).map(|w| w.nemesis.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    kinds.join(" ")
}

fn throughput(path: &Path, ops: &[OpRecord], faults: &[FaultWindow], end: f64, font: bool) -> Result2 {
    let seconds = end.ceil() as usize + 1;
    let mut series: Vec<(&str, Vec<f64>)> = Vec::new();
    for workload in WORKLOADS {
        let mut counts = vec![0.0; seconds];
        for op in ops.iter().filter(|o| o.workload == workload && o.outcome == Outcome::Ok) {
            if let Some(at) = op.complete {
                let bucket = (at / 1_000_000_000) as usize;
                if let Some(count) = counts.get_mut(bucket) {
                    *count += 1.0;
                }
            }
        }
        if counts.iter().any(|c| *c > 0.0) {
            series.push((workload, counts));
        }
    }
    let y_max = series.iter().flat_map(|(_, c)| c.iter().copied()).fold(1.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(8);
    if font {
        builder
            .caption(format!("acknowledged ops/s by workload; faults: {}", legend_note(faults)), ("sans-serif", 16))
            .x_label_area_size(28)
            .y_label_area_size(44);
    }
    let mut chart = builder.build_cartesian_2d(0.0..end, 0.0..y_max).map_err(|e| e.to_string())?;
    if font {
        chart.configure_mesh().x_desc("seconds").light_line_style(WHITE).draw().map_err(|e| e.to_string())?;
    }
    bands(&mut chart, faults, (0.0, y_max), font)?;
    for (workload, counts) in &series {
        let points = counts.iter().enumerate().map(|(s, c)| (s as f64 + 0.5, *c));
        let drawn =
            chart.draw_series(LineSeries::new(points, colour(workload).stroke_width(2))).map_err(|e| e.to_string())?;
        if font {
            let c = colour(workload);
            drawn.label(*workload).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        }
    }
    if font {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn latency(path: &Path, ops: &[OpRecord], faults: &[FaultWindow], end: f64, font: bool) -> Result2 {
    // At most this many points, evenly thinned, so long runs stay small.
    const MAX_POINTS: usize = 12_000;
    let answered: Vec<&OpRecord> = ops.iter().filter(|o| o.outcome != Outcome::Fail).collect();
    let step = (answered.len() / MAX_POINTS).max(1);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(8);
    if font {
        builder
            .caption("latency (ms, log) at invocation; grey: unknown outcome (timed out)", ("sans-serif", 16))
            .x_label_area_size(28)
            .y_label_area_size(52);
    }
    let (low, high) = (0.1, 10_000.0);
    let mut chart = builder.build_cartesian_2d(0.0..end, (low..high).log_scale()).map_err(|e| e.to_string())?;
    if font {
        chart.configure_mesh().x_desc("seconds").light_line_style(WHITE).draw().map_err(|e| e.to_string())?;
    }
    bands(&mut chart, faults, (low, high), font)?;
    for workload in WORKLOADS {
        let points: Vec<(f64, f64)> = answered
            .iter()
            .step_by(step)
            .filter(|o| o.workload == workload)
            .map(|o| {
                let at = o.invoke as f64 / 1e9;
                let ms = match o.complete {
                    Some(done) => (done.saturating_sub(o.invoke)) as f64 / 1e6,
                    None => 3_000.0,
                };
                (at, ms.clamp(low, high))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let c = colour(workload);
        let ok = points.iter().copied();
        let drawn = chart.draw_series(ok.map(|p| Circle::new(p, 1, c.mix(0.5).filled()))).map_err(|e| e.to_string())?;
        if font {
            drawn.label(workload).legend(move |(x, y)| Circle::new((x + 8, y), 3, c.filled()));
        }
    }
    let unknown = answered.iter().step_by(step).filter(|o| o.outcome == Outcome::Info);
    let unknown = unknown.map(|o| Circle::new((o.invoke as f64 / 1e9, 3_000.0), 2, RGBColor(90, 90, 90).filled()));
    chart.draw_series(unknown).map_err(|e| e.to_string())?;
    if font {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_796_000_000), "20261130T005320Z");
    }

    #[test]
    fn plots_are_written_as_png() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::create(root.path(), 7).expect("store");
        let ops: Vec<OpRecord> = (0..200u64)
            .map(|i| {
                OpRecord::new(
                    if i % 2 == 0 { "registers" } else { "set" },
                    "write",
                    "k0".into(),
                    i as i64,
                    i * 50_000_000,
                    (i % 7 != 0).then_some(i * 50_000_000 + 3_000_000),
                    if i % 7 == 0 { Outcome::Info } else { Outcome::Ok },
                )
            })
            .collect();
        let faults = vec![FaultWindow {
            nemesis: "kill".into(),
            label: "kill -9 node 1".into(),
            start: 2.0,
            end: 4.0,
            skipped: false,
        }];
        store.plots(&ops, &faults, 10.0).expect("plots");
        for name in ["throughput.png", "latency.png"] {
            let bytes = std::fs::read(store.dir().join(name)).expect("png");
            assert!(bytes.starts_with(b"\x89PNG"), "{name} is a PNG");
        }
        assert!(store.dir().file_name().is_some_and(|n| n.to_string_lossy().ends_with("-7")));
    }
}
