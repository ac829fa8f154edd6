//! The command line: clap argument types, and the one function that merges
//! them with a pipeline file into validated run settings.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, InputFile, Inputs};
use crate::error::{Error, Result};
use crate::generate::{self, GenParams};
use crate::pipeline::{self, RunSettings};

/// Customer tiering: RFM scores and segments, the contribution pyramid and
/// churn flags, published as Parquet and CSV snapshots for BI tools.
#[derive(Debug, Parser)]
#[command(
    name = "tiering",
    version,
    after_help = "Examples:\n  tiering run --config pipelines/sample.toml\n  tiering run --transactions txns.csv --customers customers.csv --as-of 2010-12-31 --out out\n  tiering generate --customers 400 --transactions 5000 --years 2 --seed 7 --out sample_data\n\nExit codes: 0 ok, 1 failed, 2 bad configuration or input, 3 reject ratio exceeded."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr, and no progress display.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest, score and publish one snapshot under OUT/snapshot=YYYY-MM-DD/.
    #[command(
        after_help = "Examples:\n  tiering run --config pipelines/sample.toml\n  tiering run --config pipelines/sample.toml --as-of 2010-06-30 --out /data/tiers\n  tiering run --transactions t.csv --customers c.csv --as-of 2010-12-31 --out out"
    )]
    Run(RunArgs),
    /// Write the customer-level plan as Spark SQL (for spark-sql -f or
    /// spark-submit) over the typed Parquet a previous ingest wrote.
    #[command(
        after_help = "Example:\n  tiering ingest --config pipelines/sample.toml\n  tiering plan --emit spark-sql --config pipelines/sample.toml > plan.sql"
    )]
    Plan(PlanArgs),
    /// Validate the inputs and write typed Parquet to OUT/_ingest/ only.
    #[command(after_help = "Example:\n  tiering ingest --config pipelines/sample.toml")]
    Ingest(InputArgs),
    /// Check the pipeline file and the inputs and compute everything; publish nothing.
    #[command(after_help = "Example:\n  tiering validate --config pipelines/sample.toml")]
    Validate(InputArgs),
    /// Publish a snapshot for every month, quarter or year end (or every N
    /// days) in a range: one ingest, snapshots computed in parallel.
    #[command(
        after_help = "Example:\n  tiering backfill --config pipelines/sample.toml --from 2009-03-31 --to 2010-12-31 --every quarter"
    )]
    Backfill(BackfillArgs),
    /// Write a deterministic synthetic data set (customers, transactions, interactions).
    #[command(
        after_help = "Example:\n  tiering generate --customers 400 --transactions 5000 --years 2 --seed 7 --out sample_data"
    )]
    Generate(GenerateArgs),
    /// Rebuild a published snapshot's report.html from its tables.
    #[command(after_help = "Example:\n  tiering report out/snapshot=2010-12-31")]
    Report {
        /// The snapshot directory.
        dir: PathBuf,
    },
    /// Print a published snapshot's manifest, or a typed store's files, readably.
    #[command(
        after_help = "Examples:\n  tiering inspect out/snapshot=2010-12-31\n  tiering inspect out/_store    (or the output root: out)"
    )]
    Inspect {
        /// A snapshot directory, a store (`OUT/_store`) or an output root holding one.
        dir: PathBuf,
    },
}

/// Where the inputs come from: a pipeline file, or files named directly.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// Pipeline file (TOML). Without it, --transactions and --customers are
    /// required and every setting takes its documented default.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Transactions file or glob (overrides the pipeline file's path).
    #[arg(long)]
    pub transactions: Option<String>,
    /// Customers file or glob (overrides the pipeline file's path).
    #[arg(long)]
    pub customers: Option<String>,
    /// Interactions file or glob (overrides the pipeline file's path).
    #[arg(long)]
    pub interactions: Option<String>,
    /// Snapshot date YYYY-MM-DD; data after it is excluded. Default: the
    /// pipeline file's as_of, else the latest transaction date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Output root. Default: the pipeline file's `out`, else ./out.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Memory budget, e.g. 4GiB: above the fast plan's estimate the run
    /// takes the lean plan (customers in parts, spilled to work files);
    /// below even that it stops before starting. Default: 80% of the
    /// memory available at start, never refused.
    #[arg(long, value_name = "SIZE", value_parser = crate::memory::parse_size)]
    pub memory_limit: Option<u64>,
}

/// Where the transactions are read and the per-customer frames computed.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Embedded polars, or a Spark Connect server that reads the
    /// transactions itself, or with `[spark] store = true` the typed
    /// store's pre-aggregates (builds with --features spark).
    #[arg(long, value_enum, default_value = "polars")]
    pub engine: EngineArg,
    /// The Spark Connect server for --engine spark, sc://HOST:PORT.
    /// Default: $SPARK_REMOTE.
    #[arg(long, value_name = "URL")]
    pub spark_remote: Option<String>,
    /// Where Spark writes its staging files (checked rows, the
    /// pre-aggregate): a directory or URI Spark can write. Default:
    /// OUT/_spark (when Spark shares this machine's file system).
    #[arg(long, value_name = "DIR")]
    pub spark_staging: Option<String>,
}

impl EngineArgs {
    fn apply(&self, s: &mut RunSettings) -> Result<()> {
        s.spark_staging = self.spark_staging.clone();
        if self.engine != EngineArg::Spark {
            return Ok(());
        }
        if !cfg!(feature = "spark") {
            return Err(Error::Usage(
                "--engine spark: this build has no Spark backend (cargo build --release --features spark)".into(),
            ));
        }
        let remote = self
            .spark_remote
            .clone()
            .or_else(|| std::env::var("SPARK_REMOTE").ok())
            .ok_or_else(|| {
                Error::Usage(
                    "--engine spark needs --spark-remote sc://HOST:PORT (or $SPARK_REMOTE)".into(),
                )
            })?;
        s.engine = pipeline::Engine::Spark { remote };
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// How `run` and `backfill` publish: the same flags for one snapshot or
/// many.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Replace any published snapshot of the same date.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Start the typed store (OUT/_store/) over: ingest every input file again.
    #[arg(long)]
    pub rebuild_store: bool,
    /// Publish only these tables (comma-separated), e.g.
    /// customer_scores,pyramid; summaries not named are not computed. The
    /// manifest is always written, the HTML report only with every table.
    /// Default: all.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Publish Parquet only, no CSV beside each table (the pipeline
    /// file's `publish.csv = false`).
    #[arg(long)]
    pub no_csv: bool,
}

impl PublishArgs {
    /// The run's settings from `inputs` with these flags applied.
    fn settings(&self, inputs: &InputArgs, progress: bool) -> Result<RunSettings> {
        let mut s = settings_with(inputs, self.overwrite, progress)?;
        s.rebuild_store = self.rebuild_store;
        s.tables = pipeline::chosen_tables(&s.config, self.tables.as_deref())?;
        if self.no_csv {
            s.config.publish.csv = false;
        }
        self.engine.apply(&mut s)?;
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    Polars,
    Spark,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// What to write: spark-sql (the only backend with text form).
    #[arg(long, value_enum, default_value = "spark-sql")]
    pub emit: Emit,
    /// Write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    SparkSql,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// First date of the range.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: NaiveDate,
    /// Last date of the range.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: NaiveDate,
    /// month, quarter, year (period ends in the range) or N-days (from, from+N, …).
    #[arg(long, default_value = "quarter")]
    pub every: crate::pipeline::Every,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 400)]
    pub customers: usize,
    /// Number of transactions.
    #[arg(long, default_value_t = 5000)]
    pub transactions: usize,
    /// Interactions to write (default: transactions / 2).
    #[arg(long)]
    pub interactions: Option<usize>,
    /// Years of history ending at --end.
    #[arg(long, default_value_t = 2)]
    pub years: u32,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Last day of history.
    #[arg(long, default_value = "2010-12-31", value_name = "YYYY-MM-DD")]
    pub end: NaiveDate,
    /// Customers drawn uniformly (default: Zipf-skewed), each active over
    /// the whole span, timestamps with a time of day.
    #[arg(long)]
    pub uniform: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Merges command-line inputs with the pipeline file (if any) and validates.
pub fn settings(args: &InputArgs, overwrite: bool) -> Result<RunSettings> {
    settings_with(args, overwrite, false)
}

fn settings_with(args: &InputArgs, overwrite: bool, progress: bool) -> Result<RunSettings> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let (Some(t), Some(c)) = (&args.transactions, &args.customers) else {
                return Err(Error::Usage(
                    "give --config FILE, or both --transactions FILE and --customers FILE".into(),
                ));
            };
            Config {
                inputs: Inputs {
                    transactions: plain_input(t),
                    customers: plain_input(c),
                    interactions: None,
                },
                ..Default::default()
            }
        }
    };
    if let Some(t) = &args.transactions {
        config.inputs.transactions.path = t.clone();
    }
    if let Some(c) = &args.customers {
        config.inputs.customers.path = c.clone();
    }
    if let Some(i) = &args.interactions {
        match &mut config.inputs.interactions {
            Some(input) => input.path = i.clone(),
            None => config.inputs.interactions = Some(plain_input(i)),
        }
    }
    if args.as_of.is_some() {
        config.as_of = args.as_of;
    }
    let out = args
        .out
        .clone()
        .or_else(|| config.out.clone())
        .unwrap_or_else(|| PathBuf::from("out"));
    config.out = Some(out.clone());
    config.validate()?;
    Ok(RunSettings {
        as_of: config.as_of,
        config,
        out,
        overwrite,
        progress,
        memory_limit: args.memory_limit,
        engine: pipeline::Engine::Polars,
        spark_staging: None,
        rebuild_store: false,
        tables: None,
    })
}

fn plain_input(path: &str) -> InputFile {
    // Parse an empty table so every default comes from one place: serde.
    let mut input: InputFile =
        toml::from_str(&format!("path = {}", toml::Value::String(path.to_string())))
            .expect("a path alone is a valid input table");
    input.path = path.to_string();
    input
}

/// Sets up logging on stderr: warnings by default, -v info, -vv debug,
/// -q errors only; text or JSON lines.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    // Another subscriber may already be set (tests); keep it.
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs a parsed command line; the caller maps errors to exit codes.
pub fn execute(cli: Cli) -> Result<()> {
    crate::pool::run(|| execute_here(cli))
}

fn execute_here(cli: Cli) -> Result<()> {
    init_logging(&cli);
    crate::io::quiet_caught_panics();
    let progress = crate::progress::wanted(cli.quiet);
    match cli.command {
        Command::Backfill(a) => {
            let s = a.publish.settings(&a.inputs, progress)?;
            let done = pipeline::backfill(&s, a.from, a.to, a.every)?;
            for o in &done {
                println!(
                    "published {} ({} customers)",
                    o.snapshot.display(),
                    o.customers
                );
            }
        }
        Command::Plan(args) => {
            let s = settings(&args.inputs, false)?;
            let sql = pipeline::emit_plan(&s)?;
            match &args.output {
                Some(path) => std::fs::write(path, sql).map_err(Error::io(path))?,
                None => print!("{sql}"),
            }
        }
        Command::Run(args) => {
            let s = args.publish.settings(&args.inputs, progress)?;
            let o = pipeline::run(&s)?;
            println!(
                "published {} ({} customers, {} transactions kept, {} rows rejected)",
                o.snapshot.display(),
                o.customers,
                o.transactions,
                o.rejected
            );
        }
        Command::Ingest(args) => {
            let s = settings(&args, false)?;
            let (ing, dir) = pipeline::run_ingest(&s)?;
            for (table, r) in &ing.report {
                println!(
                    "{table}: {} rows read, {} kept, {} rejected, {} after as-of, {} duplicates",
                    r.rows_read,
                    r.rows_kept,
                    r.rejected_total(),
                    r.excluded_after_as_of,
                    r.duplicates_collapsed
                );
            }
            println!("typed Parquet written to {}", dir.display());
        }
        Command::Validate(args) => {
            let s = settings(&args, false)?;
            let o = pipeline::run_validate(&s)?;
            println!(
                "ok: as of {}, {} customers, {} transactions kept, {} rows rejected; nothing published",
                o.as_of, o.customers, o.transactions, o.rejected
            );
        }
        Command::Generate(a) => {
            let p = GenParams {
                customers: a.customers,
                transactions: a.transactions,
                years: a.years,
                seed: a.seed,
                end: a.end,
                interactions: a.interactions,
                uniform: a.uniform,
            };
            generate::generate(&p, &a.out)?;
            println!(
                "wrote customers.csv, transactions.csv, interactions.csv to {}",
                a.out.display()
            );
        }
        Command::Inspect { dir } => print!("{}", crate::inspect::render(&dir)?),
        Command::Report { dir } => {
            let html = crate::report::render_dir(&dir)?;
            let path = dir.join("report.html");
            crate::io::write_atomically(&path, |tmp| {
                std::fs::write(tmp, html.as_bytes()).map_err(Error::io(tmp))
            })?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_config_needs_both_files() {
        let args = InputArgs {
            config: None,
            transactions: Some("t.csv".into()),
            customers: None,
            interactions: None,
            as_of: None,
            out: None,
            memory_limit: None,
        };
        assert!(matches!(settings(&args, false), Err(Error::Usage(_))));
    }

    #[test]
    fn flags_without_config_take_defaults() {
        let args = InputArgs {
            config: None,
            transactions: Some("t.csv".into()),
            customers: Some("c.csv".into()),
            interactions: None,
            as_of: NaiveDate::from_ymd_opt(2010, 12, 31),
            out: Some("o".into()),
            memory_limit: None,
        };
        let s = settings(&args, false).unwrap();
        assert_eq!(s.config.inputs.transactions.delimiter, ',');
        assert_eq!(s.config.rfm.bins, 5);
        assert_eq!(s.as_of, NaiveDate::from_ymd_opt(2010, 12, 31));
        assert_eq!(s.out, PathBuf::from("o"));
    }
}
