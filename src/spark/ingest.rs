//! The transactions ingest on Spark, under the local contract: the column
//! mapping, the row checks and their reasons (in the order of
//! [`crate::ingest::checks_for`]), cents rounded half away from zero, the
//! first of duplicate txn_ids kept by file order then line, rows after the
//! as-of date set aside. Spark reads the files, checks every row once into
//! a staging area, and writes the customer × day pre-aggregate there; only
//! counts and the rejects come back.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::{Config, Encoding, Format, InputFile};
use crate::contract::reason;
use crate::error::{Error, Result};
use crate::ingest::{InputFileInfo, TableReport, checks_for, enforce_ratio, resolve_columns};
use crate::io::Run;
use crate::plan::{CustomerPlan, Kind, Relation, date, quoted_path, text};
use crate::spark::{Spark, SparkDaily};

/// What the Spark ingest leaves behind.
pub struct SparkIngest {
    pub report: TableReport,
    /// The transactions' rejects: table, file, line, reason, value.
    pub rejects: DataFrame,
    pub as_of: NaiveDate,
    /// The customer × day pre-aggregate of the kept rows (a directory of
    /// Parquet files Spark wrote, in the plan's `daily` shape).
    pub daily: SparkDaily,
}

/// Unicode's White_Space characters, what Rust's `str::trim` removes.
const WHITE_SPACE: &[char] = &[
    '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}',
    '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}',
    '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

/// Whitespace trimmed (as Rust's `trim`), empty → null. `btrim` works on
/// Spark's UTF-8 bytes, where a regular expression would make a Java
/// string of every value.
fn trimmed(x: &str) -> String {
    let set: String = WHITE_SPACE.iter().collect();
    format!("NULLIF(btrim({x}, {}), '')", text(&set))
}

/// Trimmed text as a double, or null: what polars' text → f64 cast
/// accepts (inf and NaN aside, which are not amounts either way). Spark's
/// cast also takes Java's forms, refused here by their letters: a `d`/`f`
/// type suffix and hexadecimal (`0x1p3`).
fn number(t: &str) -> String {
    let java_only = ["%d", "%D", "%f", "%F", "%x%", "%X%"]
        .iter()
        .map(|p| format!("{t} LIKE '{p}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!("CASE WHEN {java_only} THEN NULL ELSE try_cast({t} AS DOUBLE) END")
}

/// A double as integer cents, rounded half away from zero; non-finite or
/// absurd (≥ 9e15 cents) values are null ([`crate::ingest::cents_from`]).
fn cents(x: &str) -> String {
    let c = format!("ROUND(CAST({x} AS DOUBLE) * CAST(100 AS DOUBLE), 0)");
    format!("CASE WHEN ABS({c}) < CAST(9.0e15 AS DOUBLE) THEN CAST({c} AS BIGINT) END")
}

/// Trimmed amount text with currency symbols and separators removed
/// ([`crate::ingest::amount_text`]).
fn amount_text(t: &str, input: &InputFile) -> String {
    let mut e = t.to_string();
    for sym in &input.currency_symbols {
        e = format!("replace({e}, {}, '')", text(sym));
    }
    if let Some(sep) = input.thousands_separator {
        e = format!("replace({e}, {}, '')", text(&sep.to_string()));
    }
    if input.decimal_comma {
        e = format!("replace({e}, ',', '.')");
    }
    trimmed(&e)
}

/// A chrono date format as a Java `DateTimeFormatter` pattern, parsing the
/// same texts: `%Y %m %d %H %M %S %T` (one or more digits, as chrono reads
/// them), everything else literal. Other specifiers cannot be translated.
pub fn java_format(f: &str) -> Result<String> {
    let mut out = String::new();
    let mut literal = String::new();
    let flush = |literal: &mut String, out: &mut String| {
        if !literal.is_empty() {
            out.push('\'');
            out.push_str(&literal.replace('\'', "''"));
            out.push('\'');
            literal.clear();
        }
    };
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let pattern = match chars.next() {
            Some('Y') => "y",
            Some('m') => "M",
            Some('d') => "d",
            Some('H') => "H",
            Some('M') => "m",
            Some('S') => "s",
            Some('T') => "H:m:s",
            Some('%') => {
                literal.push('%');
                continue;
            }
            other => {
                return Err(Error::Usage(format!(
                    "date format '{f}': %{} cannot be read by the Spark engine (it reads %Y %m %d %H %M %S %T)",
                    other.map(String::from).unwrap_or_default()
                )));
            }
        };
        flush(&mut literal, &mut out);
        out.push_str(pattern);
    }
    flush(&mut literal, &mut out);
    Ok(out)
}

/// One input as Spark reads it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where Spark reads it: an absolute local path or a URI.
    pub path: String,
    /// The file name the rejects and the manifest show: the local path as
    /// the local ingest shows it, or (`None`, a URI that may be a glob)
    /// each file's name as Spark reports it.
    pub shown: Option<String>,
    pub format: Format,
}

/// A path Spark resolves itself (`file:`, `hdfs:`, `s3a:`, …), never listed
/// or opened here.
pub fn is_uri(path: &str) -> bool {
    path.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// The sources of an input: local files are listed (not opened) in the
/// local ingest's order; a URI goes to Spark as given.
pub fn sources(input: &InputFile) -> Result<Vec<Source>> {
    if is_uri(&input.path) {
        return Ok(vec![Source {
            path: input.path.clone(),
            shown: None,
            format: crate::io::format_of(Path::new(&input.path), input),
        }]);
    }
    let mut out = Vec::new();
    for file in crate::io::expand_inputs("transactions", &input.path)? {
        let meta = std::fs::metadata(&file).map_err(Error::io(&file))?;
        if meta.len() == 0 {
            return Err(Error::EmptyFile { file });
        }
        let abs = file.canonicalize().map_err(Error::io(&file))?;
        out.push(Source {
            path: abs.display().to_string(),
            shown: Some(file.to_string_lossy().into_owned()),
            format: crate::io::format_of(&file, input),
        });
    }
    Ok(out)
}

/// The view that reads source `i`.
fn source_view(i: usize, src: &Source, input: &InputFile, multi_line: bool) -> Result<String> {
    let path = text(&src.path);
    Ok(match src.format {
        Format::Parquet => {
            format!(
                "CREATE OR REPLACE TEMPORARY VIEW __tiering_src_{i} USING parquet OPTIONS (path {path})"
            )
        }
        Format::Csv => {
            let encoding = match input.encoding {
                Encoding::Utf8 | Encoding::Utf8Lossy => "UTF-8",
                Encoding::Gbk => "GBK",
                Encoding::Gb18030 => "GB18030",
            };
            format!(
                "CREATE OR REPLACE TEMPORARY VIEW __tiering_src_{i} USING csv OPTIONS (path {path}, header 'true', sep {sep}, encoding '{encoding}', quote '\"', escape '\"', mode 'PERMISSIVE', multiLine '{multi_line}', inferSchema 'false')",
                sep = text(&input.delimiter.to_string()),
            )
        }
    })
}

fn is_numeric(spark_type: &str) -> bool {
    [
        "tinyint", "smallint", "int", "bigint", "float", "double", "decimal",
    ]
    .iter()
    .any(|t| spark_type == *t || spark_type.starts_with("decimal"))
}

/// The checked rows of source `i` from its columns (name → Spark type):
/// bookkeeping (`file_no`, `file`, the split `__f`/`__b` and row id `__m`
/// that order rows and give lines), the parsed values, the raw text of
/// checked values where a reject reports it, and `code` (0 = valid, else 1
/// + the first failed check). Also returns the canonical columns found.
pub fn checked_sql(
    i: usize,
    src: &Source,
    columns: &[(String, String)],
    input: &InputFile,
    formats: &[String],
) -> Result<(String, Vec<&'static str>)> {
    let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
    let file = Path::new(src.shown.as_deref().unwrap_or(&src.path));
    let found: BTreeMap<&str, String> = resolve_columns(&names, file, "transactions", input)?
        .into_iter()
        .filter_map(|(c, raw)| c.map(|c| (c, raw)))
        .collect();
    let kind = |canon: &str| {
        columns
            .iter()
            .find(|c| Some(&c.0) == found.get(canon))
            .map_or("string", |c| c.1.as_str())
            .to_string()
    };
    let raw = |canon: &str| format!("`{}`", found[canon].replace('`', "``"));
    let text_of = |canon: &str| trimmed(&format!("CAST({} AS STRING)", raw(canon)));
    let ts_kind = kind("ts");
    let typed_date = ts_kind == "date" || ts_kind.starts_with("timestamp");
    let ts = if typed_date {
        "__tsd".to_string()
    } else {
        let tries = formats
            .iter()
            .map(|f| Ok(format!("try_to_date(__ts, {})", text(&java_format(f)?))))
            .collect::<Result<Vec<_>>>()?;
        match tries.len() {
            0 => "CAST(NULL AS DATE)".to_string(),
            1 => tries[0].clone(),
            _ => format!("COALESCE({})", tries.join(", ")),
        }
    };
    let (ts_text, ts_date) = if typed_date {
        (
            format!("CAST({} AS STRING)", raw("ts")),
            format!("CAST({} AS DATE)", raw("ts")),
        )
    } else {
        (text_of("ts"), "CAST(NULL AS DATE)".to_string())
    };
    // Each value is worked out in its own step and named, so that Spark
    // computes it once per row (an expression used twice inside one
    // projection is computed twice).
    // Step 1, the raw text a reject reports (trimmed), per value column.
    let null_text = "CAST(NULL AS STRING)".to_string();
    let text1 = |canon: &str| {
        if !found.contains_key(canon) {
            null_text.clone()
        } else if is_numeric(&kind(canon)) {
            format!("CAST({} AS STRING)", raw(canon))
        } else {
            text_of(canon)
        }
    };
    // Step 2, the text a number is read from, or the number itself.
    let numeric = |canon: &str| found.contains_key(canon) && is_numeric(&kind(canon));
    let text2 = |canon: &str, money: bool| {
        let t = format!("__{canon}");
        if numeric(canon) || !money {
            t
        } else {
            amount_text(&t, input)
        }
    };
    // Step 3, the number: the raw number, or the text read as one.
    let number3 = |canon: &str| {
        if !found.contains_key(canon) {
            "CAST(NULL AS DOUBLE)".to_string()
        } else if numeric(canon) {
            format!("CAST({} AS DOUBLE)", raw(canon))
        } else {
            number(&format!("__{canon}_t"))
        }
    };
    let shown = match &src.shown {
        Some(s) => text(s),
        None => "input_file_name()".into(),
    };
    let first_line = match src.format {
        Format::Csv => 2,
        Format::Parquet => 1,
    };
    let checks = [
        "customer_id IS NULL",
        "txn_id IS NULL",
        "__ts IS NULL",
        "ts IS NULL",
        "__amount IS NULL",
        "amount_cents IS NULL",
    ];
    let mut code = "CASE".to_string();
    for (n, c) in checks.iter().enumerate() {
        code.push_str(&format!(" WHEN {c} THEN {}", n + 1));
    }
    code.push_str(" ELSE 0 END");
    let step1 = format!(
        "SELECT {i} AS file_no, {shown} AS file, input_file_name() AS __f, input_file_block_start() AS __b,\n  \
           monotonically_increasing_id() AS __m, {first_line} AS __first,\n  \
           {cid} AS customer_id, {txn} AS txn_id, {ts_text} AS __ts, {ts_date} AS __tsd,\n  \
           {amount} AS __amount, {margin} AS __margin, {quantity} AS __quantity\n\
         FROM __tiering_src_{i}",
        cid = text_of("customer_id"),
        txn = text_of("txn_id"),
        amount = text1("amount"),
        margin = text1("margin"),
        quantity = text1("quantity"),
    );
    let step2 = format!(
        "SELECT *, {ts} AS ts, {a} AS __amount_t, {m} AS __margin_t, {q} AS __quantity_t FROM ({step1})",
        a = text2("amount", true),
        m = text2("margin", true),
        q = text2("quantity", false),
    );
    let step3 = format!(
        "SELECT *, {a} AS __amount_n, {m} AS __margin_n, {q} AS quantity FROM ({step2})",
        a = number3("amount"),
        m = number3("margin"),
        q = number3("quantity"),
    );
    let step4 = format!(
        "SELECT *, {a} AS amount_cents, {m} AS margin_cents FROM ({step3})",
        a = cents("__amount_n"),
        m = cents("__margin_n"),
    );
    // The raw text survives only where a reject or a warning reads it.
    let sql = format!(
        "SELECT file_no, file, __f, __b, __m, __first, customer_id, txn_id, ts, amount_cents, margin_cents, quantity,\n  \
           CASE WHEN code <> 0 THEN __ts END AS __ts, CASE WHEN code <> 0 THEN __amount END AS __amount,\n  \
           CASE WHEN margin_cents IS NULL THEN __margin END AS __margin,\n  \
           CASE WHEN quantity IS NULL THEN __quantity END AS __quantity, code\n\
         FROM (SELECT *, {code} AS code FROM ({step4}))"
    );
    Ok((sql, found.into_keys().collect()))
}

/// Rows `code` rejected, duplicates and rows after the as-of date, with
/// their lines: a row's line is the rows before its split in the same file,
/// plus its place in the split, plus the header's.
fn rejects_sql(as_of: NaiveDate) -> String {
    let mut reason = "CASE code".to_string();
    let mut value = "CASE code".to_string();
    for (n, (why, column)) in checks_for("transactions").iter().enumerate() {
        reason.push_str(&format!(" WHEN {} THEN {}", n + 1, text(why)));
        value.push_str(&format!(" WHEN {} THEN {column}", n + 1));
    }
    reason.push_str(" END");
    value.push_str(" END");
    let on = "c.file_no = d.file_no AND c.__f = d.__f AND c.__b = d.__b AND c.__m = d.__m";
    format!(
        "SELECT 'transactions' AS `table`, r.file, CAST(o.before + (r.__m - o.m0) + r.__first AS BIGINT) AS line, r.reason, r.value\n\
         FROM (\n  \
           SELECT file_no, file, __f, __b, __m, __first, {reason} AS reason, {value} AS value FROM __tiering_checked WHERE code <> 0\n  \
           UNION ALL SELECT c.file_no, c.file, c.__f, c.__b, c.__m, c.__first, {dup}, CAST(NULL AS STRING) FROM __tiering_checked c JOIN __tiering_dups d ON {on}\n  \
           UNION ALL SELECT file_no, file, __f, __b, __m, __first, {after}, CAST(NULL AS STRING) FROM __tiering_kept WHERE ts > {as_of}\n\
         ) r JOIN __tiering_offsets o ON r.file_no = o.file_no AND r.__f = o.__f AND r.__b = o.__b",
        dup = text(reason::DUPLICATE_TXN),
        after = text(reason::AFTER_AS_OF),
        as_of = date(as_of),
    )
}

/// The file order of rows: source, file, split, row.
const ORDER: &str = "file_no, __f, __b, __m";

/// Reads, checks and pre-aggregates the transactions on Spark. `staging`
/// is a directory both Spark and this process name the same way (a local
/// path for a local Spark, else a URI Spark writes); it holds `checked/`
/// (every row once, checked) and `daily/` (the pre-aggregate).
pub fn ingest(
    spark: &Spark,
    cfg: &Config,
    as_of: Option<NaiveDate>,
    staging: &str,
) -> Result<SparkIngest> {
    let input = &cfg.inputs.transactions;
    let srcs = sources(input)?;
    let mut selects = Vec::new();
    let mut has = (false, false);
    for (i, src) in srcs.iter().enumerate() {
        spark.execute(&source_view(i, src, input, cfg.spark.quoted_line_breaks)?)?;
        let described = spark.query(
            &format!("DESCRIBE QUERY SELECT * FROM __tiering_src_{i}"),
            &[("col_name", Kind::Text), ("data_type", Kind::Text)],
        )?;
        let names = described.column("col_name")?.str()?;
        let types = described.column("data_type")?.str()?;
        let columns: Vec<(String, String)> = names
            .iter()
            .zip(types.iter())
            .map(|(n, t)| {
                (
                    n.unwrap_or("").to_string(),
                    t.unwrap_or("string").to_lowercase(),
                )
            })
            .collect();
        let (sql, found) = checked_sql(i, src, &columns, input, &input.date_formats)?;
        has.0 |= found.contains(&"margin");
        has.1 |= found.contains(&"quantity");
        selects.push(sql);
    }
    let (has_margin, has_quantity) = has;
    let checked = format!("{staging}/checked");
    spark.execute(&format!(
        "INSERT OVERWRITE DIRECTORY {} USING parquet {}",
        text(&checked),
        selects.join("\nUNION ALL\n")
    ))?;
    spark.execute(&format!(
        "CREATE OR REPLACE TEMPORARY VIEW __tiering_checked AS SELECT * FROM parquet.{}",
        quoted_path(&checked)?
    ))?;

    // Counts per file and check, and the latest valid date.
    let counts = spark.query(
        "SELECT file, MIN(file_no) AS file_no, code, COUNT(*) AS n, MAX(ts) AS latest FROM __tiering_checked GROUP BY file, code ORDER BY file_no, file, code",
        &[
            ("file", Kind::Text),
            ("file_no", Kind::Int),
            ("code", Kind::Int),
            ("n", Kind::Int),
            ("latest", Kind::Day),
        ],
    )?;
    let mut report = TableReport::default();
    let mut latest: Option<NaiveDate> = None;
    let checks = checks_for("transactions");
    let mut rows_by_file: Vec<(String, usize)> = Vec::new();
    for row in 0..counts.height() {
        let file = counts
            .column("file")?
            .str()?
            .get(row)
            .unwrap_or("")
            .to_string();
        let code = counts.column("code")?.i64()?.get(row).unwrap_or(0);
        let n = counts.column("n")?.i64()?.get(row).unwrap_or(0) as usize;
        match rows_by_file.last_mut() {
            Some((f, total)) if *f == file => *total += n,
            _ => rows_by_file.push((file, n)),
        }
        report.rows_read += n;
        if code == 0 {
            latest = counts
                .column("latest")?
                .date()?
                .phys
                .get(row)
                .map(crate::units::from_epoch_days)
                .max(latest);
        } else if let Some((why, _)) = checks.get(code as usize - 1) {
            *report.rejected.entry(why.to_string()).or_default() += n;
        }
    }
    for (file, rows) in rows_by_file {
        let meta = (!is_uri(&file))
            .then(|| std::fs::metadata(&file).ok())
            .flatten();
        report.files.push(InputFileInfo {
            path: file.into(),
            bytes: meta.as_ref().map_or(0, |m| m.len()),
            modified_unix: meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            // Hashing would read the file here; Spark read it instead.
            xxh3_128: String::new(),
            rows,
        });
    }
    enforce_ratio(
        "transactions",
        &input.path,
        &report,
        cfg.ingest.max_reject_ratio,
    )?;
    let as_of = match as_of.or(latest) {
        Some(d) => d,
        None => {
            return Err(Error::Usage(format!(
                "{}: no valid transaction to take the as-of date from; pass --as-of",
                input.path
            )));
        }
    };

    // Later duplicates of a txn_id (among valid rows, before the as-of
    // cut, as locally); only repeated ids are ranked.
    spark.execute(&format!(
        "CREATE OR REPLACE TEMPORARY VIEW __tiering_dups AS SELECT file_no, __f, __b, __m FROM (\n  \
           SELECT c.file_no, c.__f, c.__b, c.__m, ROW_NUMBER() OVER (PARTITION BY c.txn_id ORDER BY {ORDER}) AS rn\n  \
           FROM __tiering_checked c LEFT SEMI JOIN (SELECT txn_id FROM __tiering_checked WHERE code = 0 GROUP BY txn_id HAVING COUNT(*) > 1) r ON c.txn_id = r.txn_id\n  \
           WHERE c.code = 0) WHERE rn > 1"
    ))?;
    spark.execute(
        "CREATE OR REPLACE TEMPORARY VIEW __tiering_kept AS SELECT c.* FROM __tiering_checked c LEFT ANTI JOIN __tiering_dups d ON c.file_no = d.file_no AND c.__f = d.__f AND c.__b = d.__b AND c.__m = d.__m WHERE c.code = 0",
    )?;
    spark.execute(
        "CREATE OR REPLACE TEMPORARY VIEW __tiering_offsets AS SELECT file_no, __f, __b, m0, SUM(n) OVER (PARTITION BY file_no, __f ORDER BY __b ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - n AS before FROM (SELECT file_no, __f, __b, MIN(__m) AS m0, COUNT(*) AS n FROM __tiering_checked GROUP BY file_no, __f, __b)",
    )?;

    // The pre-aggregate of the kept rows on or before the as-of date, with
    // the row count and the optional values that did not parse.
    let plan = CustomerPlan::new(cfg, as_of, has_margin, has_quantity);
    let daily = format!("{staging}/daily");
    spark.execute(&format!(
        "INSERT OVERWRITE DIRECTORY {path} USING parquet SELECT customer_id, ts, {aggs},\n  \
           COUNT(*) AS txns, SUM(CASE WHEN __margin IS NOT NULL THEN 1 ELSE 0 END) AS bad_margin,\n  \
           SUM(CASE WHEN __quantity IS NOT NULL THEN 1 ELSE 0 END) AS bad_quantity\n\
         FROM __tiering_kept WHERE ts <= {as_of} GROUP BY customer_id, ts",
        path = text(&daily),
        aggs = plan.daily_aggregates().join(", "),
        as_of = date(as_of),
    ))?;
    let totals = spark.query(
        &format!(
            "SELECT (SELECT CAST(COALESCE(SUM(txns), 0) AS BIGINT) FROM parquet.{d}) AS kept,\n  \
               (SELECT CAST(COALESCE(SUM(bad_margin), 0) AS BIGINT) FROM parquet.{d}) AS bad_margin,\n  \
               (SELECT CAST(COALESCE(SUM(bad_quantity), 0) AS BIGINT) FROM parquet.{d}) AS bad_quantity,\n  \
               (SELECT COUNT(*) FROM __tiering_dups) AS dups,\n  \
               (SELECT COUNT(*) FROM __tiering_kept WHERE ts > {as_of}) AS after",
            d = quoted_path(&daily)?,
            as_of = date(as_of),
        ),
        &[
            ("kept", Kind::Int),
            ("bad_margin", Kind::Int),
            ("bad_quantity", Kind::Int),
            ("dups", Kind::Int),
            ("after", Kind::Int),
        ],
    )?;
    let total =
        |c: &str| -> Result<usize> { Ok(totals.column(c)?.i64()?.get(0).unwrap_or(0) as usize) };
    report.rows_kept = total("kept")?;
    report.duplicates_collapsed = total("dups")?;
    report.excluded_after_as_of = total("after")?;
    for (c, label) in [
        ("bad_margin", "unparseable margin"),
        ("bad_quantity", "unparseable quantity"),
    ] {
        if total(c)? > 0 {
            report.warnings.insert(label.to_string(), total(c)?);
        }
    }
    let rejects = spark
        .query(
            &rejects_sql(as_of),
            &[
                ("table", Kind::Text),
                ("file", Kind::Text),
                ("line", Kind::Int),
                ("reason", Kind::Text),
                ("value", Kind::Text),
            ],
        )?
        .lazy()
        .with_column(col("line").cast(DataType::UInt64))
        .run()?;
    Ok(SparkIngest {
        report,
        rejects,
        as_of,
        daily: SparkDaily {
            relation: Relation::Parquet(daily),
            has_margin,
            has_quantity,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrono_formats_become_java_patterns() {
        assert_eq!(java_format("%Y-%m-%d").unwrap(), "y'-'M'-'d");
        assert_eq!(
            java_format("%Y-%m-%dT%H:%M:%S").unwrap(),
            "y'-'M'-'d'T'H':'m':'s"
        );
        assert_eq!(java_format("%d.%m.%Y %T").unwrap(), "d'.'M'.'y' 'H:m:s");
        assert_eq!(java_format("it's %Y").unwrap(), "'it''s 'y");
        let e = java_format("%b %d %Y").unwrap_err().to_string();
        assert!(e.contains("'%b %d %Y'") && e.contains("%b"), "{e}");
    }

    #[test]
    fn the_trimmed_characters_are_rusts_whitespace() {
        let rust: Vec<char> = (0..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        assert_eq!(rust, WHITE_SPACE);
    }

    #[test]
    fn uris_are_told_from_local_paths() {
        assert!(is_uri("hdfs://nn/data/t.csv"));
        assert!(is_uri("s3a://bucket/t/*.csv"));
        assert!(is_uri("file:/data/t.csv"));
        assert!(!is_uri("/data/t.csv"));
        assert!(!is_uri("data/t:1.csv"));
        assert!(!is_uri("C:\\data\\t.csv"));
    }

    #[test]
    fn the_checks_follow_the_mapping_and_the_amount_options() {
        let input = InputFile {
            path: "t.csv".into(),
            thousands_separator: Some(','),
            currency_symbols: vec!["¥".into()],
            columns: [("amount".to_string(), "金额".to_string())].into(),
            ..Default::default()
        };
        let src = Source {
            path: "/d/t.csv".into(),
            shown: Some("d/t.csv".into()),
            format: Format::Csv,
        };
        let cols = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| (n.to_string(), "string".to_string()))
                .collect()
        };
        let sql = checked_sql(
            0,
            &src,
            &cols(&["\u{feff}customer_id", "txn_id", "ts", "金额"]),
            &input,
            &["%Y-%m-%d".to_string()],
        )
        .unwrap()
        .0;
        assert!(sql.contains("`\u{feff}customer_id`"), "{sql}");
        assert!(sql.contains("replace(replace("), "{sql}");
        assert!(sql.contains(r"try_to_date(__ts, 'y\'-\'M\'-\'d')"), "{sql}");
        assert!(sql.contains("'d/t.csv' AS file"));
        // The amount column's mapped name is required.
        let e = checked_sql(
            0,
            &src,
            &cols(&["customer_id", "txn_id", "ts", "amount"]),
            &input,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("d/t.csv") && e.contains("金额"), "{e}");
    }
}
