//! The `calm` command line: clap derive, one file per subcommand.

mod bench;
mod bench_decode;
mod bench_sweep;
mod calibrate;
mod calibrate_model;
mod check;
mod evaluate;
mod generate;
mod model_args;
mod score;
mod simulate;
mod train;
mod train_classifier;
mod trials;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status for "ran fine, but the answer is negative" (e.g. nothing certified with
/// `--require-certified`).
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit status for bad input or any other error.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "calm",
    version,
    about = "Confident Adaptive Language Modeling: early-exit decoding with certified quality",
    help_expected = true,
    long_about = "calm makes text generation (T5 encoder-decoders, Llama-family decoder-only models) \
                  faster by exiting decoder layers early, and \
                  certifies with Learn then Test that the speed-up costs no more quality than you \
                  allow: P(risk <= delta) >= 1 - epsilon."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Certify early-exit thresholds from evaluation records (Learn then Test).
    Calibrate(calibrate::CalibrateArgs),
    /// CI gate: re-test a certified config on fresh labelled data: certified, violation detected (exit 1) or inconclusive.
    Check(check::CheckArgs),
    /// Model-card numbers: BLEU and ROUGE-L of the full model, every exit layer and the oracle.
    Evaluate(evaluate::EvaluateArgs),
    /// Generate text with the model, with or without early exit.
    Generate(generate::GenerateArgs),
    /// Score (prediction, reference) pairs with ROUGE, BLEU, chrF, token F1 or exact match.
    Score(score::ScoreArgs),
    /// Write synthetic records (no model involved) to try the calibrator or test a pipeline.
    SimulateRecords(simulate::SimulateArgs),
    /// Train a CALM model (tokenizer, weighted per-layer loss) into a checkpoint directory.
    Train(train::TrainArgs),
    /// Train the early-exit classifier on a frozen checkpoint.
    TrainClassifier(train_classifier::TrainClassifierArgs),
    /// The paper's validity protocol: random calibration/test splits of recorded losses.
    Trials(trials::TrialsArgs),
    /// Benchmarks; results are printed (and written with --out) for reports/.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Parse arguments, run, and map errors to exit codes (0 ok, 1 negative answer, 2 error).
pub fn main() -> ExitCode {
    // Error messages are for users: no library backtraces (panics still honour RUST_BACKTRACE).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    quiet_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Calibrate(args) => calibrate::run(args),
        Command::Check(args) => check::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Score(args) => score::run(args),
        Command::SimulateRecords(args) => simulate::run(args),
        Command::Train(args) => train::run(args),
        Command::TrainClassifier(args) => train_classifier::run(args),
        Command::Trials(args) => trials::run(args),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // A reader that stopped reading (`calm … | head -1`) is a normal end, as in ripgrep.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Write `text` to stdout. A reader that went away (closed pipe) is not an error here: commands
/// whose exit status carries the answer (`check`, `calibrate --require-certified`) still return
/// it.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Whether an error comes from writing to a closed pipe.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout is a closed pipe; end quietly with status 0 instead, and leave
/// every other panic to the default hook.
fn quiet_broken_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every subcommand, as "command --arg", for which `fails` holds.
    fn failing_arguments(
        command: &clap::Command,
        path: &str,
        fails: &dyn Fn(&clap::Arg) -> bool,
        missing: &mut Vec<String>,
    ) {
        for arg in command.get_arguments() {
            if fails(arg) {
                missing.push(format!("{path} --{}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            failing_arguments(sub, &format!("{path} {}", sub.get_name()), fails, missing);
        }
    }

    /// An argument without help text.
    fn undocumented(arg: &clap::Arg) -> bool {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        !builtin && arg.get_help().is_none() && arg.get_long_help().is_none()
    }

    /// An optional argument that takes a value but has no default clap shows, and whose help
    /// does not say what its absence means (`[default: …]`).
    fn without_default(arg: &clap::Arg) -> bool {
        let help = format!(
            "{} {}",
            arg.get_help().map(ToString::to_string).unwrap_or_default(),
            arg.get_long_help()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        arg.get_action().takes_values()
            && !arg.is_required_set()
            && arg.get_default_values().is_empty()
            && !help.contains("[default")
    }

    #[test]
    fn every_optional_value_says_its_default() {
        let mut missing = Vec::new();
        failing_arguments(&Cli::command(), "calm", &without_default, &mut missing);
        assert!(
            missing.is_empty(),
            "{} without a default: {missing:#?}",
            missing.len()
        );
    }

    #[test]
    fn the_command_line_is_consistent_and_every_argument_documented() {
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        failing_arguments(&Cli::command(), "calm", &undocumented, &mut missing);
        assert!(
            missing.is_empty(),
            "{} undocumented: {missing:#?}",
            missing.len()
        );
    }
}
