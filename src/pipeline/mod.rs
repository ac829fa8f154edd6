//! One run: ingest → typed Parquet → per-customer base → scores → summaries
//! → invariants → atomic publish with a manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::*;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ingest::{self, Ingested, TableReport};
use crate::io::{self, Run};
use crate::memory;
use crate::pipeline::manifest::{Manifest, pyramid_applied};
use crate::publish::{self, Lock, Snapshot};
use crate::scoring::engagement;
use crate::snapshot::{self, Frames, Given, Scored};
use crate::store;

mod backfill;
mod manifest;

pub use backfill::{BackfillInfo, Every, backfill, backfill_dates};

/// A validated run: the configuration as applied plus command-line choices.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub config: Config,
    /// Snapshot date; None → the latest valid transaction date.
    pub as_of: Option<NaiveDate>,
    /// Output root.
    pub out: PathBuf,
    /// Replace an existing snapshot for the same date.
    pub overwrite: bool,
    /// Draw progress on the terminal.
    pub progress: bool,
    /// `--memory-limit` in bytes (see [`crate::memory`]).
    pub memory_limit: Option<u64>,
    /// Where the transactions are read and the per-customer frames computed.
    pub engine: Engine,
    /// `--spark-staging`: where Spark writes its staging files (see
    /// [`spark_staging`]).
    pub spark_staging: Option<String>,
    /// Start the typed store (`<out>/_store/`) over from the inputs.
    pub rebuild_store: bool,
    /// `--tables`: publish only these (None: every table and the report).
    pub tables: Option<BTreeSet<String>>,
}

impl RunSettings {
    /// Whether the table `name` is published (`--tables`).
    fn wants(&self, name: &str) -> bool {
        self.tables.as_ref().is_none_or(|t| t.contains(name))
    }

    /// The summaries computed for the tables published.
    fn wanted(&self) -> snapshot::Wanted {
        snapshot::Wanted::of(self.tables.as_ref())
    }
}

/// `--tables` checked against the tables this configuration publishes.
pub fn chosen_tables(cfg: &Config, names: Option<&[String]>) -> Result<Option<BTreeSet<String>>> {
    let Some(names) = names else {
        return Ok(None);
    };
    let known = snapshot::table_names(cfg);
    let mut chosen = BTreeSet::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !known.iter().any(|k| k == n) {
            return Err(Error::Usage(format!(
                "--tables: no table '{n}' (this pipeline publishes: {})",
                known.join(", ")
            )));
        }
        chosen.insert(n.to_string());
    }
    if chosen.is_empty() {
        return Err(Error::Usage("--tables: name at least one table".into()));
    }
    Ok(Some(chosen))
}

/// `--engine`: polars (embedded, the default) or a Spark Connect server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Polars,
    Spark {
        remote: String,
    },
}

/// The Spark engine's inputs: Spark reads, checks and pre-aggregates the
/// transactions (under `--spark-staging`) and computes every per-customer
/// frame the snapshots need; customers and interactions are read here.
/// No transaction row is read by this process.
#[cfg(feature = "spark")]
fn spark_inputs(
    s: &RunSettings,
    remote: &str,
    as_of: Option<NaiveDate>,
    snapshots: &dyn Fn(NaiveDate) -> Vec<NaiveDate>,
) -> Result<(Ingested, Given)> {
    let t = Instant::now();
    let spark = crate::spark::Spark::connect(remote)?;
    let staging = spark_staging(s)?;
    let si = crate::spark::ingest(&spark, &s.config, as_of, &staging)?;
    tracing::info!(
        ms = t.elapsed().as_millis() as u64,
        rows = si.report.rows_read,
        remote,
        "spark ingested the transactions"
    );
    let mut columns: Vec<String> = ["customer_id", "txn_id", "ts", "amount_cents"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    if si.daily.has_margin {
        columns.push("margin_cents".into());
    }
    if si.daily.has_quantity {
        columns.push("quantity".into());
    }
    let transactions = ingest::TypedFile {
        paths: Vec::new(),
        rows: si.report.rows_kept,
        columns,
    };
    let reports = BTreeMap::from([("transactions".to_string(), si.report.clone())]);
    // The checked interactions' files, under the folder a failed run's
    // work files are removed from (`publish::recover`).
    let scratch = ingest_dir(&s.out);
    std::fs::create_dir_all(&scratch).map_err(Error::io(&scratch))?;
    let mut ing = ingest::with_other_tables(
        &s.config,
        si.as_of,
        transactions,
        reports,
        vec![si.rejects.clone()],
        None,
        &scratch,
        None,
    )?
    .0;
    ing.transaction_rows_read_locally = 0;
    let t = Instant::now();
    let given = crate::spark::given(
        &spark,
        &s.config,
        &si.daily,
        &snapshots(si.as_of),
        s.wanted(),
        &|_| false,
    )?;
    // Staging on this machine's disk is let go at once (a URI's is
    // replaced by the next run).
    if !crate::spark::is_uri(&staging) {
        for dir in ["checked", "daily"] {
            let _ = std::fs::remove_dir_all(Path::new(&staging).join(dir));
        }
    }
    tracing::info!(
        ms = t.elapsed().as_millis() as u64,
        dates = given.measures.len(),
        "spark computed the measures"
    );
    Ok((ing, given))
}

/// The Spark engine over the typed store (`[spark] store = true`): the
/// store is brought up to date here (only files it lacks are read, as on
/// the local engine), and Spark computes every per-customer frame from the
/// store's pre-aggregates. The transaction rows read here are the ones the
/// store read (`store.rows_read`).
#[cfg(feature = "spark")]
fn spark_store_inputs(
    s: &RunSettings,
    remote: &str,
    as_of: Option<NaiveDate>,
    snapshots: &dyn Fn(NaiveDate) -> Vec<NaiveDate>,
) -> Result<(Ingested, Given, store::View)> {
    let path = &s.config.inputs.transactions.path;
    if crate::spark::is_uri(path) {
        return Err(Error::Usage(format!(
            "{path}: with [spark] store = true the transactions files are checked into the store on this machine, which cannot read a URI; mount the files here, or set store = false to have Spark read them"
        )));
    }
    // Connected first: a wrong address fails before any ingest work.
    let spark = crate::spark::Spark::connect(remote)?;
    let (mut ing, view) = store_inputs(s, as_of)?;
    // A first run's pre-aggregates are not scored here: let them go.
    drop(view.take_fresh_daily());
    let t = Instant::now();
    let daily = crate::spark::store_daily(&spark, &view)?;
    // Earlier dates whose tierings the store keeps need no measures.
    let kept = tiering_cache(&ing, &s.config, &view)?;
    let given = crate::spark::given(
        &spark,
        &s.config,
        &daily,
        &snapshots(ing.as_of),
        s.wanted(),
        &|k| kept.has(k),
    )?;
    ing.transaction_rows_read_locally = view.summary.rows_read;
    tracing::info!(
        ms = t.elapsed().as_millis() as u64,
        dates = given.measures.len(),
        remote,
        "spark computed the measures from the store"
    );
    Ok((ing, given, view))
}

#[cfg(not(feature = "spark"))]
fn spark_inputs(
    _: &RunSettings,
    _: &str,
    _: Option<NaiveDate>,
    _: &dyn Fn(NaiveDate) -> Vec<NaiveDate>,
) -> Result<(Ingested, Given)> {
    Err(no_spark())
}

#[cfg(not(feature = "spark"))]
fn spark_store_inputs(
    _: &RunSettings,
    _: &str,
    _: Option<NaiveDate>,
    _: &dyn Fn(NaiveDate) -> Vec<NaiveDate>,
) -> Result<(Ingested, Given, store::View)> {
    Err(no_spark())
}

#[cfg(not(feature = "spark"))]
fn no_spark() -> Error {
    Error::Usage(
        "--engine spark: this build has no Spark backend (build with --features spark)".into(),
    )
}

/// Where Spark writes its staging files: `--spark-staging`, else
/// `<out>/_spark` as an absolute path (right when Spark runs on this
/// machine or shares its file system).
pub fn spark_staging(s: &RunSettings) -> Result<String> {
    if let Some(dir) = &s.spark_staging {
        return Ok(dir.trim_end_matches('/').to_string());
    }
    let dir = s.out.join("_spark");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let dir = dir.canonicalize().map_err(Error::io(&dir))?;
    Ok(dir.display().to_string())
}

/// What a finished run reports back.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub snapshot: PathBuf,
    pub as_of: NaiveDate,
    pub customers: usize,
    pub transactions: usize,
    pub rejected: usize,
}

/// Stage timings in milliseconds, in execution order.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings(pub Vec<(String, u64)>);

impl Timings {
    fn lap(&mut self, stage: &str, since: Instant) -> Instant {
        self.0
            .push((stage.to_string(), since.elapsed().as_millis() as u64));
        Instant::now()
    }

    fn last(&self) -> u64 {
        self.0.last().map(|x| x.1).unwrap_or(0)
    }
}

/// Where ingest writes the typed inputs.
pub fn ingest_dir(out: &Path) -> PathBuf {
    out.join("_ingest")
}

/// Writes the typed customers and interactions beside the transactions
/// ingest streamed to `<out>/_ingest/` (each file atomically).
pub fn write_ingested(ing: &Ingested, out: &Path) -> Result<PathBuf> {
    TypedCopies::of(ing).write(out)
}

/// The typed customers and interactions of an ingest, as `_ingest/`
/// holds them: owned (the frames share their buffers), so that a run
/// writes them beside its scoring.
struct TypedCopies {
    tables: Vec<(&'static str, Typed)>,
    typed_from: BTreeMap<String, String>,
}

/// A typed table as the ingest gives it: in memory, or in files.
enum Typed {
    Held(DataFrame),
    Interactions(ingest::Interactions),
}

impl TypedCopies {
    fn of(ing: &Ingested) -> TypedCopies {
        let mut tables = vec![("customers", Typed::Held(ing.customers.clone()))];
        if let Some(i) = ing.interactions.as_ref() {
            tables.push(("interactions", Typed::Interactions(i.clone())));
        }
        TypedCopies {
            tables,
            typed_from: ing.typed_from.clone(),
        }
    }

    fn write(self, out: &Path) -> Result<PathBuf> {
        let dir = ingest_dir(out);
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        for (name, table) in self.tables {
            let path = dir.join(format!("{name}.parquet"));
            // Beside the file: what it was written from, and its length. A
            // night whose customers are the store's kept ones leaves the file
            // alone (rewriting 10^6 customers took 0.36–0.61 s of a uniform
            // 10^7 night, beside the pre-aggregate's merge).
            let stamp = dir.join(format!("{name}.parquet.from"));
            let from = self.typed_from.get(name);
            let noted = |from: &str, len: u64| format!("{from}\n{len}\n");
            let same = match (from, std::fs::metadata(&path)) {
                (Some(f), Ok(m)) => std::fs::read_to_string(&stamp).ok() == Some(noted(f, m.len())),
                _ => false,
            };
            if same {
                continue;
            }
            // Gone before the file changes: a run killed in between leaves no
            // stamp, and the next one writes the file again.
            match std::fs::remove_file(&stamp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&stamp)(e));
                }
                _ => {}
            }
            crate::io::write_atomically(&path, |tmp| match table {
                Typed::Held(mut df) => io::write_parquet(&mut df, tmp),
                // A slice at a time, in row groups of 2^17 rows: a log of
                // interactions is never held whole (polars' streamed sink
                // took ~12% of such a night's CPU, most of it trying
                // dictionaries for every text column; groups of 2^20 rows
                // held ~0.2 GB more at a cold run's peak).
                Typed::Interactions(i) => {
                    let schema = i.scan()?.collect_schema()?.as_ref().clone();
                    io::write_parquet_from(tmp, &schema, i.slices(1 << 17)?, 1 << 17)
                }
            })?;
            if let Some(f) = from {
                let text = noted(f, std::fs::metadata(&path).map_err(Error::io(&path))?.len());
                crate::io::write_atomically(&stamp, |tmp| {
                    std::fs::write(tmp, text).map_err(Error::io(tmp))
                })?;
            }
        }
        Ok(dir)
    }
}

/// The typed copies being written beside a run's scoring (on the fast
/// plan; the lean plan writes them first, one thing at a time): a night
/// whose interactions log gained a file rewrites them all (5·10^6 rows:
/// ~1.1 s that the scoring waited for).
struct Writing(Option<std::thread::JoinHandle<Result<PathBuf>>>);

impl Writing {
    fn start(ing: &Ingested, out: &Path, lean: bool) -> Result<Writing> {
        let copies = TypedCopies::of(ing);
        if lean {
            copies.write(out)?;
            return Ok(Writing(None));
        }
        let out = out.to_path_buf();
        Ok(Writing(Some(std::thread::spawn(move || {
            copies.write(&out)
        }))))
    }

    /// Waits for the copies; their error if they failed.
    fn finish(self) -> Result<()> {
        match self.0.map(|h| h.join()) {
            None => Ok(()),
            Some(Ok(written)) => written.map(|_| ()),
            Some(Err(_)) => Err(Error::Invariant(
                "the thread writing the typed copies under _ingest/ panicked".into(),
            )),
        }
    }
}

/// Where a run's transactions come from.
pub(crate) enum Source {
    /// The typed Parquet one ingest wrote (`validate`).
    Typed,
    /// The typed store, which ingests only the files it lacks.
    Store(store::View),
    /// The Spark engine: the per-customer frames it computed, and the
    /// store it computed them from (`[spark] store = true`).
    Spark(Given, Option<store::View>),
}

impl Source {
    fn store(&self) -> Option<&store::View> {
        match self {
            Source::Store(v) | Source::Spark(_, Some(v)) => Some(v),
            _ => None,
        }
    }

    /// Waits for the store's commit, if it runs behind, before a snapshot
    /// is published ([`store::View::settle`]).
    fn settle(&self) -> Result<()> {
        self.store().map_or(Ok(()), store::View::settle)
    }
}

/// A run's or backfill's inputs as of `as_of`, for the snapshots
/// `snapshots` gives for the as-of date applied (the Spark engine computes
/// their frames with the ingest).
fn load(
    s: &RunSettings,
    as_of: Option<NaiveDate>,
    snapshots: &dyn Fn(NaiveDate) -> Vec<NaiveDate>,
) -> Result<(Ingested, Source)> {
    match &s.engine {
        Engine::Spark { remote } if s.config.spark.store => {
            let (ing, given, view) = spark_store_inputs(s, remote, as_of, snapshots)?;
            Ok((ing, Source::Spark(given, Some(view))))
        }
        Engine::Spark { remote } => {
            let (ing, given) = spark_inputs(s, remote, as_of, snapshots)?;
            Ok((ing, Source::Spark(given, None)))
        }
        Engine::Polars => {
            let (ing, view) = store_inputs(s, as_of)?;
            Ok((ing, Source::Store(view)))
        }
    }
}

/// The store brought up to date with the inputs, and the run's inputs from
/// it as of `as_of`.
fn store_inputs(s: &RunSettings, as_of: Option<NaiveDate>) -> Result<(Ingested, store::View)> {
    // Half the memory budget for building a new file's pre-aggregate
    // (staging and the duplicate check hold the rest).
    let limit = s
        .memory_limit
        .or_else(memory::default_limit)
        .unwrap_or(u64::MAX);
    // Not released at the end: the run's plan sets how much it keeps
    // from then on (`memory::kept_for_reuse`).
    crate::alloc::keep_freed(memory::kept_while_ingesting(s.memory_limit));
    // The customers file is checked beside the store's update (which
    // leaves a core idle at times) rather than after it.
    let (view, customers) = std::thread::scope(|scope| {
        let store = s.out.join(store::STORE_DIR);
        let ahead = scope.spawn(move || ingest::customers_ahead(&s.config, &store));
        let view = store::sync(&s.config, &s.out, s.rebuild_store, limit / 2);
        (view, ahead.join().ok().flatten())
    });
    let mut view = view?;
    std::fs::create_dir_all(ingest_dir(&s.out)).map_err(Error::io(ingest_dir(&s.out)))?;
    let ing = view.ingested(&s.config, as_of, customers)?;
    Ok((ing, view))
}

/// Ingest only: validate inputs and write typed Parquet under `<out>/_ingest/`.
pub fn run_ingest(s: &RunSettings) -> Result<(Ingested, PathBuf)> {
    let _lock = Lock::acquire(&s.out)?;
    let ing = ingest::ingest(&s.config, s.as_of, &ingest_dir(&s.out))?;
    let dir = write_ingested(&ing, &s.out)?;
    Ok((ing, dir))
}

/// The frames every scoring reads. The daily pre-aggregate is built from
/// the typed transactions Parquet once, so every scoring date (and every
/// backfill snapshot) reuses it.
/// On the lean plan the parts' work files go to a work directory under
/// `work` (removed with the frames).
/// With the `store`, the pre-aggregate comes from its per-file
/// pre-aggregates rather than from the typed rows; with Spark's frames
/// there is none (reading it would be a bug).
fn frames(
    ing: &Ingested,
    s: &RunSettings,
    plan: &memory::Plan,
    work: &Path,
    source: &Source,
) -> Result<Frames> {
    let cfg = &s.config;
    let has_margin = ing.transactions.has("margin_cents");
    let has_quantity = ing.transactions.has("quantity");
    let store = source.store();
    // Taken here whatever the plan, so that the lean plan lets it go.
    let fresh = store.and_then(store::View::take_fresh_daily);
    let tierings = match store {
        Some(v) => Some(std::sync::Arc::new(tiering_cache(ing, cfg, v)?)),
        None => None,
    };
    // A run's kept tierings are read while the pre-aggregate is built
    // (not on the lean plan: they would add to its peak).
    if let Some(t) = tierings.as_ref().filter(|_| !plan.lean()) {
        t.prefetch(&snapshot::aux_needed(ing.as_of, cfg, s.wanted()));
    }
    let daily = if let Source::Spark(..) = source {
        snapshot::Daily::Released
    } else if plan.lean() {
        drop(fresh);
        // The store's sorted per-file pre-aggregates, looked up once.
        let files = store.map(|v| v.daily_per_file()).transpose()?.flatten();
        let by_id = |part: Expr| -> Result<snapshot::PartRows> {
            use crate::io::Run;
            use snapshot::PartRows;
            let by_id = match (store, &files) {
                (_, Some(files)) => {
                    let files = files.iter().map(|f| f.clone().filter(part.clone()).run());
                    return Ok(PartRows::SortedFiles(files.collect::<PolarsResult<_>>()?));
                }
                (Some(v), None) => v.daily_by_id(Some(part))?,
                (None, None) => crate::daily::daily_by_id(
                    ing.transactions.scan()?.filter(part),
                    has_margin,
                    has_quantity,
                ),
            };
            Ok(PartRows::ById(by_id.run()?))
        };
        let parts = snapshot::Parts::build(
            &by_id,
            ing.customers.column("customer_id")?.str()?,
            plan.parts,
            io::WorkDir::create_tagged(work, "parts")?,
        )?;
        snapshot::Daily::Parts(std::sync::Arc::new(parts))
    } else {
        let d = match store {
            Some(v) => {
                // Days held by several files (no per-file merge) need the
                // summing path whatever was built. The fresh frames are
                // taken without a look at the files, which may still be
                // being written (`store::View::settle`).
                let merged = match (fresh, v.days_disjoint()) {
                    (Some(dfs), true) => snapshot::Daily::from_sorted_frames(dfs)?,
                    (None, true) => {
                        let files = v.daily_per_file()?.unwrap_or_default();
                        // On integers by the kept id runs; else by the ids.
                        let keyed = match v.daily_keyed_per_file()? {
                            Some(keyed) => snapshot::Daily::from_keyed_files(keyed)?,
                            None => None,
                        };
                        match keyed {
                            Some(d) => Some(d),
                            None => snapshot::Daily::from_sorted_files(files)?,
                        }
                    }
                    (_, false) => None,
                };
                match merged {
                    Some(d) => d,
                    None => snapshot::Daily::from_by_id(v.daily_by_id(None)?)?,
                }
            }
            None => snapshot::Daily::in_memory(ing.transactions.scan()?, has_margin, has_quantity)?,
        };
        memory::release_free();
        d
    };
    let mut f = Frames {
        daily,
        customers: crate::order::flag_sorted_ids(ing.customers.clone())?.lazy(),
        interactions: match &ing.interactions {
            // The columns scoring reads, from the ingest's files: held on
            // the fast plan (a backfill's snapshots read them again),
            // scanned by each part on the lean plan.
            Some(i) => {
                let read = i.scan()?.select(engagement::READ.map(col));
                match plan.lean() {
                    true => read,
                    false => read.run_whole()?.lazy(),
                }
            }
            None => engagement::empty_interactions(),
        },
        has_margin,
        has_quantity,
        attributes: [
            cfg.inputs.customers.attributes.clone(),
            cfg.inputs.customers.text_attributes.clone(),
        ]
        .concat(),
        given: match source {
            Source::Spark(g, _) => g.clone(),
            _ => Given::default(),
        },
        frugal: plan.lean(),
        wanted: s.wanted(),
        tierings,
    };
    if plan.lean() {
        // Read from work files from here on; see `release_inputs`.
        f.customers = f.keep(ing.customers.clone(), "customers")?;
    }
    Ok(f)
}

/// The earlier tierings kept in the store `v` for this run's inputs.
fn tiering_cache(ing: &Ingested, cfg: &Config, v: &store::View) -> Result<snapshot::TieringCache> {
    let inputs: Vec<String> = ["customers", "interactions"]
        .iter()
        .filter_map(|t| ing.report.get(*t))
        .flat_map(|r| r.files.iter().map(|f| f.xxh3_128.clone()))
        .collect();
    snapshot::TieringCache::new(v.dir(), cfg, &inputs, v.file_identities())
}

/// On the lean plan the frames read customers and interactions from work
/// files: the in-memory copies are dropped (10^7 customers' attributes
/// take hundreds of MB). Nothing after scoring reads them.
fn release_inputs(ing: &mut Ingested, plan: &memory::Plan) {
    if plan.lean() {
        ing.customers = DataFrame::empty();
        ing.interactions = None;
        memory::release_free();
    }
}

/// The plan for this run's data and `--memory-limit`. On the Spark engine
/// no transaction is held here: only the customers count.
fn plan(ing: &Ingested, s: &RunSettings, snapshots: usize) -> Result<memory::Plan> {
    let rows = match s.engine {
        Engine::Polars => ing.transactions.rows,
        Engine::Spark { .. } => 0,
    };
    let rows = memory::Rows {
        transactions: rows,
        customers: ing.customers.height(),
        interactions: ing.report.get("interactions").map_or(0, |r| r.rows_kept),
    };
    let p = match s.memory_limit {
        Some(limit) => memory::choose(rows, snapshots, Some(limit))?,
        None => memory::choose_unlimited(rows, snapshots, memory::default_limit()),
    };
    if p.lean() && s.memory_limit.is_none() {
        tracing::warn!(
            available_mib = p.limit_bytes.unwrap_or(0) >> 20,
            fast_mib = p.fast_estimate_bytes >> 20,
            "the fast plan would not fit in the memory available: lean plan"
        );
    }
    tracing::info!(
        plan = p.plan,
        parts = p.parts,
        estimate_mib = p.estimate_bytes >> 20,
        fast_mib = p.fast_estimate_bytes >> 20,
        "execution plan"
    );
    Ok(p)
}

fn outcome(ing: &Ingested, scored: &Scored, as_of: NaiveDate, snapshot: PathBuf) -> RunOutcome {
    RunOutcome {
        snapshot,
        as_of,
        customers: scored.customer_scores.height(),
        transactions: ing.transactions.rows,
        rejected: ing.report.values().map(TableReport::rejected_total).sum(),
    }
}

/// `tiering plan --emit spark-sql`: the customer-level plan as Spark SQL
/// over `<out>/_ingest/` (written by `tiering ingest` or a run), as of the
/// given date or the latest transaction there.
pub fn emit_plan(s: &RunSettings) -> Result<String> {
    use crate::plan::{CustomerPlan, Relation, Sources};
    let dir = ingest_dir(&s.out);
    let path = dir.join("transactions.parquet");
    if !path.exists() {
        return Err(Error::Usage(format!(
            "{}: no typed transactions; run `tiering ingest` with the same --out first",
            path.display()
        )));
    }
    let dir = dir.canonicalize().map_err(Error::io(&dir))?;
    let typed = ingest::typed_file(dir.join("transactions.parquet"))?;
    let as_of = match s.as_of {
        Some(d) => d,
        None => ingest::latest_date(typed.scan()?)?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no transactions; pass --as-of",
                typed.paths[0].display()
            ))
        })?,
    };
    let plan = CustomerPlan::new(
        &s.config,
        as_of,
        typed.has("margin_cents"),
        typed.has("quantity"),
    );
    let src = Sources {
        transactions: Relation::Parquet(typed.paths[0].display().to_string()),
        customers: dir.join("customers.parquet").display().to_string(),
        pre_aggregated: false,
    };
    let (core, buyers) = plan.spark_sql(&src)?;
    Ok(format!(
        "-- tiering {} customer-level plan as of {as_of} (Spark SQL).\n\n-- core: one row per customer (measures, RFM scores, pyramid).\n{core};\n\n-- buyers: per report year, customers who bought and their net amount.\n{buyers};\n",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Validate only: read and check everything, compute, publish nothing.
pub fn run_validate(s: &RunSettings) -> Result<RunOutcome> {
    // Nothing is published and the output root is not touched: the typed
    // transactions go to a scratch directory in the temporary folder,
    // removed afterwards (or by the next validate, if this one is killed).
    let scratch = io::WorkDir::scratch("validate")?;
    let mut ing = ingest::ingest(&s.config, s.as_of, scratch.path())?;
    io::failpoint("validate_after_ingest");
    let plan = plan(&ing, s, 1)?;
    let f = frames(&ing, s, &plan, scratch.path(), &Source::Typed)?;
    release_inputs(&mut ing, &plan);
    let scored = snapshot::compute(&f, ing.as_of, &s.config)?;
    Ok(outcome(&ing, &scored, ing.as_of, PathBuf::new()))
}

/// Fails fast, before any work, when a snapshot exists and may not be replaced.
fn refuse_existing(s: &RunSettings, dates: &[NaiveDate]) -> Result<()> {
    for d in dates {
        let target = s.out.join(publish::snapshot_dir_name(*d));
        if target.exists() && !s.overwrite {
            return Err(Error::SnapshotExists { path: target });
        }
    }
    Ok(())
}

/// How a snapshot was made, for its manifest.
struct How<'a> {
    backfill: Option<&'a BackfillInfo>,
    store: Option<&'a store::Summary>,
    plan: &'a memory::Plan,
    sampler: &'a memory::Sampler,
}

/// Writes one snapshot's tables, manifest and `_SUCCESS` into `snap`
/// (begun by the caller; it may hold `customer_scores` already, written
/// beside the summaries), then renames it into place.
fn publish(
    s: &RunSettings,
    ing: &mut Ingested,
    scored: &mut Scored,
    snap: Snapshot,
    mut timings: Timings,
    how: &How,
) -> Result<PathBuf> {
    let (backfill, plan, sampler) = (how.backfill, how.plan, how.sampler);
    let as_of = ing.as_of;
    let detail = crate::ingest::check_listed(&ing.rejects, &ing.report)?;
    scored.invariants.push(crate::snapshot::Invariant {
        name: "every row set aside listed once in rejects".into(),
        detail,
    });
    let t = Instant::now();
    let out = s.config.publish.table_out();
    if s.wants("customer_scores") && !snap.has("customer_scores") {
        snap.write_with("customer_scores", |dir| {
            scored
                .customer_scores
                .write_table(dir, "customer_scores", out)
        })?;
    }
    write_summaries(s, &snap, scored, out)?;
    let mut rejects = ing.rejects.clone();
    if s.wants("rejects") {
        snap.write("rejects", &mut rejects, out)?;
    }
    timings.lap("publish", t);
    let mut config = s.config.clone();
    config.as_of = Some(as_of);
    let manifest = Manifest {
        tool: "tiering",
        version: env!("CARGO_PKG_VERSION"),
        git_revision: env!("TIERING_GIT_REV"),
        as_of,
        backfill,
        config: &config,
        inputs: &ing.report,
        store: how.store,
        unknown_customers: scored.unknown_customers,
        rfm: &scored.rfm_cuts,
        pyramid: pyramid_applied(&s.config, &scored.pyramid)?,
        migration_compared_to: scored.migration_compared_to,
        memory: plan,
        engine: &s.engine,
        transaction_rows_read_locally: ing.transaction_rows_read_locally,
        invariants: &scored.invariants,
        outputs: &snap.tables(),
        timings_ms: timings.0.iter().cloned().collect(),
        peak_rss_bytes: memory::peak_rss_bytes(),
        peak_anon_bytes: sampler.peak_bytes(),
    };
    let value = serde_json::to_value(&manifest)?;
    let json = serde_json::to_string_pretty(&value)?;
    if s.tables.is_some() {
        // The report shows every table; a partial snapshot has none.
        return snap.commit(&json);
    }
    let mut tables: BTreeMap<String, DataFrame> = scored
        .tables()
        .into_iter()
        .map(|(n, df)| (n, df.clone()))
        .collect();
    tables.insert("rejects".into(), rejects);
    let t = Instant::now();
    let html = crate::report::render(&crate::report::ReportInput {
        manifest: &value,
        tables,
    })?;
    snap.write_file("report.html", html.as_bytes())?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "report written");
    snap.commit(&json)
}

/// Writes the summaries' tables `s` wants that `snap` does not hold yet.
fn write_summaries(
    s: &RunSettings,
    snap: &Snapshot,
    scored: &mut Scored,
    out: io::TableOut,
) -> Result<()> {
    for (name, df) in scored.tables() {
        if s.wants(&name) && !snap.has(&name) {
            snap.write(&name, df, out)?;
        }
    }
    Ok(())
}

/// The whole pipeline for one snapshot.
pub fn run(s: &RunSettings) -> Result<RunOutcome> {
    let sampler = memory::Sampler::start();
    let mut timings = Timings::default();
    let t = Instant::now();
    let _lock = Lock::acquire(&s.out)?;
    refuse_existing(s, &s.as_of.into_iter().collect::<Vec<_>>())?;
    let progress = crate::progress::Stages::new(s.progress);
    progress.stage("ingest");
    let (mut ing, source) = load(s, s.as_of, &|d| vec![d])?;
    let t = timings.lap("ingest", t);
    tracing::info!(
        stage = "ingest",
        ms = timings.last(),
        rows = ing.transactions.rows,
        "ingested"
    );
    crate::io::failpoint("after_ingest");
    progress.stage("score");
    // The typed Parquet is written while scoring starts from the same
    // frames in memory (no second read of what was just written).
    let plan = plan(&ing, s, 1)?;
    let _kept = crate::alloc::Keeping::up_to(memory::kept_for_reuse(&plan));
    let copies = Writing::start(&ing, &s.out, plan.lean())?;
    let mut f = frames(&ing, s, &plan, &ingest_dir(&s.out), &source)?;
    release_inputs(&mut ing, &plan);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "daily built");
    // The snapshot is begun now so that `customer_scores` is written while
    // the summaries are computed (one core is mostly idle in them); a
    // failure before the commit removes it as before.
    let snap = Snapshot::begin(&s.out, ing.as_of, s.overwrite)?;
    let out = s.config.publish.table_out();
    let mut write_scores = |mut df: DataFrame| snap.write("customer_scores", &mut df, out);
    let alongside: Option<snapshot::Alongside> =
        s.wants("customer_scores").then_some(&mut write_scores);
    // The summaries' tables are written as soon as they are done, while
    // `customer_scores` may still be being written (a 10^7 night: its
    // writer's last ~0.5 s had a core to itself).
    let mut then = |scored: &mut Scored| write_summaries(s, &snap, scored, out);
    let mut scored =
        snapshot::compute_once(&mut f, ing.as_of, &s.config, alongside, Some(&mut then))?;
    if let Some(c) = &f.tierings {
        // A run of a few tables (`--tables`) reads fewer tierings than a
        // full one: it leaves the others for the next full run.
        c.finish(f.wanted == snapshot::Wanted::ALL)?;
    }
    timings.lap("score", t);
    tracing::info!(
        stage = "score",
        ms = timings.last(),
        customers = scored.customer_scores.height(),
        "scored"
    );
    crate::io::failpoint("after_score");

    copies.finish()?;
    source.settle()?;
    progress.stage("publish");
    let as_of = ing.as_of;
    let how = How {
        backfill: None,
        store: source.store().map(|v| &v.summary),
        plan: &plan,
        sampler: &sampler,
    };
    let path = publish(s, &mut ing, &mut scored, snap, timings, &how)?;
    progress.finish();
    tracing::info!(stage = "publish", snapshot = %path.display(), "published");
    Ok(outcome(&ing, &scored, as_of, path))
}
