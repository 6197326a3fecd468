//! `calm bench`: reproducible timings for reports/ (speed targets live here, not in unit tests).

use crate::calibrate::thresholds::ThresholdsFile;
use crate::calibrate::{calibrate, CalibrationOptions, LossTable, PValueMethod, Procedure};
use crate::record::{read_records, simulate_records, write_records, SimulationSpec};
use crate::util::atomic::write_file_atomically;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time `calibrate` end to end (read, group, test, write) on synthetic records.
    Calibrate(BenchCalibrateArgs),
    /// Decoding speed: full model vs exits at each layer, batch 1 and 16.
    Decode(super::bench_decode::BenchDecodeArgs),
    /// The calibration sweep's decoding: batch 1 vs length-bucketed batches, speed and parity.
    Sweep(super::bench_sweep::BenchSweepArgs),
}

#[derive(Debug, Args)]
pub struct BenchCalibrateArgs {
    /// Calibration examples.
    #[arg(long, default_value_t = 10_000)]
    pub examples: usize,
    /// Lambdas per chain; 4 chains (2 measures x 2 taus), so 25 gives 100 candidates.
    #[arg(long, default_value_t = 25)]
    pub lambdas: usize,
    /// Records file format.
    #[arg(long, value_parser = ["parquet", "csv"], default_value = "parquet")]
    pub format: String,
    /// p-value of each candidate.
    #[arg(long, value_enum, default_value_t = PValueMethod::Hb)]
    pub pvalue: PValueMethod,
    /// Family-wise error control across candidates.
    #[arg(long, value_enum, default_value_t = Procedure::FixedSequence)]
    pub procedure: Procedure,
    /// Timed repetitions (the minimum and median are reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to this file [default: stdout only].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct PhaseTimes {
    read_s: f64,
    group_s: f64,
    test_s: f64,
    write_s: f64,
    total_s: f64,
}

#[derive(Debug, Serialize)]
struct BenchResult {
    benchmark: &'static str,
    records: usize,
    examples: usize,
    candidates: usize,
    format: String,
    file_bytes: u64,
    pvalue: &'static str,
    procedure: &'static str,
    repeat: usize,
    threads: usize,
    min: PhaseTimes,
    median_total_s: f64,
}

pub fn run(command: BenchCommand) -> Result<u8> {
    match command {
        BenchCommand::Calibrate(args) => bench_calibrate(args),
        BenchCommand::Decode(args) => super::bench_decode::run(args),
        BenchCommand::Sweep(args) => super::bench_sweep::run(args),
    }
}

fn bench_calibrate(args: BenchCalibrateArgs) -> Result<u8> {
    if args.examples == 0 || args.lambdas == 0 || args.repeat == 0 {
        bail!("--examples, --lambdas and --repeat must be at least 1");
    }
    let mut spec = SimulationSpec::grid(args.examples, args.lambdas, 1);
    spec.measures.truncate(2);
    let records = simulate_records(&spec);
    let dir = std::env::temp_dir().join(format!("calm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<BenchResult> {
        let file = dir.join(format!("records.{}", args.format));
        write_records(&records, &file, &[])?;
        let file_bytes = std::fs::metadata(&file)?.len();
        let options = CalibrationOptions {
            delta: 0.1,
            epsilon: 0.05,
            pvalue: args.pvalue,
            procedure: args.procedure,
            seed: 0,
        };
        let mut runs = Vec::new();
        let mut candidates = 0;
        for _ in 0..args.repeat {
            let start = Instant::now();
            let loaded = read_records(std::slice::from_ref(&file))?;
            let read = start.elapsed().as_secs_f64();
            let table = LossTable::from_records(&loaded)?;
            let group = start.elapsed().as_secs_f64();
            let calibration = calibrate(&table, &options)?;
            let test = start.elapsed().as_secs_f64();
            ThresholdsFile::new(&calibration, &loaded.sources).write(&dir.join("out"))?;
            let total = start.elapsed().as_secs_f64();
            candidates = calibration.candidates.len();
            runs.push([read, group - read, test - group, total - test, total]);
        }
        let min = |i: usize| runs.iter().map(|r| r[i]).fold(f64::INFINITY, f64::min);
        let mut totals: Vec<f64> = runs.iter().map(|r| r[4]).collect();
        totals.sort_by(f64::total_cmp);
        Ok(BenchResult {
            benchmark: "calibrate",
            records: records.rows.len(),
            examples: args.examples,
            candidates,
            format: args.format.clone(),
            file_bytes,
            pvalue: args.pvalue.name(),
            procedure: args.procedure.name(),
            repeat: args.repeat,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            min: PhaseTimes {
                read_s: min(0),
                group_s: min(1),
                test_s: min(2),
                write_s: min(3),
                total_s: min(4),
            },
            median_total_s: totals[totals.len() / 2],
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let result = result?;
    let json = serde_json::to_string_pretty(&result)? + "\n";
    if let Some(out) = &args.out {
        write_file_atomically(out, json.as_bytes())?;
    }
    if args.json {
        print!("{json}");
    } else {
        println!(
            "calibrate: {} records ({} examples x {} candidates, {} {} bytes) in {:.3} s (min of {}; read {:.3} s, group {:.3} s, test {:.3} s, write {:.3} s)",
            result.records,
            result.examples,
            result.candidates,
            result.format,
            result.file_bytes,
            result.min.total_s,
            result.repeat,
            result.min.read_s,
            result.min.group_s,
            result.min.test_s,
            result.min.write_s
        );
    }
    Ok(0)
}
