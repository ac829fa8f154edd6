//! Reading one input file: canonical column selection, delimiter hints,
//! the per-file facts the manifest records (size, mtime, XXH3).

use std::path::Path;

use polars::prelude::*;

use crate::config::{Format, InputFile};
use crate::contract::{canonical_columns, required};
use crate::error::{Error, Result};
use crate::ingest::stage::check_file;
use crate::ingest::{InputFileInfo, TableReport};
use crate::io::{self, LINE};

/// Selects and renames a raw frame's columns to canonical names; a missing
/// required column is an error naming the file and the raw column. Also
/// gives the canonical names of the raw columns `trimmed`.
pub(super) fn select_canonical(
    mut lf: LazyFrame,
    file: &Path,
    table: &str,
    input: &InputFile,
    trimmed: &[PlSmallStr],
) -> Result<(LazyFrame, Vec<&'static str>, Schema, Vec<&'static str>)> {
    let header = lf.collect_schema().map_err(|e| io::read_error(file, &e))?;
    let names: Vec<String> = header
        .iter_names()
        .map(|s| s.to_string())
        .filter(|s| s != LINE)
        .collect();
    let mut exprs = vec![col(LINE).cast(DataType::UInt64)];
    let (mut present, mut clean) = (Vec::new(), Vec::new());
    for (canon, actual) in resolve_columns(&names, file, table, input)? {
        exprs.push(match canon {
            Some(c) => {
                present.push(c);
                if trimmed.iter().any(|t| t.as_str() == actual) {
                    clean.push(c);
                }
                col(actual.as_str()).alias(c)
            }
            None => col(actual.as_str()),
        });
    }
    let mut selected = lf.select(exprs);
    let schema = selected.collect_schema()?.as_ref().clone();
    Ok((selected, present, schema, clean))
}

/// The header's columns a table reads: (canonical name, header name) for
/// each canonical column found, then (None, name) for each customer
/// attribute. A missing required (or explicitly mapped) column or
/// attribute is an error naming the file and the raw column; a UTF-8 BOM
/// glued to the first header name is tolerated.
pub(crate) fn resolve_columns(
    names: &[String],
    file: &Path,
    table: &str,
    input: &InputFile,
) -> Result<Vec<(Option<&'static str>, String)>> {
    let mut out = Vec::new();
    for &canon in &canonical_columns(table) {
        let raw = input
            .columns
            .get(canon)
            .map(String::as_str)
            .unwrap_or(canon);
        if let Some(actual) = names
            .iter()
            .find(|n| n.trim_start_matches('\u{feff}') == raw)
        {
            out.push((Some(canon), actual.clone()));
        } else if required(table).contains(&canon) || input.columns.contains_key(canon) {
            let mapped = if raw == canon {
                String::new()
            } else {
                format!(" (mapped to '{canon}')")
            };
            return Err(Error::MissingColumn {
                file: file.to_path_buf(),
                column: raw.to_string(),
                hint: format!("{mapped}{}", delimiter_hint(names, input.delimiter)),
            });
        }
    }
    for a in input.attributes.iter().chain(&input.text_attributes) {
        if !names.iter().any(|n| n == a) {
            return Err(Error::MissingColumn {
                file: file.to_path_buf(),
                column: a.clone(),
                hint: format!(
                    " (listed in attributes){}",
                    delimiter_hint(names, input.delimiter)
                ),
            });
        }
        out.push((None, a.clone()));
    }
    Ok(out)
}

/// When the header came back as a single column that contains another
/// common delimiter, says so: the usual cause of a "missing column".
pub(super) fn delimiter_hint(names: &[String], delimiter: char) -> String {
    if let [only] = names {
        for d in [';', '\t', '|', ','] {
            if d != delimiter && only.contains(d) {
                return format!(
                    " (the header is one column '{only}': is the delimiter {d:?} rather than {delimiter:?}?)"
                );
            }
        }
    }
    format!(" (found columns: {})", names.join(", "))
}

/// Reads and checks every file of a table (`files`: their identities, as
/// [`file_identity`] gives them): one pass per file, producing the parsed
/// columns plus `reason` (null = valid) and `value`. Date formats are
/// narrowed to those that fit a sample of the file; should any row then
/// fail, the file is checked again with every configured format.
pub(super) fn load_table(
    table: &'static str,
    input: &InputFile,
    unknown: &str,
    report: &mut TableReport,
    files: Vec<InputFileInfo>,
) -> Result<Vec<(DataFrame, String)>> {
    let mut out = Vec::new();
    for mut info in files {
        let file = info.path.clone();
        let numeric = numeric_columns(table, &file, input)?;
        let mut df = check_file(table, &file, input, unknown, &numeric)?;
        let any_null = |c: &str| df.column(c).is_ok_and(|c| c.null_count() > 0);
        if !numeric.is_empty()
            && (any_null("amount_cents") || any_null("margin_cents") || any_null("quantity"))
        {
            df = check_file(table, &file, input, unknown, &[])?;
        }
        info.rows = df.height();
        report.files.push(info);
        report.rows_read += df.height();
        out.push((df, file.to_string_lossy().into_owned()));
    }
    Ok(out)
}

/// The raw columns the CSV reader may parse as numbers itself (the fast
/// path for clean transaction files). Should any come back null (empty or
/// not a number), the file is checked again as text, where every reject
/// gets its reason.
pub(super) fn numeric_columns(table: &str, file: &Path, input: &InputFile) -> Result<Vec<String>> {
    if table != "transactions" || io::format_of(file, input) != Format::Csv {
        return Ok(Vec::new());
    }
    let header = io::read_raw(file, input, &[])?
        .collect_schema()
        .map_err(|e| io::read_error(file, &e))?;
    Ok(["amount", "margin", "quantity"]
        .iter()
        .map(|c| input.columns.get(*c).cloned().unwrap_or(c.to_string()))
        .filter(|raw| header.contains(raw))
        .collect())
}

/// What the manifest records of one input file of `rows` rows.
pub(super) fn file_info(file: &Path, rows: usize, hashed: Option<String>) -> Result<InputFileInfo> {
    Ok(InputFileInfo {
        rows,
        ..identity(file, hashed)?
    })
}

/// One input file's size, modification time and XXH3-128 (rows not yet
/// counted).
pub(super) fn file_identity(file: &Path) -> Result<InputFileInfo> {
    identity(file, None)
}

/// [`file_identity`], with the hash when it was already taken.
fn identity(file: &Path, hashed: Option<String>) -> Result<InputFileInfo> {
    let meta = std::fs::metadata(file).map_err(Error::io(file))?;
    let xxh3_128 = match hashed {
        Some(h) => h,
        None => {
            let t = std::time::Instant::now();
            let h = io::content_hash(file)?;
            tracing::debug!(ms = t.elapsed().as_millis() as u64, "hashed");
            h
        }
    };
    Ok(InputFileInfo {
        path: file.to_path_buf(),
        bytes: meta.len(),
        modified_unix: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        xxh3_128,
        rows: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_delimiter_is_hinted() {
        let h = delimiter_hint(&["customer_id;txn_id;ts".to_string()], ',');
        assert!(h.contains("';'"), "{h}");
    }
}
