//! Calibration plots with plotters, as PNG and SVG, with a bundled font (DejaVu Sans) so labels
//! render the same on every machine.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

/// One line of a chart: a label and its points.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (e.g. an upper bound next to its estimate).
    pub dashed: bool,
    /// Points drawn as filled markers (e.g. certified candidates).
    pub markers: Vec<(f64, f64)>,
    /// Index of the colour in the palette (lines of one chain share it).
    pub colour: usize,
}

/// A line chart: title, axis labels, series, optional horizontal reference line.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub series: Vec<Series>,
    pub reference: Option<(f64, String)>,
    pub legend: LegendPlace,
}

/// Where a chart's legend goes (where its lines are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegendPlace {
    UpperLeft,
    UpperRight,
    MiddleRight,
}

/// A histogram: counts per integer-labelled bin.
#[derive(Debug, Clone)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bins: Vec<(String, f64)>,
}

const SIZE: (u32, u32) = (900, 560);
static FONT: Once = Once::new();

/// Register the bundled DejaVu Sans as "sans-serif" (once; the bytes are valid by construction).
fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        );
    });
}

fn palette(index: usize) -> RGBColor {
    const COLOURS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLOURS[index % COLOURS.len()]
}

fn draw_lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &LineChart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            chart.x_range.0..chart.x_range.1,
            chart.y_range.0..chart.y_range.1,
        )
        .map_err(|e| anyhow!("{e:?}"))?;
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    if let Some((y, label)) = &chart.reference {
        let (x0, x1) = chart.x_range;
        ctx.draw_series(LineSeries::new(
            vec![(x0, *y), (x1, *y)],
            BLACK.stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e:?}"))?
        .label(label.clone())
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    for series in &chart.series {
        let colour = palette(series.colour);
        let style = colour.stroke_width(if series.dashed { 1 } else { 2 });
        if series.dashed {
            // Dashes: every other short segment.
            let segments: Vec<Vec<(f64, f64)>> = series
                .points
                .windows(2)
                .step_by(1)
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, w)| w.to_vec())
                .collect();
            for segment in segments {
                ctx.draw_series(LineSeries::new(segment, style))
                    .map_err(|e| anyhow!("{e:?}"))?;
            }
            ctx.draw_series(
                series
                    .points
                    .iter()
                    .map(|&p| Circle::new(p, 2, colour.stroke_width(1))),
            )
            .map_err(|e| anyhow!("{e:?}"))?
            .label(series.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], colour.stroke_width(1))
            });
        } else {
            ctx.draw_series(LineSeries::new(series.points.clone(), style))
                .map_err(|e| anyhow!("{e:?}"))?
                .label(series.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        ctx.draw_series(
            series
                .markers
                .iter()
                .map(|&p| Circle::new(p, 5, colour.filled())),
        )
        .map_err(|e| anyhow!("{e:?}"))?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(match chart.legend {
            LegendPlace::UpperLeft => SeriesLabelPosition::UpperLeft,
            LegendPlace::UpperRight => SeriesLabelPosition::UpperRight,
            LegendPlace::MiddleRight => SeriesLabelPosition::MiddleRight,
        })
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn draw_histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Histogram,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let max = chart.bins.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0);
    let n = chart.bins.len();
    // Bin i (0-based) is centred on x = i + 1, so the axis' integer ticks fall on the bars.
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5..n as f64 + 0.5, 0.0..max * 1.1)
        .map_err(|e| anyhow!("{e:?}"))?;
    let labels: Vec<String> = chart.bins.iter().map(|b| b.0.clone()).collect();
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 1.0 {
                labels.get(i as usize - 1).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .disable_x_mesh()
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    ctx.draw_series(chart.bins.iter().enumerate().map(|(i, (_, count))| {
        Rectangle::new(
            [(i as f64 + 0.6, 0.0), (i as f64 + 1.4, *count)],
            palette(0).filled(),
        )
    }))
    .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// Render with `draw` to PNG bytes and SVG text.
fn render(
    draw: &dyn Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    draw_svg: &dyn Fn(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<(Vec<u8>, String)> {
    register_font();
    let temp = std::env::temp_dir().join(format!(
        "calm-plot-{}-{:?}.png",
        std::process::id(),
        std::thread::current().id()
    ));
    {
        let root = BitMapBackend::new(&temp, SIZE).into_drawing_area();
        draw(&root)?;
    }
    let png = std::fs::read(&temp)?;
    let _ = std::fs::remove_file(&temp);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw_svg(&root)?;
    }
    Ok((png, svg))
}

/// PNG bytes and SVG text of a line chart.
pub fn line_chart(chart: &LineChart) -> Result<(Vec<u8>, String)> {
    render(&|root| draw_lines(root, chart), &|root| {
        draw_lines(root, chart)
    })
}

/// PNG bytes and SVG text of a histogram.
pub fn histogram(chart: &Histogram) -> Result<(Vec<u8>, String)> {
    render(&|root| draw_histogram(root, chart), &|root| {
        draw_histogram(root, chart)
    })
}

/// Sentences whose tokens are shaded by exit layer: one line of pieces per example.
#[derive(Debug, Clone)]
pub struct ShadedSentences {
    pub title: String,
    /// Per sentence: (piece, exit layer) in order.
    pub sentences: Vec<Vec<(String, u32)>>,
    pub num_layers: u32,
}

/// Green (layer 1) through yellow to red (the last layer).
fn layer_colour(layer: u32, depth: u32) -> RGBColor {
    let t = if depth <= 1 {
        1.0
    } else {
        (layer.saturating_sub(1)) as f64 / (depth - 1) as f64
    };
    let (r, g) = if t < 0.5 {
        (2.0 * t, 1.0)
    } else {
        (1.0, 2.0 * (1.0 - t))
    };
    RGBColor((90.0 + 165.0 * r) as u8, (90.0 + 150.0 * g) as u8, 90)
}

fn draw_shaded<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &ShadedSentences,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let title = ("sans-serif", 22).into_font();
    root.draw(&Text::new(chart.title.clone(), (16, 12), title))
        .map_err(|e| anyhow!("{e:?}"))?;
    let font = ("sans-serif", 17).into_font();
    // Legend: one swatch per layer.
    let mut x = 16;
    for layer in 1..=chart.num_layers {
        let colour = layer_colour(layer, chart.num_layers);
        root.draw(&Rectangle::new([(x, 48), (x + 34, 70)], colour.filled()))
            .map_err(|e| anyhow!("{e:?}"))?;
        root.draw(&Text::new(format!("{layer}"), (x + 12, 50), font.clone()))
            .map_err(|e| anyhow!("{e:?}"))?;
        x += 38;
    }
    root.draw(&Text::new(
        "exit layer".to_string(),
        (x + 8, 50),
        font.clone(),
    ))
    .map_err(|e| anyhow!("{e:?}"))?;
    let (width, _) = root.dim_in_pixel();
    let mut y = 92;
    for sentence in &chart.sentences {
        let mut x = 16i32;
        for (piece, layer) in sentence {
            let (w, _) = root
                .estimate_text_size(piece, &TextStyle::from(font.clone()))
                .map_err(|e| anyhow!("{e:?}"))?;
            let w = w as i32 + 2;
            if x + w > width as i32 - 16 {
                x = 16;
                y += 28;
            }
            root.draw(&Rectangle::new(
                [(x, y), (x + w, y + 24)],
                layer_colour(*layer, chart.num_layers).filled(),
            ))
            .map_err(|e| anyhow!("{e:?}"))?;
            root.draw(&Text::new(piece.clone(), (x + 1, y + 2), font.clone()))
                .map_err(|e| anyhow!("{e:?}"))?;
            x += w;
        }
        y += 40;
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// PNG bytes and SVG text of shaded example sentences.
pub fn shaded_sentences(chart: &ShadedSentences) -> Result<(Vec<u8>, String)> {
    render(&|root| draw_shaded(root, chart), &|root| {
        draw_shaded(root, chart)
    })
}
