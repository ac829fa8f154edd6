//! A CSV file read in windows of whole rows, split by us and parsed by
//! polars' own chunk parser on the pool.
//!
//! polars' streaming CSV source finds its slices' row boundaries on one
//! thread with a byte-at-a-time loop (the SIMD loop needs a nightly
//! compiler): ~2.3 s of CPU at 10^7 rows, 17% of staging. A file without a
//! quote character can be cut at any newline, which `memchr` finds at
//! memory speed; files with quotes keep polars' reader.

use std::ops::Range;
use std::path::Path;

use polars::io::csv::read::_csv_read_internal::{read_chunk, validate_utf8};
use polars::io::utils::compression::SupportedCompression;
use polars::prelude::*;
use polars_arrow::array::{PrimitiveArray, Utf8ViewArray, View};
use polars_arrow::bitmap::MutableBitmap;
use polars_arrow::types::NativeType;
use rayon::prelude::*;

use crate::config::{Encoding, Format, InputFile};
use crate::error::{Error, Result};
use crate::io::LINE;

/// One CSV file, mapped or read, with what its windows are parsed as.
pub struct CsvWindows {
    /// Shared with the text columns parsed from it, which read their
    /// longer values in place ([`Texts`]).
    map: std::sync::Arc<Bytes>,
    /// Where the first data row starts (after the header line).
    body: usize,
    /// The header's columns as read: text, or Float64 for `numeric`.
    schema: Schema,
    /// The header positions of the columns read, ascending.
    projection: Vec<usize>,
    parse: CsvParseOptions,
    /// The whole file's rows when [`CsvWindows::head`] parsed it whole
    /// (one window), until [`CsvWindows::parse`] takes them.
    kept: std::sync::Mutex<Option<Window>>,
    /// The file's XXH3-128, as [`super::content_hash`] gives it.
    content_hash: String,
}

/// One window's rows ([`CsvWindows::parse`]).
pub struct Window {
    pub rows: DataFrame,
    /// The text columns whose every value our splitter took and found
    /// with no byte at either end that may belong to whitespace (see
    /// [`first_unsure`]), and so has nothing to trim: the checks can skip
    /// looking at them again. Empty for rows parsed otherwise.
    pub trimmed: Vec<PlSmallStr>,
}

/// What [`CsvWindows::head`] gives a date sample.
pub enum Head {
    /// The first rows of a file of more windows than one.
    Part(DataFrame),
    /// Every row of a file of one window.
    Whole(DataFrame),
}

/// About how many bytes one window holds: big enough that a window's
/// query costs little next to its rows, small enough to keep memory flat.
pub const WINDOW_BYTES: usize = 16 << 20;

/// A file's bytes: mapped, or read into memory when it is at most
/// [`READ_BYTES`]. A drop folder's daily files are each a few hundred
/// kilobytes, and a mapping's pages released after parsing and the
/// mapping's removal each stop every core running the process (a TLB
/// shootdown): ~6% of a first load of 1,094 daily files was the kernel
/// sending those interrupts (`perf`).
enum Bytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

/// The largest file [`CsvWindows::open`] reads rather than maps: one
/// window's worth.
const READ_BYTES: u64 = WINDOW_BYTES as u64;

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Read(v) => v,
        }
    }
}

impl CsvWindows {
    /// `file` ready to read in windows, with `header` its column names (as
    /// polars' reader gives them), `read` those to parse and `numeric`
    /// those parsed as Float64 while reading. Unlike [`super::read_raw`],
    /// a number that does not parse fails the read rather than reading as
    /// null: ignoring errors makes polars check every text field for UTF-8
    /// again (3-5% of staging), where we check each piece once.
    /// None when polars' reader must read it: not plain UTF-8 CSV (or
    /// compressed: gzip, zlib, zstd), a quote character anywhere, or no
    /// data row.
    pub fn open(
        file: &Path,
        input: &InputFile,
        header: &[String],
        read: &[String],
        numeric: &[String],
    ) -> Result<Option<CsvWindows>> {
        if super::format_of(file, input) != Format::Csv
            || input.encoding != Encoding::Utf8
            || !input.delimiter.is_ascii()
        {
            return Ok(None);
        }
        let mut f = std::fs::File::open(file).map_err(Error::io(file))?;
        let len = f.metadata().map_err(Error::io(file))?.len();
        let map = if len <= READ_BYTES {
            let mut bytes = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(&mut f, &mut bytes).map_err(Error::io(file))?;
            Bytes::Read(bytes)
        } else {
            // SAFETY: the file is an input of this run, read only; as with
            // any reader, changing it while the run reads it is the
            // caller's fault (the store's content hash tells such a change
            // on the next run).
            Bytes::Mapped(unsafe { memmap2::Mmap::map(&f) }.map_err(Error::io(file))?)
        };
        if SupportedCompression::check(&map).is_some() {
            return Ok(None);
        }
        let Some(header_end) = memchr::memchr(b'\n', &map) else {
            return Ok(None);
        };
        let body = header_end + 1;
        if body >= map.len() {
            return Ok(None);
        }
        let Some(content_hash) = hash_unless_quoted(&map) else {
            return Ok(None);
        };
        let schema: Schema = header
            .iter()
            .map(|n| {
                let dtype = if numeric.contains(n) {
                    DataType::Float64
                } else {
                    DataType::String
                };
                Field::new(n.as_str().into(), dtype)
            })
            .collect();
        let mut projection: Vec<usize> = read
            .iter()
            .filter_map(|n| header.iter().position(|h| h == n))
            .collect();
        projection.sort_unstable();
        projection.dedup();
        if projection.is_empty() {
            return Ok(None);
        }
        let parse = CsvParseOptions {
            separator: input.delimiter as u8,
            missing_is_null: true,
            ..Default::default()
        };
        Ok(Some(CsvWindows {
            map: std::sync::Arc::new(map),
            body,
            schema,
            projection,
            parse,
            kept: std::sync::Mutex::new(None),
            content_hash,
        }))
    }

    /// The file's XXH3-128 as [`super::content_hash`] gives it, taken in
    /// the pass that looked for quotes (no second read of the file).
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// The data rows cut into windows of about `size` bytes, each ending
    /// just after a newline (or at the end of the file).
    pub fn windows(&self, size: usize) -> Vec<Range<usize>> {
        cut(&self.map, self.body..self.map.len(), size)
    }

    /// One window's rows (`range`, from [`CsvWindows::windows`]), whose
    /// first is data row `first_row` (0-based): the columns read, then
    /// [`LINE`] as [`super::read_raw`] numbers it (header = line 1). Parsed
    /// in pieces on the pool; a frame of one chunk per piece. The whole
    /// file's window comes from [`CsvWindows::head`] when that parsed it.
    pub fn parse(&self, range: Range<usize>, first_row: u64) -> PolarsResult<Window> {
        let whole = range == (self.body..self.map.len()) && first_row == 0;
        if let Some(w) = whole
            .then(|| self.kept.lock().expect("a parse panicked").take())
            .flatten()
        {
            return Ok(w);
        }
        self.parse_kept(range, first_row)
    }

    /// The rows a date sample reads. A file of one window ([`WINDOW_BYTES`],
    /// a drop folder's daily file) is parsed whole, once: its rows are kept
    /// for [`CsvWindows::parse`], which would otherwise parse its first
    /// rows a second time. A longer file gives its first `rows` data rows,
    /// their pages left mapped for the pass that reads them again. `None`
    /// when such a file holds no more than `rows` rows.
    pub fn head(&self, rows: usize) -> PolarsResult<Option<Head>> {
        self.head_in(rows, WINDOW_BYTES)
    }

    /// [`CsvWindows::head`] with windows of `window` bytes.
    fn head_in(&self, rows: usize, window: usize) -> PolarsResult<Option<Head>> {
        let whole = self.body..self.map.len();
        if self.windows(window).len() == 1 {
            let w = self.parse_kept(whole, 0)?;
            let df = w.rows.clone();
            *self.kept.lock().expect("a parse panicked") = Some(w);
            return Ok(Some(Head::Whole(df)));
        }
        let body = &self.map[self.body..];
        let end = match memchr::memchr_iter(b'\n', body).nth(rows.max(1) - 1) {
            Some(i) if self.body + i + 1 < self.map.len() => self.body + i + 1,
            _ => return Ok(None),
        };
        self.parse_kept(self.body..end, 0)
            .map(|w| Some(Head::Part(w.rows)))
    }

    fn parse_kept(&self, range: Range<usize>, first_row: u64) -> PolarsResult<Window> {
        let pieces = rayon::current_num_threads().max(1) * 2;
        let size = range.len().div_ceil(pieces).max(1 << 16);
        let parts: Vec<(DataFrame, Vec<bool>)> = cut(&self.map, range.clone(), size)
            .into_par_iter()
            .map(|r| self.parse_piece(r))
            .collect::<PolarsResult<_>>()?;
        let (df, trimmed) = parts
            .into_iter()
            .reduce(|(mut a, ta), (b, tb)| {
                a.vstack_mut_owned_unchecked(b);
                (a, ta.iter().zip(&tb).map(|(x, y)| x & y).collect())
            })
            .ok_or_else(|| polars_err!(ComputeError: "an empty CSV window"))?;
        let trimmed = self
            .projection
            .iter()
            .zip(trimmed)
            .filter(|(_, t)| *t)
            .filter_map(|(&i, _)| self.schema.get_at_index(i).map(|(n, _)| n.clone()))
            .collect();
        Ok(Window {
            rows: with_line(df, first_row)?,
            trimmed,
        })
    }

    /// A frame of no rows with the columns [`CsvWindows::parse`] gives.
    pub fn empty(&self) -> PolarsResult<DataFrame> {
        let read: Schema = self
            .projection
            .iter()
            .filter_map(|&i| self.schema.get_at_index(i))
            .map(|(n, t)| Field::new(n.clone(), t.clone()))
            .collect();
        with_line(DataFrame::empty_with_schema(&read), 0)
    }

    /// A piece's rows, and for each projected column whether it is known
    /// trimmed ([`Window::trimmed`]).
    fn parse_piece(&self, range: Range<usize>) -> PolarsResult<(DataFrame, Vec<bool>)> {
        let bytes = &self.map[range.clone()];
        if !validate_utf8(bytes) {
            polars_bail!(ComputeError: "invalid utf-8 sequence");
        }
        let rows = rows_in(bytes);
        match self.parse_plain(range.clone(), rows) {
            Some(parsed) => Ok(parsed),
            None => {
                let df = self.parse_by_polars(bytes, rows)?;
                // polars' builders copy every value: its pages are done with.
                let _ = release(&self.map, range);
                Ok((df, vec![false; self.projection.len()]))
            }
        }
    }

    /// `bytes` (of `rows` lines) parsed by polars' own chunk parser.
    fn parse_by_polars(&self, bytes: &[u8], rows: usize) -> PolarsResult<DataFrame> {
        let df = read_chunk(
            bytes,
            &self.parse,
            &self.schema,
            false,
            &self.projection,
            0,
            rows,
            None,
            usize::MAX,
            bytes.len(),
            Some(0),
        )?;
        // What polars' own source says of the same mismatch.
        if df.height() != rows {
            polars_bail!(ComputeError: "CSV malformed: expected {} rows, actual {} rows", rows, df.height());
        }
        Ok(df)
    }

    /// `bytes` (a piece of whole lines, valid UTF-8, no quote character)
    /// parsed as [`CsvWindows::parse_by_polars`] parses it, for pieces of
    /// the plain shape only: every line of exactly the header's fields,
    /// ended by `\n` or `\r\n` (no other `\r`), no number with leading
    /// blanks or that fails to parse. Any other piece gives None, for
    /// polars to parse (or report).
    ///
    /// Why: polars' field splitter is a byte-at-a-time loop on a stable
    /// compiler, and its builders are matched per field; this finds the
    /// separators with `memchr` and fills each column's array directly
    /// (polars' CSV parse was ~17% of a cold 10^7 run's CPU; `benches/hot.rs`
    /// "CSV windows parsed": 2.3-2.4 s of CPU at 10^7 rows, 1.35-1.4 s here).
    fn parse_plain(&self, range: Range<usize>, rows: usize) -> Option<(DataFrame, Vec<bool>)> {
        let bytes = &self.map[range.clone()];
        // Text views locate their bytes by a 32-bit offset.
        if bytes.len() > u32::MAX as usize {
            return None;
        }
        let fields = self.schema.len();
        // In a file of one column an empty line is a field: left to polars.
        if fields < 2 {
            return None;
        }
        let mut slot = vec![usize::MAX; fields];
        let mut columns: Vec<Plain> = Vec::with_capacity(self.projection.len());
        for (k, &i) in self.projection.iter().enumerate() {
            slot[i] = k;
            columns.push(match self.schema.get_at_index(i)?.1 {
                DataType::String => Plain::Text(Texts::with_capacity(rows)),
                DataType::Float64 => Plain::Number(Valued::with_capacity(rows)),
                _ => return None,
            });
        }
        let sep = self.parse.separator;
        if sep == b'\r' || sep == b'\n' {
            return None;
        }
        let (mut field, mut start) = (0usize, 0usize);
        // Where the `\n` of a `\r\n` just taken lies.
        let mut crlf = usize::MAX;
        for at in super::hits::Hits::new(bytes, [sep, b'\n', b'\r']) {
            if at == crlf {
                continue;
            }
            let b = bytes[at];
            if field >= fields {
                return None;
            }
            // A line may end in `\r\n`, whose `\r` polars drops from the
            // field before it; any other `\r` is left to polars.
            if b == b'\r' {
                if bytes.get(at + 1) != Some(&b'\n') {
                    return None;
                }
                crlf = at + 1;
            }
            if let Some(c) = columns.get_mut(slot[field]) {
                c.push(bytes, start..at)?;
            }
            start = at + 1 + usize::from(b == b'\r');
            if b == sep {
                field += 1;
            } else if field + 1 == fields {
                field = 0;
            } else {
                return None;
            }
        }
        // A last line without its newline.
        if start < bytes.len() {
            if field + 1 != fields {
                return None;
            }
            if let Some(c) = columns.get_mut(slot[field]) {
                c.push(bytes, start..bytes.len())?;
            }
        } else if field != 0 {
            return None;
        }
        // The piece as a buffer the text columns' longer values point into.
        let piece = polars_buffer::Buffer::from_owner(Piece {
            map: self.map.clone(),
            range,
        });
        let trimmed = columns.iter().map(Plain::trimmed).collect();
        let columns: Vec<Column> = columns
            .into_iter()
            .zip(&self.projection)
            .map(|(c, &i)| {
                c.finish(
                    self.schema.get_at_index(i).expect("projected").0.clone(),
                    &piece,
                )
            })
            .collect();
        (columns.first()?.len() == rows)
            .then(|| DataFrame::new(rows, columns).ok())?
            .map(|df| (df, trimmed))
    }
}

/// A piece of a [`CsvWindows`] file, owning its share of the mapping.
struct Piece {
    map: std::sync::Arc<Bytes>,
    range: Range<usize>,
}

/// The piece's pages leave the process once nothing reads them: at once
/// when every value was copied into a view, else when the window's text
/// columns are dropped (checked and written). Released straight after the
/// parse, they were faulted in again by the checks (~5% of a cold uniform
/// 10^7 run's staging, its dates with a time of day).
impl Drop for Piece {
    fn drop(&mut self) {
        let _ = release(&self.map, self.range.clone());
    }
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// A text column of a piece: values of up to 12 bytes held in their views,
/// longer ones left where they lie in the file's mapping, the view giving
/// their offset in the piece. polars' builder copies each longer value into
/// buffers of its own: a date with a time of day (19 bytes) was ~190 MB
/// written to fresh memory at 10^7 rows, then read once to parse the date.
struct Texts {
    views: Vec<View>,
    validity: Option<MutableBitmap>,
    /// The bytes of the values.
    bytes: usize,
    /// Whether a view points into the piece.
    long: bool,
    /// Whether some value may start or end with whitespace.
    unsure: bool,
}

impl Texts {
    fn with_capacity(rows: usize) -> Texts {
        Texts {
            views: Vec::with_capacity(rows),
            validity: None,
            bytes: 0,
            long: false,
            unsure: false,
        }
    }

    #[inline]
    fn push_null(&mut self) {
        let v = self.validity.get_or_insert_with(|| {
            let mut v = MutableBitmap::with_capacity(self.views.capacity());
            v.extend_constant(self.views.len(), true);
            v
        });
        v.push(false);
        self.views.push(View::default());
    }

    /// The field at `at` in `piece`.
    #[inline]
    fn push(&mut self, piece: &[u8], at: Range<usize>) {
        let field = &piece[at.clone()];
        // Told here, while the bytes are in cache: the checks otherwise
        // read every view again for it.
        if let (Some(&first), Some(&last)) = (field.first(), field.last()) {
            self.unsure |= first_unsure(first) | last_unsure(last);
        }
        let view = if field.len() <= View::MAX_INLINE_SIZE as usize {
            inline_view(piece, at)
        } else {
            self.long = true;
            View::new_from_bytes(field, 0, at.start as u32)
        };
        self.bytes += field.len();
        self.views.push(view);
        if let Some(v) = &mut self.validity {
            v.push(true);
        }
    }

    fn finish(self, piece: &polars_buffer::Buffer<u8>) -> Utf8ViewArray {
        let buffers: Vec<polars_buffer::Buffer<u8>> = match self.long {
            true => vec![piece.clone()],
            false => Vec::new(),
        };
        let buffer_len = buffers.iter().map(|b| b.len()).sum();
        // SAFETY: the piece is valid UTF-8 (checked) and each field is cut
        // at ASCII bytes; every long view's offset and length lie inside
        // the piece, buffer 0.
        unsafe {
            Utf8ViewArray::new_unchecked(
                ArrowDataType::Utf8View,
                self.views.into(),
                buffers.into(),
                self.validity.map(|v| v.into()),
                Some(self.bytes),
                buffer_len,
            )
        }
    }
}

/// The inline view of the field at `at` (at most 12 bytes) in `piece`:
/// where the piece holds 16 bytes from its start, one load, masked to the
/// field. `View::new_inline` copies the field by a `memcpy` call and reads
/// the copy back at once, which stalls (`perf`: ~30% of the splitter's
/// own samples on that read, its `memcpy` calls ~5% of staging's).
#[inline]
fn inline_view(piece: &[u8], at: Range<usize>) -> View {
    let len = at.len();
    match piece
        .get(at.start..)
        .and_then(|rest| rest.first_chunk::<16>())
    {
        Some(block) => {
            let field = u128::from_le_bytes(*block) & ((1u128 << (8 * len)) - 1);
            // A view is its length (low 32 bits), then the inline bytes.
            View::from((field << 32) | len as u128)
        }
        None => View::new_inline(&piece[at]),
    }
}

/// A primitive column filled value by value, its validity made only once
/// a value is missing: polars' collect from options fills a bitmap for
/// every value (`perf`: ~2% of staging's samples, dates and cents). Our
/// splitter fills its number columns so too.
pub struct Valued<T> {
    values: Vec<T>,
    validity: Option<MutableBitmap>,
}

impl<T: NativeType> Valued<T> {
    pub fn with_capacity(n: usize) -> Valued<T> {
        Valued {
            values: Vec::with_capacity(n),
            validity: None,
        }
    }

    #[inline]
    pub fn push(&mut self, v: Option<T>) {
        match v {
            Some(v) => {
                self.values.push(v);
                if let Some(b) = &mut self.validity {
                    b.push(true);
                }
            }
            None => {
                let b = self.validity.get_or_insert_with(|| {
                    let mut b = MutableBitmap::with_capacity(self.values.capacity());
                    b.extend_constant(self.values.len(), true);
                    b
                });
                b.push(false);
                self.values.push(T::default());
            }
        }
    }

    pub fn finish(self) -> PrimitiveArray<T> {
        PrimitiveArray::new(
            T::PRIMITIVE.into(),
            self.values.into(),
            self.validity.map(Into::into),
        )
    }
}

/// One projected column being filled by [`CsvWindows::parse_plain`].
enum Plain {
    Text(Texts),
    Number(Valued<f64>),
}

impl Plain {
    /// Adds one field as polars' builders do (`missing_is_null`: an empty
    /// field is null); None for a number polars might read otherwise.
    #[inline]
    fn push(&mut self, piece: &[u8], at: Range<usize>) -> Option<()> {
        let field = &piece[at.clone()];
        match self {
            Plain::Text(a) if field.is_empty() => a.push_null(),
            Plain::Text(a) => a.push(piece, at),
            Plain::Number(values) if field.is_empty() => values.push(None),
            Plain::Number(values) => {
                // The parser polars calls, after skipping leading blanks:
                // this one refuses them, and polars then parses the piece.
                let v = match plain_decimal(field) {
                    Some(v) => v,
                    None => fast_float2::parse(field).ok()?,
                };
                values.push(Some(v));
            }
        }
        Some(())
    }

    /// Whether every value is known to need no trimming (text only).
    fn trimmed(&self) -> bool {
        matches!(self, Plain::Text(t) if !t.unsure)
    }

    fn finish(self, name: PlSmallStr, piece: &polars_buffer::Buffer<u8>) -> Column {
        match self {
            Plain::Text(a) => StringChunked::with_chunk(name, a.finish(piece)).into_column(),
            Plain::Number(values) => {
                Float64Chunked::with_chunk(name, values.finish()).into_column()
            }
        }
    }
}

// ASCII whitespace as `char::is_whitespace` has it (with U+000B). The
// others (U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000) start with byte C2, E1, E2 or E3 and end with 80–8A,
// 9F, A0, A8, A9 or AF: a text whose end bytes are none of those has no
// whitespace at that end.
fn ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// Whether a text starting with `b` may start with whitespace.
pub(crate) fn first_unsure(b: u8) -> bool {
    ascii_space(b) || matches!(b, 0xC2 | 0xE1..=0xE3)
}

/// Whether a text ending with `b` may end with whitespace.
pub(crate) fn last_unsure(b: u8) -> bool {
    ascii_space(b) || matches!(b, 0x80..=0x8A | 0x9F | 0xA0 | 0xA8 | 0xA9 | 0xAF)
}

/// Powers of ten exact as doubles.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `field` as a double when it is a plain decimal: an optional `-`,
/// digits, and optionally `.` and more digits, at most 15 digits in all.
/// Its digits and the power of ten are then exact doubles, so their
/// quotient is the double nearest the decimal: what `fast_float2` gives,
/// whose general path took ~0.6 s more CPU for the 3×10^7 numbers of
/// `benches/hot.rs` "CSV windows parsed". None for other text.
#[inline]
fn plain_decimal(field: &[u8]) -> Option<f64> {
    let (negative, text) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    // Digits, and at most one point, in one pass (a `memchr` call for the
    // point first cost more than the field's few bytes).
    let (mut digits, mut dot) = (0u64, None);
    for (i, &b) in text.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            digits = digits * 10 + u64::from(d);
        } else if b == b'.' && dot.is_none() {
            dot = Some(i);
        } else {
            return None;
        }
    }
    let whole = dot.unwrap_or(text.len());
    let fraction = dot.map_or(0, |d| text.len() - d - 1);
    // "5." and ".5" are polars' to read.
    if whole == 0 || (dot.is_some() && fraction == 0) || whole + fraction > 15 {
        return None;
    }
    let v = digits as f64 / POW10[fraction];
    Some(if negative { -v } else { v })
}

/// A window's frame with the [`LINE`] column first.
fn with_line(mut df: DataFrame, first_row: u64) -> PolarsResult<DataFrame> {
    let start = first_row + 2;
    let line: Vec<u64> = (start..start + df.height() as u64).collect();
    df.insert_column(0, Column::new(LINE.into(), line))?;
    Ok(df)
}

/// The file's XXH3-128 ([`super::content_hash`]) unless it holds a quote
/// character (`None`): one pass, 1 MiB at a time (looked through, then
/// hashed, while in cache), each 64 MiB slice's pages released after
/// ([`release`]). The hash had been a second read of the whole file after
/// staging (130–185 ms of a cold 10^7 run, one core busy).
fn hash_unless_quoted(map: &Bytes) -> Option<String> {
    const SLICE: usize = 64 << 20;
    const STEP: usize = 1 << 20;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for start in (0..map.len()).step_by(SLICE) {
        let range = start..(start + SLICE).min(map.len());
        let quoted = map[range.clone()].chunks(STEP).any(|part| {
            hasher.update(part);
            memchr::memchr(b'"', part).is_some()
        });
        let _ = release(map, range);
        if quoted {
            return None;
        }
    }
    Some(super::hash_text(hasher.digest128()))
}

/// Lets the pages of `range` leave this process (not the page cache): a
/// file of 10^8 rows read whole would otherwise count in full toward the
/// run's resident memory by the time it is staged. (A file read into
/// memory is small: nothing to release.)
fn release(map: &Bytes, range: Range<usize>) -> std::io::Result<()> {
    let Bytes::Mapped(map) = map else {
        return Ok(());
    };
    // SAFETY: the map is private and read-only; a later read of these pages
    // faults them in again from the file.
    unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
    }
}

/// The rows a piece holds: one a newline, and one more for a last line
/// without its newline.
fn rows_in(bytes: &[u8]) -> usize {
    let newlines = memchr::memchr_iter(b'\n', bytes).count();
    newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

/// `range` of `bytes` cut into pieces of about `size` bytes, each ending
/// just after a newline (the last at the range's end).
fn cut(bytes: &[u8], range: Range<usize>, size: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let target = (start + size.max(1)).min(range.end);
        let end = if target >= range.end {
            range.end
        } else {
            match memchr::memchr(b'\n', &bytes[target - 1..range.end]) {
                Some(i) => target + i,
                None => range.end,
            }
        };
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory of this test's own (`tag`), the path of its
    /// file `t.csv`, the header `id,v` and an input reading that file.
    fn scratch(
        tag: &str,
    ) -> (
        std::path::PathBuf,
        std::path::PathBuf,
        [String; 2],
        InputFile,
    ) {
        let dir = std::env::temp_dir().join(format!("tiering-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.csv");
        let input = toml::from_str("path = 't.csv'").unwrap();
        (dir, file, ["id", "v"].map(String::from), input)
    }

    /// The head is the file's first rows with their lines; a file of no
    /// more rows than asked (with or without its last newline) has none.
    /// A file of one window is parsed whole, and its window's parse is
    /// those rows, not parsed again.
    #[test]
    fn the_head_is_the_first_rows_or_the_whole_file_of_one_window() {
        use crate::testing::{strs, u64s};
        let (dir, file, header, input) = scratch("head");
        let open = |text: &str| {
            std::fs::write(&file, text).unwrap();
            CsvWindows::open(&file, &input, &header, &header, &[])
                .unwrap()
                .unwrap()
        };
        let rows = |df: &DataFrame| (u64s(df, LINE), strs(df, "id"));
        // Windows of 4 bytes: every row a window of its own.
        let head = |text: &str, n: usize| match open(text).head_in(n, 4).unwrap() {
            Some(Head::Part(df)) => Some(rows(&df)),
            Some(Head::Whole(_)) => panic!("a file of several windows read whole"),
            None => None,
        };
        let five = "id,v\na,1\nb,2\nc,3\nd,4\ne,5\n";
        let ids = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(head(five, 2), Some((vec![2, 3], ids(&["a", "b"]))));
        assert_eq!(head(five, 4).unwrap().1, ids(&["a", "b", "c", "d"]));
        assert_eq!(head(five, 5), None);
        assert_eq!(head(five, 6), None);
        assert_eq!(head(five.trim_end(), 5), None);
        assert_eq!(head(five.trim_end(), 4).unwrap().0, vec![2, 3, 4, 5]);
        // One window: every row, however few were asked for; the window's
        // parse hands the same rows back once, then parses it again.
        let w = open(five);
        let Some(Head::Whole(df)) = w.head(2).unwrap() else {
            panic!("a file of one window read in part");
        };
        let all = (vec![2, 3, 4, 5, 6], ids(&["a", "b", "c", "d", "e"]));
        assert_eq!(rows(&df), all);
        let window = w.windows(WINDOW_BYTES)[0].clone();
        assert!(w.kept.lock().unwrap().is_some());
        assert_eq!(rows(&w.parse(window.clone(), 0).unwrap().rows), all);
        assert!(w.kept.lock().unwrap().is_none());
        assert_eq!(rows(&w.parse(window, 0).unwrap().rows), all);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The hash the windows take while looking for quotes is the file's
    /// content hash, over several steps of the pass; a quote anywhere (here
    /// past the first steps) leaves the file to polars' reader.
    #[test]
    fn the_windows_hash_the_whole_file_unless_it_is_quoted() {
        let (dir, file, header, input) = scratch("hashq");
        let mut text = String::from("id,v\n");
        for i in 0..400_000 {
            text.push_str(&format!("c{i},{}\n", i % 97));
        }
        assert!(text.len() > 3 << 20);
        for body in [text.clone(), "id,v\na,1\n".to_string()] {
            std::fs::write(&file, &body).unwrap();
            let w = CsvWindows::open(&file, &input, &header, &header, &[])
                .unwrap()
                .unwrap();
            assert_eq!(w.content_hash(), crate::io::content_hash(&file).unwrap());
        }
        text.replace_range(text.len() - 10..text.len() - 9, "\"");
        std::fs::write(&file, &text).unwrap();
        assert!(
            CsvWindows::open(&file, &input, &header, &header, &[])
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Random pieces, mostly plain and some not (a missing or extra field,
    /// `\r\n` line ends or a lone `\r`, an empty line, blanks or text in
    /// a number, no last newline):
    /// wherever the plain parse takes a piece, polars' parse of it gives
    /// the same columns, values, nulls and float bits.
    #[test]
    fn plain_pieces_parse_as_polars_parses_them() {
        use crate::testing::strs;
        let mut next = crate::testing::lcg(20);
        let mut pick = |n: usize| next() % n;
        let texts = [
            "",
            "a",
            "T000000001",
            "配件",
            "x y",
            "2009-12-04 11:33:57",
            "é;é",
            "-1.5",
            // Held in the view, and the shortest value read in place.
            "123456789012",
            "abcdefghijklm",
            // To be trimmed: ASCII and Unicode whitespace at either end.
            " a",
            "b\t",
            "\u{3000}配件",
            "配件\u{a0}",
        ];
        let numbers = [
            "",
            "12.5",
            "-3",
            "1e3",
            "007",
            ".5",
            "5.",
            "inf",
            "NaN",
            "+2",
            "7316.80",
            "abc",
            "1.2.3",
            " 5",
            "5 ",
            "\t5",
            "0.1",
            "1E-7",
            "99999999999999999999",
        ];
        let (mut plain, mut polars) = (0, 0);
        // Text columns said to need no trimming, and the others.
        let (mut clean, mut unsure) = (0, 0);
        for case in 0..3000 {
            let fields = 2 + pick(4);
            let sep = [b',', b';', b'|'][pick(3)];
            let schema: Schema = (0..fields)
                .map(|i| {
                    let t = match pick(2) {
                        0 => DataType::String,
                        _ => DataType::Float64,
                    };
                    Field::new(format!("c{i}").into(), t)
                })
                .collect();
            let mut projection: Vec<usize> = (0..fields).filter(|_| pick(3) > 0).collect();
            if projection.is_empty() {
                projection.push(pick(fields));
            }
            let mut text = String::new();
            let crlf = pick(4) == 0;
            for _ in 0..1 + pick(12) {
                let mut n = fields;
                match pick(60) {
                    0 => n -= 1,
                    1 => n += 1,
                    2 => n = 0,
                    _ => {}
                }
                for f in 0..n {
                    if f > 0 {
                        text.push(sep as char);
                    }
                    let number = schema.get_at_index(f).is_some_and(|(_, t)| t.is_float());
                    // Mostly what the column holds: a valid number.
                    text.push_str(match (number, pick(8)) {
                        (true, 0) => numbers[pick(numbers.len())],
                        (true, _) => numbers[1 + pick(10)],
                        (false, _) => texts[pick(texts.len())],
                    });
                }
                // Windows line ends in some pieces; a lone `\r` now and then.
                if crlf || pick(80) == 0 {
                    text.push('\r');
                }
                if pick(200) == 0 {
                    text.push_str("\rx");
                }
                text.push('\n');
            }
            if pick(4) == 0 {
                text.pop();
            }
            // The piece after other bytes of the file: a long value's
            // view gives its offset in the piece, not in the file.
            let before = "x,y\n".repeat(pick(3));
            let w = CsvWindows {
                map: Bytes::Read(format!("{before}{text}").into_bytes()).into(),
                body: 0,
                schema: schema.clone(),
                projection: projection.clone(),
                parse: CsvParseOptions {
                    separator: sep,
                    missing_is_null: true,
                    ..Default::default()
                },
                kept: std::sync::Mutex::new(None),
                content_hash: String::new(),
            };
            let bytes = text.as_bytes();
            let rows = rows_in(bytes);
            let Some((ours, trimmed)) =
                w.parse_plain(before.len()..before.len() + bytes.len(), rows)
            else {
                polars += 1;
                continue;
            };
            // A column said to need no trimming has nothing to trim.
            for (c, t) in ours.columns().iter().zip(&trimmed) {
                let values = c.str().map(|s| s.iter().flatten().collect::<Vec<_>>());
                match (t, values) {
                    (true, Ok(v)) => assert!(
                        v.iter().all(|v| v.trim() == *v && !v.is_empty()),
                        "case {case}: {v:?}"
                    ),
                    (true, Err(_)) => panic!("case {case}: a number column said trimmed"),
                    (false, Ok(_)) => unsure += 1,
                    (false, Err(_)) => {}
                }
                clean += usize::from(*t);
            }
            plain += 1;
            let theirs = w
                .parse_by_polars(bytes, rows)
                .unwrap_or_else(|e| panic!("case {case}: polars fails {text:?}: {e}"));
            assert_eq!(
                ours.get_column_names(),
                theirs.get_column_names(),
                "case {case}"
            );
            for (a, b) in ours.columns().iter().zip(theirs.columns()) {
                assert_eq!(a.dtype(), b.dtype(), "case {case}");
                if a.dtype().is_float() {
                    let bits = |c: &Column| -> Vec<Option<u64>> {
                        c.f64()
                            .unwrap()
                            .iter()
                            .map(|v| v.map(f64::to_bits))
                            .collect()
                    };
                    assert_eq!(bits(a), bits(b), "case {case}: {text:?}");
                } else {
                    let (a, b) = (strs(&ours, a.name()), strs(&theirs, b.name()));
                    assert_eq!(a, b, "case {case}: {text:?}");
                }
            }
        }
        // Both paths were taken, the plain one mostly.
        assert!(
            plain > 1000 && polars > 300,
            "plain {plain}, polars {polars}"
        );
        assert!(
            clean > 100 && unsure > 100,
            "{clean} clean, {unsure} unsure"
        );
    }

    /// Plain decimals read as `fast_float2` reads them, to the bit;
    /// anything else is left to it.
    #[test]
    fn inline_views_are_polars_views() {
        let piece: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for start in 0..piece.len() {
            for len in 0..=12.min(piece.len() - start) {
                let at = start..start + len;
                assert_eq!(
                    inline_view(&piece, at.clone()),
                    View::new_inline(&piece[at]),
                    "{len} bytes at {start}"
                );
            }
        }
    }

    #[test]
    fn plain_decimals_are_fast_float2s() {
        let mut next = crate::testing::lcg(7);
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.00",
            "5.",
            ".5",
            "-",
            "-.5",
            "1.2.3",
            "+1",
            "1e5",
            "12a",
            "123456789012345",
            "1234567890123456",
            "0.000000000000001",
            "9007199254740993",
            "999999999999999",
            "-99999999999999.9",
            "7316.80",
            "00012.50",
            "",
        ]
        .map(String::from)
        .to_vec();
        for _ in 0..200_000 {
            let whole = next() % 17;
            let fraction = next() % 8;
            let digit = |next: &mut dyn FnMut() -> usize| (b'0' + (next() % 10) as u8) as char;
            let mut s = String::new();
            if next().is_multiple_of(2) {
                s.push('-');
            }
            (0..whole).for_each(|_| s.push(digit(&mut next)));
            if fraction > 0 {
                s.push('.');
                (0..fraction - 1).for_each(|_| s.push(digit(&mut next)));
            }
            cases.push(s);
        }
        let mut taken = 0;
        for s in &cases {
            let theirs: Option<f64> = fast_float2::parse(s.as_bytes()).ok();
            if let Some(ours) = plain_decimal(s.as_bytes()) {
                taken += 1;
                assert_eq!(Some(ours.to_bits()), theirs.map(f64::to_bits), "{s:?}");
            }
        }
        assert!(taken > 100_000, "{taken}");
        assert_eq!(plain_decimal(b"5."), None);
        assert_eq!(plain_decimal(b".5"), None);
        assert_eq!(plain_decimal(b"1234567890123456"), None);
    }

    #[test]
    fn pieces_end_after_a_newline_and_cover_the_range() {
        let text = b"a,1\nbb,22\nccc,333\nd,4";
        for size in 1..text.len() + 2 {
            let pieces = cut(text, 0..text.len(), size);
            assert_eq!(pieces.first().unwrap().start, 0);
            assert_eq!(pieces.last().unwrap().end, text.len());
            for w in pieces.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(text[w[0].end - 1], b'\n', "size {size}: {pieces:?}");
            }
            let rows: usize = pieces.iter().map(|r| rows_in(&text[r.clone()])).sum();
            assert_eq!(rows, 4, "size {size}");
        }
    }
}
