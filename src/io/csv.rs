//! The published tables' CSV encoder. It writes the same bytes polars'
//! `CsvWriter` wrote for them (comma, `"` quotes where necessary, empty
//! nulls, `\n`, ISO dates, floats as Rust's `{}` prints an f64: positional,
//! shortest round-trip digits) for less CPU: polars calls a trait object
//! per cell and formats positional floats through `core::fmt`, and
//! `customer_scores.csv` (~190 MB at 10^6 customers) was a nightly run's
//! largest single cost. Here each column is matched to its typed array
//! once, floats go through ryu (whole ones as integers), cells are
//! encoded a column at a time for a few hundred rows and then stitched
//! into lines, and blocks of rows are encoded in parallel into buffers
//! reused from block to block.

use std::io::Write;

use polars::prelude::*;
use polars_arrow::array::{Array as _, View};
use rayon::prelude::*;

/// 2^53: every whole f64 below it is an exact integer.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// Rows per block encoded by one task.
const BLOCK: usize = 16_384;

/// Whether every column of `schema` has a type this encoder writes
/// (everything a published table holds; anything else goes to polars).
pub fn encodable(schema: &Schema) -> bool {
    use DataType::*;
    schema.iter_values().all(|t| {
        matches!(
            t,
            String
                | Boolean
                | Date
                | Null
                | Float32
                | Float64
                | Int8
                | Int16
                | Int32
                | Int64
                | UInt8
                | UInt16
                | UInt32
                | UInt64
        )
    })
}

/// The header line: column names quoted as strings are.
pub fn header(names: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, name);
    }
    out.push(b'\n');
    out
}

/// Writes `df`'s rows (no header) to `out`. Every column must be
/// [`encodable`].
pub fn write_rows(df: &DataFrame, out: &mut impl Write) -> std::io::Result<()> {
    // Every column as one chunk of a type `Col` reads directly.
    let series: Vec<Series> = df
        .columns()
        .iter()
        .map(|c| {
            let s = c.as_materialized_series();
            let s = match s.dtype() {
                DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => {
                    s.cast(&DataType::Int32).unwrap()
                }
                // As polars did: an f32 printed as the f64 it widens to.
                DataType::Float32 => s.cast(&DataType::Float64).unwrap(),
                _ => s.clone(),
            };
            s.rechunk()
        })
        .collect();
    let cols: Vec<Col> = series.iter().map(Col::new).collect();
    // Blocks are encoded in parallel a wave at a time into buffers kept
    // from wave to wave, and written in order.
    let height = df.height();
    let mut buffers = vec![Block::default(); rayon::current_num_threads().max(1) * 2];
    for wave in (0..height).step_by(BLOCK * buffers.len()) {
        let blocks = (height - wave).div_ceil(BLOCK).min(buffers.len());
        buffers[..blocks]
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, block)| {
                let start = wave + i * BLOCK;
                block.encode(&cols, start..(start + BLOCK).min(height));
            });
        for block in &buffers[..blocks] {
            out.write_all(&block.out)?;
        }
    }
    Ok(())
}

type Array<T> = <T as PolarsDataType>::Array;

/// One column's values, read by row.
enum Col<'a> {
    Str(&'a Array<StringType>),
    Bool(&'a Array<BooleanType>),
    I32(&'a Array<Int32Type>),
    I64(&'a Array<Int64Type>),
    U32(&'a Array<UInt32Type>),
    U64(&'a Array<UInt64Type>),
    F64(&'a Array<Float64Type>),
    Date(&'a Array<Int32Type>),
    Null,
}

impl<'a> Col<'a> {
    /// `s` is one chunk of a type [`write_rows`] prepared.
    fn new(s: &'a Series) -> Col<'a> {
        fn one<T: PolarsDataType>(ca: &ChunkedArray<T>) -> &Array<T> {
            ca.downcast_iter().next().expect("a rechunked column")
        }
        match s.dtype() {
            DataType::String => Col::Str(one(s.str().unwrap())),
            DataType::Boolean => Col::Bool(one(s.bool().unwrap())),
            DataType::Date => Col::Date(one(s.date().unwrap().physical())),
            DataType::Int32 => Col::I32(one(s.i32().unwrap())),
            DataType::Int64 => Col::I64(one(s.i64().unwrap())),
            DataType::UInt32 => Col::U32(one(s.u32().unwrap())),
            DataType::UInt64 => Col::U64(one(s.u64().unwrap())),
            DataType::Float64 => Col::F64(one(s.f64().unwrap())),
            DataType::Null => Col::Null,
            other => unreachable!("CSV encoder asked for {other} (encodable() said no)"),
        }
    }
}

/// Rows whose cells are encoded column by column before they are
/// stitched into lines: each column's loop is then one type's, and the
/// cells of all 51 columns of `customer_scores` stay in cache for the
/// stitching.
const CELLS: usize = 256;

/// One block's lines, and the scratch its columns are encoded into.
#[derive(Clone, Default)]
struct Block {
    out: Vec<u8>,
    cells: Vec<Cells>,
}

/// One column's cells, back to back, and where each ends.
#[derive(Clone, Default)]
struct Cells {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Block {
    /// Encodes `rows` of `cols` into `out`; a null is an empty cell.
    fn encode(&mut self, cols: &[Col], rows: std::ops::Range<usize>) {
        self.out.clear();
        self.cells.resize_with(cols.len(), Cells::default);
        for start in rows.clone().step_by(CELLS) {
            let part = start..(start + CELLS).min(rows.end);
            for (col, cells) in cols.iter().zip(&mut self.cells) {
                cells.bytes.clear();
                cells.ends.clear();
                col.encode(part.clone(), cells);
            }
            self.stitch(part.len());
        }
    }

    /// Appends `rows` lines from the cells. Cells are a few bytes each, so
    /// each is copied as one 16-byte move where it fits (both buffers keep
    /// [`SLACK`] spare bytes) rather than by a `memcpy` call: the calls
    /// were ~30% of encoding `customer_scores` (`perf`).
    fn stitch(&mut self, rows: usize) {
        let columns = self.cells.len();
        if columns == 0 {
            self.out.extend(std::iter::repeat_n(b'\n', rows));
            return;
        }
        let bytes: usize = self.cells.iter().map(|c| c.bytes.len()).sum();
        // Every cell, a separator or line end after each, and the slack.
        self.out.reserve(bytes + rows * columns + SLACK);
        for cells in &mut self.cells {
            cells.bytes.reserve(SLACK);
        }
        let start = self.out.len();
        let mut at = start;
        let mut from = vec![0usize; columns];
        // SAFETY: `out` has room for every cell and separator plus SLACK,
        // so a 16-byte move at `at` stays inside its allocation; a cell's
        // 16-byte read from `from` stays inside its `bytes`' allocation
        // (capacity ≥ len + SLACK). Bytes moved past a cell's end may be
        // uninitialized; they are overwritten by the next cell or lie past
        // the final length, which counts only what was written.
        unsafe {
            let out = self.out.as_mut_ptr();
            for row in 0..rows {
                for (cells, from) in self.cells.iter().zip(&mut from) {
                    let to = *cells.ends.get_unchecked(row) as usize;
                    let len = to - *from;
                    let src = cells.bytes.as_ptr().add(*from);
                    if len <= SLACK {
                        std::ptr::copy_nonoverlapping(src, out.add(at), SLACK);
                    } else {
                        std::ptr::copy_nonoverlapping(src, out.add(at), len);
                    }
                    at += len;
                    *out.add(at) = b',';
                    at += 1;
                    *from = to;
                }
                *out.add(at - 1) = b'\n';
            }
            self.out.set_len(at);
        }
    }
}

/// Spare bytes kept past the end of [`Block::stitch`]'s buffers.
const SLACK: usize = 16;

impl Col<'_> {
    /// Appends the cells of `rows` to `cells`.
    fn encode(&self, rows: std::ops::Range<usize>, cells: &mut Cells) {
        fn each<V>(
            rows: std::ops::Range<usize>,
            cells: &mut Cells,
            get: impl Fn(usize) -> Option<V>,
            mut write: impl FnMut(&mut Vec<u8>, V),
        ) {
            for row in rows {
                if let Some(v) = get(row) {
                    write(&mut cells.bytes, v);
                }
                cells.ends.push(cells.bytes.len() as u32);
            }
        }
        let int = |b: &mut Vec<u8>, v: i64| put_int(b, v.unsigned_abs(), v < 0);
        match self {
            Col::Str(a) => encode_texts(a, rows, cells),
            Col::Bool(a) => each(
                rows,
                cells,
                |r| a.get(r),
                |b, v| b.extend_from_slice(if v { b"true" } else { b"false" }),
            ),
            Col::I32(a) => each(rows, cells, |r| a.get(r), |b, v| int(b, v.into())),
            Col::I64(a) => each(rows, cells, |r| a.get(r), int),
            Col::U32(a) => each(rows, cells, |r| a.get(r), |b, v| int(b, v.into())),
            Col::U64(a) => each(rows, cells, |r| a.get(r), |b, v| put_int(b, v, false)),
            Col::F64(a) => each(rows, cells, |r| a.get(r), write_f64),
            Col::Date(a) => each(rows, cells, |r| a.get(r), write_date),
            Col::Null => each(rows, cells, |_| None::<()>, |_, ()| {}),
        }
    }
}

/// Text cells as [`write_str`] writes them, read from the views: a value
/// held in its view (up to 12 bytes) with nothing to quote is copied as
/// one 16-byte store, found so by a few word operations rather than a
/// loop over its bytes and a `memcpy` call (most published texts are
/// such: ids, regions, tiers, statuses).
fn encode_texts(a: &Array<StringType>, rows: std::ops::Range<usize>, cells: &mut Cells) {
    let views = a.views();
    let buffers = a.data_buffers();
    let validity = a.validity();
    for row in rows {
        // SAFETY: `row` is below the array's length (a block's rows).
        if validity.is_none_or(|v| unsafe { v.get_bit_unchecked(row) }) {
            let view = views[row];
            let len = view.length as usize;
            let held = view.as_u128() >> 32;
            if len > 0 && len <= View::MAX_INLINE_SIZE as usize && !needs_quotes(held, len) {
                cells.bytes.reserve(16);
                // SAFETY: 16 bytes reserved past the length; only the
                // value's `len` are counted.
                unsafe {
                    let end = cells.bytes.len();
                    let to = cells.bytes.as_mut_ptr().add(end).cast::<[u8; 16]>();
                    to.write_unaligned(held.to_le_bytes());
                    cells.bytes.set_len(end + len);
                }
            } else {
                // SAFETY: the view and buffers are the array's own, and a
                // Utf8View holds valid UTF-8.
                let bytes = unsafe { view.get_slice_unchecked(buffers) };
                write_str(&mut cells.bytes, unsafe {
                    std::str::from_utf8_unchecked(bytes)
                });
            }
        }
        cells.ends.push(cells.bytes.len() as u32);
    }
}

/// Whether the first `len` (1..=12) bytes of `data` (little-endian) hold
/// a comma, quote or line break: a byte equal to one of them is a zero
/// byte of `data ^ c`, found by the usual borrow trick, which can flag a
/// byte above a zero byte but never misses one, so the first flagged byte
/// within `len` is a true match.
fn needs_quotes(data: u128, len: usize) -> bool {
    const ONES: u128 = u128::MAX / 255;
    const HIGHS: u128 = ONES << 7;
    let within = (1u128 << (8 * len)) - 1;
    let zero_byte = |x: u128| x.wrapping_sub(ONES) & !x & HIGHS & within != 0;
    [b',', b'"', b'\n', b'\r']
        .iter()
        .any(|&c| zero_byte(data ^ (ONES * u128::from(c))))
}

/// A string as polars quotes it by necessity: quoted when it holds a comma,
/// quote or line break (quotes doubled), and `""` when empty (an empty
/// cell is a null).
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else if bytes
        .iter()
        .any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for part in bytes.split_inclusive(|&c| c == b'"') {
            out.extend_from_slice(part);
            if part.last() == Some(&b'"') {
                out.push(b'"');
            }
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(bytes);
    }
}

/// A float exactly as `format!("{v}")` prints it: never an exponent, no
/// `.0` on whole numbers, `NaN`, `inf`, `-0`. ryu finds the same shortest
/// round-trip digits `core::fmt` does, except when the value lies exactly
/// halfway between two shortest candidates (ryu rounds to even, core up):
/// those few values, and integers past 2^53, go to `core::fmt` itself.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        let text: &[u8] = match v {
            f64::INFINITY => b"inf",
            f64::NEG_INFINITY => b"-inf",
            _ => b"NaN",
        };
        out.extend_from_slice(text);
        return;
    }
    // Whole numbers (counts, day thresholds, zero sums) as integers: exact
    // below 2^53, and several times faster than ryu.
    // (`as` truncates: no libm `trunc` call, which the build's baseline
    // x86-64 has no instruction for.)
    if v.abs() < EXACT_INTEGERS && (v as i64) as f64 == v {
        let whole = v as i64;
        put_int(out, whole.unsigned_abs(), whole < 0 || v.is_sign_negative());
        return;
    }
    if write_cents(out, v) {
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v).as_bytes();
    let e = text.iter().position(|&c| c == b'e');
    let mantissa = &text[..e.unwrap_or(text.len())];
    let digits = mantissa
        .iter()
        .filter(|c| c.is_ascii_digit())
        .skip_while(|&&c| c == b'0')
        .count();
    if may_tie(v, digits) {
        let _ = write!(out, "{v}");
        return;
    }
    match e {
        // ryu is positional for 1e-5 <= |v| < 1e16: only a whole number's
        // ".0" differs.
        None => out.extend_from_slice(text.strip_suffix(b".0").unwrap_or(text)),
        Some(e) => expand_exponent(out, &text[..e], &text[e + 1..]),
    }
}

/// Writes `v` as its whole cents when it is a money amount (the double
/// nearest some `c / 100`, below 10^12 in size, not whole): `c / 100` then
/// rounds to `v` and no decimal with fewer digits lies within `v`'s
/// rounding interval (a shorter one is at least 0.005 away; `v`'s spacing
/// is below 0.0002), so it is the shortest round trip `core::fmt` prints.
/// Most floats of the published tables are such amounts, and this is
/// several times faster than ryu. Returns whether it wrote. `v` is finite.
fn write_cents(out: &mut Vec<u8>, v: f64) -> bool {
    let x = v * 100.0;
    if x.abs() >= 1e14 {
        return false;
    }
    // Rounded half away from zero, as `f64::round` (a libm call here): the
    // fraction `x - trunc(x)` is exact below 2^52.
    let t = x as i64;
    let fraction = x - t as f64;
    let c = t + (fraction >= 0.5) as i64 - (fraction <= -0.5) as i64;
    if c.unsigned_abs() as f64 >= 1e14 || c as f64 / 100.0 != v {
        return false;
    }
    let negative = c < 0;
    let c = c.unsigned_abs();
    put_int(out, c / 100, negative);
    let (tens, ones) = ((c % 100 / 10) as u8, (c % 10) as u8);
    out.push(b'.');
    out.push(b'0' + tens);
    if ones != 0 {
        out.push(b'0' + ones);
    }
    true
}

/// Two decimal digits per pair `00`..`99`.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `n` in decimal, `-` first when `negative`: written straight
/// into spare capacity, last digit pair first, rather than formatted
/// elsewhere and copied by a `memcpy` call per cell as
/// `extend_from_slice` did (~10% of encoding `customer_scores`, most of
/// its cells being numbers).
#[inline]
fn put_int(out: &mut Vec<u8>, mut n: u64, negative: bool) {
    // At most 20 digits and a sign.
    out.reserve(21);
    let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1);
    let len = out.len();
    let total = digits + negative as usize;
    // SAFETY: `out` has 21 spare bytes past `len`, and exactly `total`
    // of them are written before they are counted; `d + 2 <= 200`.
    unsafe {
        let start = out.as_mut_ptr().add(len);
        if negative {
            *start = b'-';
        }
        let mut end = start.add(total);
        while n >= 100 {
            let d = (n % 100) as usize * 2;
            n /= 100;
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(d), end, 2);
        }
        if n >= 10 {
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(n as usize * 2), end, 2);
        } else {
            *end.sub(1) = b'0' + n as u8;
        }
        out.set_len(len + total);
    }
}

/// Whether `v`'s exact decimal expansion could lie halfway between two
/// `digits`-digit candidates: only a dyadic fraction whose exact expansion
/// has `digits + 1` significant digits can (`m / 2^k` is `m * 5^k / 10^k`),
/// or an integer too large for every digit to be significant.
fn may_tie(v: f64, digits: usize) -> bool {
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mut m, mut e) = match biased {
        0 => (fraction, -1074),
        _ => (fraction | (1 << 52), biased - 1075),
    };
    if m == 0 {
        return false;
    }
    e += m.trailing_zeros() as i32;
    m >>= m.trailing_zeros();
    if e >= 0 {
        return v.abs() >= EXACT_INTEGERS;
    }
    // 5^27 > 10^18: the exact expansion has more digits than any tie needs.
    let k = (-e) as u32;
    if k > 26 {
        return false;
    }
    let exact = u128::from(m) * 5u128.pow(k);
    exact.checked_ilog10().map_or(0, |d| d as usize + 1) == digits + 1
}

/// `d[.ddd]` times 10^`exp` written out positionally.
fn expand_exponent(out: &mut Vec<u8>, mantissa: &[u8], exp: &[u8]) {
    let (negative, mantissa) = match mantissa.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, mantissa),
    };
    let digits: Vec<u8> = mantissa.iter().copied().filter(|&c| c != b'.').collect();
    let exp: i64 = std::str::from_utf8(exp).unwrap().parse().unwrap();
    // Where the decimal point falls after the digits' first.
    let point = exp + 1;
    if negative {
        out.push(b'-');
    }
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-point) as usize));
        out.extend_from_slice(&digits);
    } else if point as usize >= digits.len() {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', point as usize - digits.len()));
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (chrono's Display, which polars
/// used); years outside 0..=9999 go to chrono itself.
pub fn write_date(out: &mut Vec<u8>, days: i32) {
    let (y, m, d) = civil_from_days(days as i64);
    if !(0..=9999).contains(&y) {
        let date = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163);
        let _ = match date {
            Some(date) => write!(out, "{date}"),
            None => write!(out, "{days}"),
        };
        return;
    }
    let mut text = *b"0000-00-00";
    let y = y as u32;
    text[0] = b'0' + (y / 1000) as u8;
    text[1] = b'0' + (y / 100 % 10) as u8;
    text[2] = b'0' + (y / 10 % 10) as u8;
    text[3] = b'0' + (y % 10) as u8;
    text[5] = b'0' + (m / 10) as u8;
    text[6] = b'0' + (m % 10) as u8;
    text[8] = b'0' + (d / 10) as u8;
    text[9] = b'0' + (d % 10) as u8;
    out.extend_from_slice(&text);
}

/// The proleptic Gregorian (year, month, day) of a day count from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_text(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    /// The independent reference is `format!("{v}")`, which polars used.
    #[test]
    fn floats_print_as_rust_display_does() {
        let fixed = [
            0.0,
            -0.0,
            5.0,
            -5.0,
            0.1,
            0.3,
            1.0 / 3.0,
            12.34,
            1e15,
            1e16,
            1e17,
            1.5e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e-5,
            1e-6,
            1.5e-7,
            123456789.125,
            0.00001234,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1234.5e20,
            9007199254740993.0,
            // Exactly halfway between two 17-digit candidates.
            f64::from_bits(0x4318_0467_b3a7_ed6d),
        ];
        for v in fixed {
            assert_eq!(f64_text(v), format!("{v}"), "{v:e}");
        }
        // Random bit patterns (every magnitude) and money-like values.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let sign = if x & 1 == 0 { 1.0 } else { -1.0 };
            let v = match i % 5 {
                0 => f64::from_bits(x),
                // Thousandths: cents rounded half away from zero, or not
                // cents at all.
                4 => (x % 10_000_000) as f64 / 1000.0 * sign,
                1 => (x % 100_000_000) as f64 / 100.0 * sign,
                // Amounts of every size around the cents path's bound.
                3 => (x % 10u64.pow(1 + (x % 17) as u32)) as f64 / 100.0 * sign,
                // Dyadic fractions, where halfway ties live.
                _ => (x >> 11) as f64 / (1u64 << (x % 64)) as f64 * sign,
            };
            assert_eq!(f64_text(v), format!("{v}"), "bits {:#x}", v.to_bits());
        }
    }

    /// The independent reference is Rust's `Display`: every digit count,
    /// both signs, the extremes.
    #[test]
    fn integers_print_as_rust_display_does() {
        let mut values = vec![
            0i64,
            1,
            -1,
            9,
            10,
            99,
            100,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        for k in 1..19 {
            let p = 10i64.pow(k);
            values.extend([p - 1, p, p + 1, -p + 1, -p, -p - 1]);
        }
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x >> (x % 64)) as i64);
        }
        let mut out = Vec::new();
        for v in values {
            out.clear();
            put_int(&mut out, v.unsigned_abs(), v < 0);
            assert_eq!(out, v.to_string().as_bytes(), "{v}");
        }
        for v in [u64::MAX, u64::MAX - 1, 1 << 63] {
            out.clear();
            put_int(&mut out, v, false);
            assert_eq!(out, v.to_string().as_bytes(), "{v}");
        }
        // Appended after what is there, whatever the spare capacity.
        let mut out = b"ab".to_vec();
        out.shrink_to_fit();
        put_int(&mut out, 42, true);
        assert_eq!(out, b"ab-42");
    }

    #[test]
    fn dates_print_as_chrono_does() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let far = [
            -800_000, -719_529, -719_528, 2_932_896, 2_932_897, 3_000_000,
        ];
        for days in (-250_000..250_000).step_by(7).chain(far) {
            let mut out = Vec::new();
            write_date(&mut out, days);
            let date = epoch + chrono::Duration::days(days as i64);
            assert_eq!(String::from_utf8(out).unwrap(), date.to_string(), "{days}");
        }
    }

    #[test]
    fn strings_are_quoted_only_when_necessary() {
        let cases = [
            ("plain", "plain"),
            ("", "\"\""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("\"", "\"\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\r", "\"cr\r\""),
            ("上海", "上海"),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_str(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{value:?}");
        }
    }

    /// The independent reference for whole tables is polars' own writer
    /// with the options the tables were published with before.
    #[test]
    fn tables_match_polars_csv_writer() {
        let n = 3 * BLOCK + 17;
        let mut df = df!(
            "customer_id" => (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>(),
            "name, \"quoted\"" => (0..n).map(|i| match i % 9 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("a,\"b\" {i}")),
                3 => Some("东方".to_string()),
                // Up to 12 bytes (held in polars' view) or longer, with a
                // character to quote or not.
                4 => Some("twelve bytes".to_string()),
                5 => Some(format!("a name longer than twelve bytes {i}")),
                6 => Some("cr\rlf\n".to_string()),
                7 => Some(format!("a long name, with a comma {i}")),
                _ => Some(format!("x{i}")),
            }).collect::<Vec<_>>(),
            "flag" => (0..n).map(|i| (i % 3 != 0).then_some(i % 2 == 0)).collect::<Vec<_>>(),
            "money" => (0..n).map(|i| (i % 7 != 0).then_some(i as f64 * 12.345 - 1e4)).collect::<Vec<_>>(),
            "share" => (0..n).map(|i| 1.0 / (i as f64 + 1.0) * 1e-3).collect::<Vec<_>>(),
            "small" => (0..n).map(|i| (i % 11) as f32 / 3.0).collect::<Vec<_>>(),
            "rank" => (0..n).map(|i| (i % 4 != 0).then_some(i as i64 - 5)).collect::<Vec<_>>(),
            "score" => (0..n).map(|i| (i % 5) as i32).collect::<Vec<_>>(),
            "line" => (0..n).map(|i| i as u64 * 1_000_003).collect::<Vec<_>>(),
            "tiny" => (0..n).map(|i| (i % 200) as u32).collect::<Vec<_>>(),
            // Every length about a view's 12 bytes, with a character to
            // quote at every place or none, and multibyte text.
            "short" => (0..n).map(|i| {
                let len = 1 + i % 14;
                let mut s: Vec<u8> = (0..len).map(|j| b'a' + (j % 26) as u8).collect();
                let at = (i / 14) % (len + 1);
                if at < len {
                    s[at] = [b',', b'"', b'\n', b'\r'][(i / 200) % 4];
                }
                match i % 97 {
                    0 => "东方红".to_string(),
                    1 => "，".to_string(),
                    _ => String::from_utf8(s).unwrap(),
                }
            }).collect::<Vec<_>>(),
        )
        .unwrap();
        let day = Column::new(
            "day".into(),
            (0..n)
                .map(|i| (i % 9 != 0).then_some(i as i32 * 3 - 20_000))
                .collect::<Vec<_>>(),
        )
        .cast(&DataType::Date)
        .unwrap();
        df.with_column(day).unwrap();
        df.with_column(Column::full_null("nothing".into(), n, &DataType::Null))
            .unwrap();
        assert!(encodable(df.schema()));

        let mut expected = Vec::new();
        CsvWriter::new(&mut expected)
            .include_header(true)
            .with_float_scientific(Some(false))
            .finish(&mut df.clone())
            .unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        let mut ours = header(&names);
        write_rows(&df, &mut ours).unwrap();
        assert!(
            ours == expected,
            "first difference at byte {:?}",
            first_difference(&ours, &expected)
        );
    }

    fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .or((a.len() != b.len()).then_some(a.len().min(b.len())))
    }
}
