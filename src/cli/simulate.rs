//! `calm simulate-records`: synthetic records for demos and pipeline tests.

use crate::record::{simulate_records, write_records, SimulationSpec};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Output file (.parquet or .csv).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Number of examples.
    #[arg(long, default_value_t = 1000)]
    pub examples: usize,
    /// Lambdas per (measure, tau) chain, evenly spaced from 1 down.
    #[arg(long, default_value_t = 20)]
    pub lambdas: usize,
    /// Fractional losses (like 1 − ROUGE-L) instead of 0/1 losses.
    #[arg(long)]
    pub fractional: bool,
    /// Seed of the simulation: the same seed gives the same records.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: SimulateArgs) -> Result<u8> {
    if args.examples == 0 || args.lambdas == 0 {
        bail!("--examples and --lambdas must be at least 1");
    }
    let mut spec = SimulationSpec::grid(args.examples, args.lambdas, args.seed);
    spec.binary_loss = !args.fractional;
    let records = simulate_records(&spec);
    write_records(&records, &args.out, &[])?;
    println!(
        "wrote {} synthetic records ({} examples) to {}",
        records.rows.len(),
        args.examples,
        args.out.display()
    );
    Ok(0)
}
