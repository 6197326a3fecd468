//! The calibration report: plots (PNG and SVG) and `report.md` with a plain-language verdict,
//! built from the loss table and the calibration result.

pub mod plots;

use crate::calibrate::bounds::upper_confidence_bound;
use crate::calibrate::thresholds::ThresholdsFile;
use crate::calibrate::{calibrate, CalibrationOptions, LossTable};
use crate::record::tokens::{LayerRow, TokenRow};
use anyhow::Result;
use plots::{Histogram, LegendPlace, LineChart, Series};
use std::fmt::Write as _;

/// Risk bounds on the frontier plot's x axis.
use crate::calibrate::frontier::{FrontierPoint, FRONTIER_DELTAS};

fn chain_label(measure: &str, tau: f64) -> String {
    format!("{measure} τ={tau}")
}

/// Per-token traces of a model sweep, for the plots that need them.
pub struct Traces<'a> {
    pub tokens: &'a [TokenRow],
    pub layers: &'a [LayerRow],
}

fn median(values: &mut Vec<f32>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2] as f64)
}

/// Per layer, the median confidence of tokens whose layer prediction agrees with the top layer
/// and of those whose prediction does not, for each measure the traces hold.
fn confidence_chart(layers: &[LayerRow], depth: u32) -> LineChart {
    type Pick = fn(&LayerRow) -> f32;
    let measures: [(&str, Pick); 4] = [
        ("softmax-diff", |r| r.softmax_diff),
        ("softmax-max", |r| r.softmax_max),
        ("state", |r| r.state),
        ("classifier", |r| r.classifier),
    ];
    let mut series = Vec::new();
    let mut low: f64 = 0.0;
    for (colour, (name, pick)) in measures.iter().enumerate() {
        for (consistent, label) in [(true, "consistent"), (false, "inconsistent")] {
            let mut points = Vec::new();
            for layer in 1..=depth {
                let mut values: Vec<f32> = layers
                    .iter()
                    .filter(|r| r.layer == layer && r.consistent == consistent)
                    .map(pick)
                    .collect();
                if let Some(m) = median(&mut values) {
                    low = low.min(m);
                    points.push((layer as f64, m));
                }
            }
            if !points.is_empty() {
                series.push(Series {
                    label: format!("{name}, {label}"),
                    points,
                    dashed: !consistent,
                    markers: Vec::new(),
                    colour,
                });
            }
        }
    }
    LineChart {
        title: "Median confidence per layer: tokens that agree with the top layer vs not".into(),
        x_label: "decoder layer".into(),
        y_label: "confidence (median)".into(),
        x_range: (0.8, depth as f64 + 0.2),
        y_range: (low.min(0.0) - 0.02, 1.02),
        series,
        reference: None,
        legend: LegendPlace::MiddleRight,
    }
}

/// Mean decoder layers per token of the oracle that exits at the first layer whose prediction
/// equals the top layer's (CALM §6), over the full model's recorded tokens; None without any.
fn oracle_mean_layers(layers: &[LayerRow]) -> Option<f64> {
    let mut first: std::collections::BTreeMap<(u32, u32), u32> = Default::default();
    for row in layers.iter().filter(|r| r.consistent) {
        let entry = first
            .entry((row.example, row.position))
            .or_insert(row.layer);
        *entry = (*entry).min(row.layer);
    }
    (!first.is_empty()).then(|| first.values().map(|&l| l as f64).sum::<f64>() / first.len() as f64)
}

/// Per layer i (1-based order), the share of the full model's recorded tokens whose layer-i
/// prediction equals the top layer's (the logit lens through the shared head).
fn layer_agreement(layers: &[LayerRow]) -> Vec<f64> {
    let depth = layers.iter().map(|r| r.layer).max().unwrap_or(0) as usize;
    let mut counts = vec![(0usize, 0usize); depth];
    for row in layers {
        let slot = &mut counts[row.layer as usize - 1];
        slot.1 += 1;
        slot.0 += usize::from(row.consistent);
    }
    counts
        .iter()
        .map(|&(agree, all)| agree as f64 / all.max(1) as f64)
        .collect()
}

/// Every report file: (name, bytes). `traces` (from a model sweep) adds the per-token plots;
/// `frontier` (the table recalibrated at each δ, with held-out measurements when a model run made
/// them) is computed here when not given.
pub fn build_report(
    output: &ThresholdsFile,
    table: &LossTable,
    options: &CalibrationOptions,
    traces: Option<Traces>,
    frontier: Option<Vec<FrontierPoint>>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let frontier_rows = match frontier {
        Some(rows) => rows,
        None => crate::calibrate::frontier::frontier(table, options, &FRONTIER_DELTAS)?,
    };
    let mut files = Vec::new();
    let mut add = |name: &str, (png, svg): (Vec<u8>, String)| {
        files.push((format!("{name}.png"), png));
        files.push((format!("{name}.svg"), svg.into_bytes()));
    };
    let chains = table.chains();
    let depth = table.num_layers as f64;
    let level = output.summary.level;
    // The per-test level the bound is drawn at, named as the procedure defines it.
    let level_name = match options.procedure {
        crate::calibrate::Procedure::FixedSequence => "ε/K",
        crate::calibrate::Procedure::Bonferroni => "ε/N",
        crate::calibrate::Procedure::Holm => "ε/N (Holm's first step)",
    };

    // Risk and its upper confidence bound vs λ, per chain, with δ.
    let mut risk_series = Vec::new();
    let mut layer_series = Vec::new();
    let mut y_max: f64 = options.delta * 1.5;
    for (colour, chain) in chains.iter().enumerate() {
        let head = &table.candidates[chain[0]];
        let label = chain_label(&head.measure, head.tau);
        let mut risk = Vec::new();
        let mut bound = Vec::new();
        let mut certified = Vec::new();
        let mut layers = Vec::new();
        for &j in chain {
            let candidate = &table.candidates[j];
            let result = &output.candidates[j];
            risk.push((candidate.lambda, result.risk));
            let ucb = upper_confidence_bound(&candidate.losses, options, level);
            bound.push((candidate.lambda, ucb));
            if result.certified {
                certified.push((candidate.lambda, result.risk));
            }
            layers.push((candidate.lambda, candidate.mean_layers));
            y_max = y_max.max(result.risk);
        }
        risk_series.push(Series {
            label: format!("{label}: risk"),
            points: risk,
            dashed: false,
            markers: certified,
            colour,
        });
        risk_series.push(Series {
            label: format!("{label}: upper bound at {level_name}"),
            points: bound,
            dashed: true,
            markers: Vec::new(),
            colour,
        });
        layer_series.push(Series {
            label,
            points: layers,
            dashed: false,
            markers: Vec::new(),
            colour,
        });
    }
    let y_max = (y_max * 1.15).min(1.0);
    add(
        "risk_vs_lambda",
        plots::line_chart(&LineChart {
            title: "Empirical risk and its upper bound vs λ (filled: certified)".into(),
            x_label: "λ".into(),
            y_label: "risk (mean consistency loss)".into(),
            x_range: (0.0, 1.0),
            y_range: (0.0, y_max.max(options.delta * 1.2)),
            series: risk_series,
            reference: Some((options.delta, format!("δ = {}", options.delta))),
            legend: LegendPlace::UpperRight,
        })?,
    );
    add(
        "layers_vs_lambda",
        plots::line_chart(&LineChart {
            title: "Mean decoder layers per token vs λ".into(),
            x_label: "λ".into(),
            y_label: "mean layers".into(),
            x_range: (0.0, 1.0),
            y_range: (0.0, depth + 0.5),
            series: layer_series,
            reference: Some((depth, format!("full model: {depth} layers"))),
            legend: LegendPlace::UpperLeft,
        })?,
    );

    // Quality-vs-speed frontier: the certified layer reduction at each δ, per measure.
    let mut measures: Vec<String> = table.candidates.iter().map(|c| c.measure.clone()).collect();
    measures.dedup();
    let mut frontier = Vec::new();
    let mut cost_frontier = Vec::new();
    let mut top_speedup: f64 = 1.0;
    let mut top_cost_speedup: f64 = 1.0;
    for (colour, measure) in measures.iter().enumerate() {
        let sub = table.only_measure(measure);
        let mut points = Vec::new();
        let mut cost_points = Vec::new();
        for delta in FRONTIER_DELTAS {
            let result = calibrate(&sub, &CalibrationOptions { delta, ..*options })?;
            let layers = result.selected().map_or(depth, |c| c.mean_layers);
            let speedup = depth / layers.max(1e-9);
            let cost_speedup = result.selected().map_or(1.0, |c| c.cost_speedup);
            top_speedup = top_speedup.max(speedup);
            top_cost_speedup = top_cost_speedup.max(cost_speedup);
            points.push((delta, speedup));
            cost_points.push((delta, cost_speedup));
        }
        frontier.push(Series {
            label: measure.clone(),
            points,
            dashed: false,
            markers: Vec::new(),
            colour,
        });
        cost_frontier.push(Series {
            // Calibrated on this measure's chains alone (fewer chains, a larger ε/K), so it can
            // sit above the all-measures selection.
            label: format!("{measure} alone (cost model)"),
            points: cost_points,
            dashed: false,
            markers: Vec::new(),
            colour,
        });
    }
    // The selection over all measures at each δ, and its measured batch-1 speed-up on held-out
    // data where a model run measured it.
    let measured: Vec<(f64, f64)> = frontier_rows
        .iter()
        .filter_map(|r| r.held_out.as_ref().map(|h| (r.delta, h.wall_clock_speedup)))
        .collect();
    for &(_, s) in &measured {
        top_cost_speedup = top_cost_speedup.max(s);
    }
    cost_frontier.push(Series {
        label: "selected, all measures (cost model)".into(),
        points: frontier_rows
            .iter()
            .map(|r| (r.delta, r.cost_speedup))
            .collect(),
        dashed: false,
        markers: measured.clone(),
        colour: measures.len() + 1,
    });
    if !measured.is_empty() {
        cost_frontier.push(Series {
            label: "selected: measured wall clock, batch 1, held out".into(),
            points: measured,
            dashed: false,
            markers: Vec::new(),
            colour: measures.len() + 2,
        });
    }
    add(
        "speedup_frontier",
        plots::line_chart(&LineChart {
            title: format!(
                "Certified speed-up vs risk bound δ (ε = {}, n = {})",
                options.epsilon, output.inputs.n
            ),
            x_label: "δ".into(),
            y_label: "speed-up over the full model".into(),
            x_range: (0.0, 0.52),
            y_range: (0.9, top_cost_speedup * 1.1 + 0.1),
            series: cost_frontier,
            reference: Some((1.0, "never exit (full model)".into())),
            legend: LegendPlace::UpperLeft,
        })?,
    );
    // The oracle: on the full model's own path (no exits, so no state propagation), the first
    // layer whose argmax equals the top layer's. A reference line, not a bound: a decoder that
    // exits changes the later states it attends to, so it is neither the full output exactly
    // nor the most a measure could save.
    let oracle = traces.as_ref().and_then(|t| oracle_mean_layers(t.layers));
    let agreement = traces
        .as_ref()
        .map_or_else(Vec::new, |t| layer_agreement(t.layers));
    if let Some(layers) = oracle {
        let speedup = depth / layers.max(1e-9);
        top_speedup = top_speedup.max(speedup);
        frontier.push(Series {
            label: format!("oracle ({layers:.2} layers)"),
            points: FRONTIER_DELTAS.iter().map(|&d| (d, speedup)).collect(),
            dashed: true,
            markers: Vec::new(),
            colour: measures.len(),
        });
    }
    add(
        "frontier",
        plots::line_chart(&LineChart {
            title: format!(
                "Certified layer reduction vs risk bound δ (ε = {})",
                options.epsilon
            ),
            x_label: "δ".into(),
            y_label: "full depth / mean layers".into(),
            x_range: (0.0, 0.52),
            y_range: (0.9, top_speedup * 1.1 + 0.1),
            series: frontier,
            reference: Some((1.0, "full model".into())),
            legend: LegendPlace::UpperLeft,
        })?,
    );

    // Per-example mean layers of the selected configuration.
    let selected_layers: Vec<f64> = match output.selected.never_exit {
        true => vec![depth; table.examples.len()],
        false => output
            .candidates
            .iter()
            .position(|c| {
                Some(&c.measure) == output.selected.measure.as_ref()
                    && Some(c.tau) == output.selected.tau
                    && Some(c.lambda) == output.selected.lambda
            })
            .map_or_else(Vec::new, |j| table.candidates[j].layers.clone()),
    };
    let mut bins = vec![0f64; table.num_layers as usize];
    for layers in &selected_layers {
        let bin = (layers.round().max(1.0) as usize).min(bins.len()) - 1;
        bins[bin] += 1.0;
    }
    add(
        "layers_histogram",
        plots::histogram(&Histogram {
            title: "Selected configuration: mean decoder layers per example".into(),
            x_label: "mean layers per token (rounded)".into(),
            y_label: "examples".into(),
            bins: bins
                .iter()
                .enumerate()
                .map(|(i, &c)| ((i + 1).to_string(), c))
                .collect(),
        })?,
    );
    if let Some(traces) = &traces {
        add(
            "confidence_by_layer",
            plots::line_chart(&confidence_chart(traces.layers, table.num_layers))?,
        );
        let configuration = match (
            &output.selected.measure,
            output.selected.tau,
            output.selected.lambda,
        ) {
            (Some(m), Some(t), Some(l)) if !output.selected.never_exit => {
                format!("{m} tau={t} lambda={l}")
            }
            _ => "full".to_string(),
        };
        let mut sentences: Vec<Vec<(String, u32)>> = Vec::new();
        for row in traces
            .tokens
            .iter()
            .filter(|r| r.configuration == configuration)
        {
            // Five outputs, their first 24 tokens each, fit the canvas.
            if row.position == 0 {
                if sentences.len() == 5 {
                    break;
                }
                sentences.push(Vec::new());
            }
            if let Some(sentence) = sentences.last_mut().filter(|s| s.len() < 24) {
                sentence.push((row.piece.clone(), row.exit_layer));
            }
        }
        add(
            "examples_by_exit_layer",
            plots::shaded_sentences(&plots::ShadedSentences {
                title: format!("{configuration}: each token shaded by its exit layer"),
                sentences,
                num_layers: table.num_layers,
            })?,
        );
    }
    files.push((
        "report.md".into(),
        markdown(
            output,
            table,
            options,
            traces.is_some(),
            oracle,
            &agreement,
            &frontier_rows,
        )
        .into_bytes(),
    ));
    files.push((
        "frontier.json".into(),
        (serde_json::to_string_pretty(&frontier_rows)? + "\n").into_bytes(),
    ));
    Ok(files)
}

/// The measured wall-clock speed-up of the selected configuration and where it was measured:
/// the held-out benchmark when there is one, else the sweep's timings on the calibration
/// examples, when calm ran the model.
fn measured_speedup(output: &ThresholdsFile) -> Option<(f64, String)> {
    let run = output.run.as_ref()?;
    if let Some(bench) = &run.benchmark {
        return Some((
            bench.run.wall_clock_speedup,
            format!(
                "on {} held-out examples ({})",
                bench.run.examples,
                bench.data.display()
            ),
        ));
    }
    let selected = &output.selected;
    let timing = run.sweep.configurations.iter().find(|t| {
        Some(t.measure.as_str()) == selected.measure.as_deref()
            && Some(t.tau) == selected.tau
            && Some(t.lambda) == selected.lambda
    })?;
    (timing.seconds > 0.0).then(|| {
        (
            run.sweep.full_seconds / timing.seconds,
            "on the calibration examples".to_string(),
        )
    })
}

/// Spearman's rank correlation between the cost model's cost per token and the sweep's
/// measured seconds per token over the configurations it timed (None with fewer than 3).
pub fn cost_rank_correlation(output: &ThresholdsFile) -> Option<f64> {
    let run = output.run.as_ref()?;
    let mut pairs = Vec::new();
    for timing in &run.sweep.configurations {
        let candidate = output.candidates.iter().find(|c| {
            c.measure == timing.measure && c.tau == timing.tau && c.lambda == timing.lambda
        })?;
        if timing.tokens > 0 {
            pairs.push((
                candidate.cost_per_token,
                timing.seconds / timing.tokens as f64,
            ));
        }
    }
    let (model, measured): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    spearman(&model, &measured)
}

/// Spearman's ρ with average ranks for ties (None for fewer than 3 pairs or a constant side).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    fn ranks(values: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut ranks = vec![0.0; values.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
                end += 1;
            }
            let rank = (start + end) as f64 / 2.0;
            for &i in &order[start..=end] {
                ranks[i] = rank;
            }
            start = end + 1;
        }
        ranks
    }
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() - 1) as f64 / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean).powi(2);
        vb += (y - mean).powi(2);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// The frontier table: what each δ buys, like the CALM paper's Table 2.
fn frontier_table(output: &ThresholdsFile, rows: &[FrontierPoint]) -> String {
    let early_stop = output.run.as_ref().is_some_and(|r| r.sweep.early_stop);
    let mut md = format!(
        "## Quality vs speed: the frontier\n\nThe same records recalibrated at each δ (same p-value, procedure, ε = {} and cost model); \
         `calm calibrate --records records.parquet --cost-model thresholds.json --delta D` (with the same `--procedure`) reproduces row D. {}Speed-ups over the full model: \
         layers (full depth / mean layers), the cost model's estimate, and the wall clock measured at batch 1 on held-out \
         data (one decoder per job, full model and configuration side by side), where the held-out risk is measured too.\n\n\
         | δ | selected | certified | risk (calibration) | mean layers | × layers | × cost model | × wall clock (held out) | risk (held out) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        output.inputs.epsilon,
        if early_stop {
            "The sweep stopped each chain at its first failure at the requested δ (fixed-sequence early stop), so at a larger δ \
             λs it never decoded cannot count: rows above the requested δ are lower bounds. "
        } else {
            "The sweep covered the whole grid, so every row is the calibration at its δ. "
        }
    );
    let depth = output.inputs.num_layers as f64;
    for row in rows {
        let (wall, held_risk) = match &row.held_out {
            Some(h) => (
                format!("{:.2}", h.wall_clock_speedup),
                format!("{:.4} (n = {})", h.risk, h.examples),
            ),
            None => ("".into(), "".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.4} | {:.2} | {:.2} | {:.2} | {wall} | {held_risk} |",
            row.delta,
            row.label(),
            row.certified,
            row.risk,
            row.mean_layers,
            depth / row.mean_layers.max(1e-9),
            row.cost_speedup
        );
    }
    let mut distinct: Vec<(String, f64, f64)> = Vec::new();
    for row in rows {
        if let (Some(h), true) = (&row.held_out, row.measure.is_some()) {
            if !distinct.iter().any(|(l, _, _)| *l == row.label()) {
                distinct.push((row.label(), row.cost_speedup, h.wall_clock_speedup));
            }
        }
    }
    let cost: Vec<f64> = distinct.iter().map(|d| d.1).collect();
    let wall: Vec<f64> = distinct.iter().map(|d| d.2).collect();
    if let Some(rho) = spearman(&cost, &wall) {
        let _ = writeln!(
            md,
            "\nOver the {} distinct configurations above, the cost model's speed-ups and the measured batch-1 ones rank alike with Spearman ρ = {rho:.2}.",
            distinct.len()
        );
    }
    md.push_str("\n![speed-up frontier](speedup_frontier.png)\n");
    md
}

/// `report.md`: verdict, inputs, per-chain summary, plots.
fn markdown(
    output: &ThresholdsFile,
    table: &LossTable,
    options: &CalibrationOptions,
    traced: bool,
    oracle: Option<f64>,
    agreement: &[f64],
    frontier: &[FrontierPoint],
) -> String {
    let mut md = String::from("# Calibration report\n\n");
    let selected = &output.selected;
    let loss_name = match &output.run {
        Some(run) => format!(
            "{} loss ({})",
            match run.consistency {
                crate::record::run::Consistency::Textual => "textual",
                crate::record::run::Consistency::Risk => "risk",
            },
            run.metric.name()
        ),
        None => "consistency loss (as recorded)".to_string(),
    };
    let confidence = (1.0 - options.epsilon) * 100.0;
    if selected.never_exit && output.summary.certified > 0 {
        let _ = writeln!(
            md,
            "**Verdict: run the full model.** {} configurations were certified (their {loss_name} is at most δ = {} \
             with probability ≥ {confidence}% over the draw of the n = {} calibration examples), but by the cost model \
             none costs less per token than the full model ({} decoder layers): their exit checks cost more than \
             the layers they save.\n",
            output.summary.certified, options.delta, output.inputs.n, table.num_layers
        );
    } else if selected.never_exit {
        let _ = writeln!(
            md,
            "**Verdict: no early-exit configuration could be certified.** With n = {} calibration examples, \
             no candidate's {loss_name} could be shown to be at most δ = {} with probability ≥ {confidence}%. \
             Run the full model ({} decoder layers), or calibrate with more examples or a larger δ.\n",
            output.inputs.n, options.delta, table.num_layers
        );
    } else {
        let _ = writeln!(
            md,
            "**Verdict:** with probability ≥ {confidence}% over the draw of the {} calibration examples, the average \
             {loss_name} of **{} τ = {} λ = {}** is at most **{}**. Its calibration risk is {:.4}; \
             it uses **{:.2} of {} decoder layers** per token on average (×{:.2} fewer layers; the cost model estimates ×{:.2} in time){}.\n",
            output.inputs.n,
            selected.measure.as_deref().unwrap_or("?"),
            selected.tau.unwrap_or(0.0),
            selected.lambda.unwrap_or(0.0),
            options.delta,
            selected.risk,
            selected.mean_layers,
            table.num_layers,
            selected.layer_speedup,
            selected.cost_speedup,
            measured_speedup(output).map_or(String::new(), |(x, place)| format!("; measured wall-clock speed-up ×{x:.2} {place}"))
        );
    }
    let _ = writeln!(md, "| | |\n|---|---|");
    for source in &output.inputs.records {
        let _ = writeln!(
            md,
            "| records | `{}` ({} rows, sha256 `{}`) |",
            source.path.display(),
            source.rows,
            &source.sha256[..16.min(source.sha256.len())]
        );
    }
    if let Some(run) = &output.run {
        let _ = writeln!(
            md,
            "| model | `{}` (sha256 `{}`) |",
            run.model.display(),
            &run.model_sha256[..16.min(run.model_sha256.len())]
        );
        let _ = writeln!(
            md,
            "| data | `{}` ({} examples) |",
            run.data.display(),
            run.examples
        );
        let sweep = &run.sweep;
        let note = if sweep.early_stop {
            "; fixed-sequence early stop: chains stop at their first failed test"
        } else {
            "; whole grid"
        };
        let _ = writeln!(
            md,
            "| sweep | {} of {} configurations decoded ({:.0}% of the grid{note}) |",
            sweep.configurations_evaluated,
            sweep.configurations_in_grid,
            100.0 * sweep.configurations_evaluated as f64
                / sweep.configurations_in_grid.max(1) as f64
        );
        let _ = writeln!(
            md,
            "| full-model pass | {} tokens in {:.1} s ({:.0} tokens/s on {} jobs) |",
            sweep.full_tokens,
            sweep.full_seconds,
            sweep.full_tokens as f64 / sweep.full_seconds.max(1e-9),
            sweep.jobs
        );
        if let Some(bench) = &run.benchmark {
            let b = &bench.run;
            let _ = writeln!(
                md,
                "| benchmark | `{}`, {} held-out examples on {} jobs: full model **{:.0} tokens/s**, selected configuration **{:.0} tokens/s** (**×{:.2}**); there its risk is {:.4} and it uses {:.2} layers per token |",
                bench.data.display(),
                b.examples,
                b.jobs,
                b.full_tokens_per_second,
                b.tokens_per_second,
                b.wall_clock_speedup,
                b.risk,
                b.mean_layers,
            );
        }
        if let Some(rho) = cost_rank_correlation(output) {
            let _ = writeln!(
                md,
                "| cost model | selection minimises the estimated cost per token at batch 1 (`record::cost`: layers, exit checks, propagated K/V, encoder); over the {} configurations the sweep timed (in batches of {}, which favour exit checks less than batch 1), its ranking agrees with the measured seconds per token with Spearman ρ = {rho:.2} |",
                sweep.configurations.len(),
                sweep.batch_size
            );
        }
    }
    if let Some(layers) = oracle {
        let _ = writeln!(
            md,
            "| oracle | on the full model's path (no exits, no state propagation), the first layer whose prediction equals the top layer's is layer {layers:.2} on average of {} (×{:.2}); a reference line for how early the layers agree, not a bound on what a measure can save |",
            table.num_layers,
            table.num_layers as f64 / layers.max(1e-9)
        );
    }
    if !agreement.is_empty() {
        let shares: Vec<String> = agreement
            .iter()
            .enumerate()
            .map(|(i, share)| format!("{}: {:.0}%", i + 1, 100.0 * share))
            .collect();
        let _ = writeln!(
            md,
            "| layer agreement | share of the full model's tokens whose prediction at layer i (through the shared final norm and head) equals the top layer's — {} |",
            shares.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "| test | {} p-values, {} at per-test level {:.3e}; {} of {} candidates certified |\n",
        output.inputs.pvalue.name(),
        output.inputs.procedure.name(),
        output.summary.level,
        output.summary.certified,
        output.summary.candidates
    );
    let _ = writeln!(md, "{}", frontier_table(output, frontier));
    let _ = writeln!(md, "## Chains\n\n| measure | τ | λ tested | smallest certified λ | its risk | its mean layers |\n|---|---|---|---|---|---|");
    for chain in table.chains() {
        let head = &output.candidates[chain[0]];
        let tested = chain
            .iter()
            .filter(|&&j| output.candidates[j].tested)
            .count();
        let best = chain
            .iter()
            .rfind(|&&j| output.candidates[j].certified)
            .map(|&j| &output.candidates[j]);
        match best {
            Some(c) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {tested} of {} | {} | {:.4} | {:.2} |",
                    head.measure,
                    head.tau,
                    chain.len(),
                    c.lambda,
                    c.risk,
                    c.mean_layers
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {tested} of {} | none | | |",
                    head.measure,
                    head.tau,
                    chain.len()
                );
            }
        }
    }
    if traced {
        md.push_str(
            "\n## Tokens\n\n![confidence by layer](confidence_by_layer.png)\n\n\
             ![examples](examples_by_exit_layer.png)\n\n\
             Per-token traces are in `tokens.parquet` (every configuration) and `layers.parquet` \
             (every layer of the full model).\n",
        );
    }
    md.push_str(
        "\n## Plots\n\n![risk vs lambda](risk_vs_lambda.png)\n\n![layers vs lambda](layers_vs_lambda.png)\n\n\
         ![frontier](frontier.png)\n\n![layers histogram](layers_histogram.png)\n\n\
         Each plot is also in SVG. The upper bound is the risk level at which the candidate's p-value \
         reaches the per-test level; a candidate is certified when its bound is at most δ and its chain \
         reached it. The layer frontier recalibrates the same records at each δ, one measure at a time; \
         after an `--early-stop` sweep, λs it never decoded cannot count at a larger δ, so the whole \
         grid (the default) is needed for the whole frontier.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(example: u32, position: u32, layer: u32, consistent: bool) -> LayerRow {
        LayerRow {
            example,
            position,
            layer,
            softmax_diff: 0.0,
            softmax_max: 0.0,
            state: f32::NAN,
            classifier: f32::NAN,
            consistent,
        }
    }

    #[test]
    fn layer_agreement_by_hand() {
        // Two tokens, three layers: layer 1 agrees once, layer 2 twice, the top always.
        let rows = [
            row(0, 0, 1, true),
            row(0, 0, 2, true),
            row(0, 0, 3, true),
            row(0, 1, 1, false),
            row(0, 1, 2, true),
            row(0, 1, 3, true),
        ];
        assert_eq!(layer_agreement(&rows), vec![0.5, 1.0, 1.0]);
        assert_eq!(oracle_mean_layers(&rows), Some(1.5));
        assert!(layer_agreement(&[]).is_empty());
    }

    #[test]
    fn the_oracle_exits_at_the_first_agreeing_layer() {
        // Three tokens of a 3-layer model whose first agreeing layers are 1, 3 and 2 (rows in
        // any order): (1 + 3 + 2) / 3 = 2.
        let rows = vec![
            row(0, 0, 1, true),
            row(0, 0, 2, true),
            row(0, 0, 3, true),
            row(0, 1, 1, false),
            row(0, 1, 2, false),
            row(0, 1, 3, true),
            row(1, 0, 3, true),
            row(1, 0, 1, false),
            row(1, 0, 2, true),
        ];
        assert_eq!(oracle_mean_layers(&rows), Some(2.0));
        assert_eq!(oracle_mean_layers(&[]), None);
    }
}
