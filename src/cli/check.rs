//! `calm check`: the CI gate. Runs the certified configuration on fresh labelled data and gives
//! one of three verdicts (certified on fresh data, violation detected, inconclusive), plus a
//! layer-regression check with its sampling error.

use super::EXIT_NEGATIVE;
use crate::calibrate::check::{GateTest, Verdict};
use crate::calibrate::thresholds::read_thresholds;
use crate::pipeline::{check, CheckOptions, CheckReport, PipelineError};
use crate::util::atomic::write_file_atomically;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(
    after_help = "Verdicts (every line names delta, both levels and n):\n  \
certified on fresh data  H: risk > delta rejected at level epsilon: evidence the risk is at most delta\n  \
violation detected       H': risk <= delta rejected at level alpha: evidence the risk exceeds delta\n  \
inconclusive             neither rejected; the output says what n would decide\n\
Exit status: 0 certified or inconclusive, 1 violation detected, layers regressed, or (with\n\
--require-certified) anything but certified, 2 bad input.\n\
Example:\n  calm check --thresholds runs/modernize/thresholds.json --data datasets/bible/test.jsonl.gz"
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub model_args: super::model_args::ModelArgs,
    /// A thresholds.json written by `calm calibrate --model`.
    #[arg(long, value_name = "FILE")]
    pub thresholds: PathBuf,
    /// Fresh labelled examples (JSONL or JSONL.gz), not used for calibration.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Checkpoint directory or .gguf file [default: the one recorded in the thresholds]; its sha256 must match.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Use at most this many examples of --data (the first ones of the calibrated task)
    /// [default: all].
    #[arg(long, value_name = "N")]
    pub max_examples: Option<usize>,
    /// Level ε of the certify test (H: risk > δ) [default: the calibration's ε].
    #[arg(long, value_name = "E")]
    pub epsilon: Option<f64>,
    /// Level α of the violation test (H′: risk ≤ δ): the false-alarm rate when the true risk is
    /// exactly δ. Separate from ε.
    #[arg(long, value_name = "A", default_value_t = 0.05)]
    pub alpha: f64,
    /// Flag a layer regression when mean layers exceed the calibrated value by more than this
    /// fraction, beyond the one-sided level-α margin of their standard error.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.10)]
    pub max_layer_regression: f64,
    /// Exit with status 1 unless the verdict is "certified on fresh data".
    #[arg(long)]
    pub require_certified: bool,
    /// Parallel decoders (one core each).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Where to write check.json [default: next to the thresholds].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write a Markdown summary here (verdict, risk interval, layers, speed). When the
    /// environment has GITHUB_STEP_SUMMARY, the summary is appended to that file too [default:
    /// no file].
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Print check.json to stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// A pipeline error in the CLI's words: option names become flags.
pub fn flag_error(error: PipelineError) -> anyhow::Error {
    match error {
        PipelineError::InvalidOption {
            name,
            value,
            expected,
        } => anyhow::anyhow!("--{} must {expected} (got {value})", name.replace('_', "-")),
        other => other.into(),
    }
}

pub fn run(args: CheckArgs) -> Result<u8> {
    super::generate::set_threads(1);
    let options = CheckOptions {
        epsilon: args.epsilon,
        alpha: args.alpha,
        max_layer_regression: args.max_layer_regression,
        require_certified: args.require_certified,
        jobs: args.jobs,
        max_examples: args.max_examples,
    };
    options.validate().map_err(flag_error)?;
    let config = read_thresholds(&args.thresholds)?;
    let Some(run) = &config.run else {
        bail!("{}: made from records without a model run; `calm check` needs a config from `calm calibrate --model`", args.thresholds.display());
    };
    let model_dir = args.model.clone().unwrap_or_else(|| run.model.clone());
    let checkpoint = args
        .model_args
        .load_for_run(&model_dir, run, &args.thresholds)?;
    let report =
        check(&config, &args.thresholds, &args.data, &checkpoint, &options).map_err(flag_error)?;
    let passed = report.passed;
    let json = serde_json::to_string_pretty(&report)? + "\n";
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .thresholds
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    // The summary first, then check.json, then the append to GitHub's summary (not atomic: it
    // is another program's file). An error in any of them exits 2.
    let summary = markdown_summary(&report, &args.data);
    if let Some(path) = &args.summary {
        write_file_atomically(path, summary.as_bytes())?;
    }
    write_file_atomically(&out_dir.join("check.json"), json.as_bytes())?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        append(Path::new(&path), &summary)?;
    }
    // A closed stdout must not turn a failed gate into exit 0.
    super::write_stdout(&if args.json {
        json
    } else {
        text_report(&report)
    })?;
    Ok(if passed { 0 } else { EXIT_NEGATIVE })
}

fn append(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot append to GITHUB_STEP_SUMMARY ({})", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// "n = 200, δ = 0.1, ε = 0.05, α = 0.05".
fn levels(test: &GateTest) -> String {
    format!(
        "n = {}, δ = {}, ε = {}, α = {}",
        test.n, test.delta, test.epsilon, test.alpha
    )
}

fn or_more(value: Option<u64>, what: &str) -> String {
    // None: the search went up to 10^7 examples without finding one.
    value.map_or(format!("no n up to 10^7 {what}"), |n| {
        format!("n = {n} {what}")
    })
}

/// The plain-language verdict with its evidence.
fn verdict_sentence(test: &GateTest) -> String {
    match test.verdict {
        Verdict::Certified => format!(
            "certified on fresh data: H: risk > {} rejected at level ε = {} (p = {:.3e}; {})",
            test.delta,
            test.epsilon,
            test.certify_p_value,
            levels(test)
        ),
        Verdict::ViolationDetected => format!(
            "VIOLATION DETECTED: H′: risk ≤ {} rejected at level α = {} (p = {:.3e}; {}): the risk exceeds δ",
            test.delta,
            test.alpha,
            test.violation_p_value,
            levels(test)
        ),
        Verdict::Inconclusive => {
            let power = &test.power;
            let detectable = power.detectable_risk.map_or(
                "this n detects no risk, not even 1, with power 0.8".to_string(),
                |r| format!("this n detects a true risk of {r:.3} or more with power 0.8"),
            );
            let certify = match power.n_to_certify_at_observed_risk {
                Some(n) => format!("at the observed risk, n = {n} would certify"),
                None if test.risk >= test.delta => {
                    "the observed risk is not below δ, so no n certifies it".to_string()
                }
                None => "at the observed risk no n up to the search limit (10^7; 10^6 for WSR) certifies".to_string(),
            };
            format!(
                "inconclusive: neither H: risk > {} (p = {:.3e}, level ε = {}) nor H′: risk ≤ {} (p = {:.3e}, level α = {}) is rejected ({}); {detectable}; {certify}; {}",
                test.delta,
                test.certify_p_value,
                test.epsilon,
                test.delta,
                test.violation_p_value,
                test.alpha,
                levels(test),
                or_more(power.n_to_detect_twice_delta, "detects a risk of 2δ with power 0.8"),
            )
        }
    }
}

fn text_report(report: &CheckReport) -> String {
    let test = &report.test;
    let layers = &report.layers;
    let mut text = format!(
        "calm check: {} on {} fresh examples ({})\n",
        report.configuration,
        test.n,
        report.data.display()
    );
    text += &format!(
        "  risk {:.4}, interval [{:.4}, {:.4}] (lower at α = {}, upper at ε = {}); δ = {}\n",
        test.risk,
        test.risk_lower_bound,
        test.risk_upper_bound,
        test.alpha,
        test.epsilon,
        test.delta
    );
    text += &format!(
        "  mean layers {:.2} ± {:.2} (s.e.) vs {:.2} calibrated (allowed +{:.0}%, flag above {:.2}) -> {}\n",
        layers.mean_layers,
        layers.standard_error,
        layers.calibrated_mean_layers,
        layers.max_layer_regression * 100.0,
        layers.threshold,
        if layers.regressed { "REGRESSED" } else { "ok" }
    );
    if report.full_tokens_per_second > 0.0 {
        text += &format!(
            "  speed: full model {:.1} tokens/s, certified configuration {:.1} tokens/s (x{:.2})\n",
            report.full_tokens_per_second,
            report.selected_tokens_per_second,
            report.wall_clock_speedup
        );
    }
    text += &format!("  verdict: {}\n", verdict_sentence(test));
    text += &format!(
        "  gate: {}\n",
        if report.passed { "passed" } else { "FAILED" }
    );
    text
}

/// The Markdown summary for CI (GitHub's job summary or any file).
fn markdown_summary(report: &CheckReport, data: &Path) -> String {
    let test = &report.test;
    let layers = &report.layers;
    let mut md = format!(
        "### calm check: {}\n\n**{}** — {}\n\n| | |\n|---|---|\n",
        if report.passed { "passed" } else { "FAILED" },
        test.verdict.describe(),
        levels(test)
    );
    md += &format!("| configuration | {} |\n", report.configuration);
    md += &format!(
        "| fresh data | `{}` ({} examples) |\n",
        data.display(),
        test.n
    );
    md += &format!(
        "| risk | {:.4}, interval [{:.4}, {:.4}] (δ = {}) |\n",
        test.risk, test.risk_lower_bound, test.risk_upper_bound, test.delta
    );
    md += &format!(
        "| p-values | certify (H: risk > δ) {:.3e} at ε = {}; violation (H′: risk ≤ δ) {:.3e} at α = {} |\n",
        test.certify_p_value, test.epsilon, test.violation_p_value, test.alpha
    );
    md += &format!(
        "| mean layers | {:.2} ± {:.2} vs {:.2} calibrated: {} |\n",
        layers.mean_layers,
        layers.standard_error,
        layers.calibrated_mean_layers,
        if layers.regressed { "regressed" } else { "ok" }
    );
    if report.full_tokens_per_second > 0.0 {
        md += &format!(
            "| speed | {:.1} vs {:.1} tokens/s full (×{:.2}) |\n",
            report.selected_tokens_per_second,
            report.full_tokens_per_second,
            report.wall_clock_speedup
        );
    }
    md += &format!("\n{}\n", verdict_sentence(test));
    md
}
