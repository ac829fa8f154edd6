//! Parquet pages for numeric, date, boolean and text columns, encoded
//! here rather than by polars-parquet. Its writer estimates every column's
//! cardinality by hashing, builds dictionaries through a generic value
//! map and sends every definition level and dictionary key through a
//! generic run-length loop, one value at a time: writing the 10^6-row
//! `customer_scores` took ~1.5 s of CPU, a nightly run's largest single
//! cost. Here a column chunk is one data page (after a dictionary page
//! when it has one): definition levels are the validity bitmap's bytes as
//! bit-packed runs (Parquet packs them in the same bit order); integers
//! and dates of a narrow span get a dictionary keyed by indexing a table
//! of the span, text of repeated values one keyed by a hash map, and
//! keys are bit-packed in one pass; other numbers are copied
//! little-endian (PLAIN), text of nearly all distinct values too (each
//! after its length, in polars-parquet's page cuts). Text whose bounds
//! polars-parquet would truncate, and every other type, stay with it.

use std::borrow::Cow;
use std::collections::HashMap;

use foldhash::fast::FixedState;

use polars::prelude::ArrowDataType;
use polars_arrow::array::{Array, BooleanArray, PrimitiveArray, Utf8ViewArray, View};
use polars_arrow::bitmap::Bitmap;
use polars_parquet::parquet::CowBuffer;
use polars_parquet::parquet::encoding::Encoding;
use polars_parquet::parquet::metadata::Descriptor;
use polars_parquet::parquet::page::{DataPage, DataPageHeader, DataPageHeaderV1, DictPage, Page};
use polars_parquet::parquet::schema::Repetition;
use polars_parquet::parquet::schema::types::{ParquetType, PhysicalType, PrimitiveType};
use polars_parquet::parquet::statistics::{
    BinaryStatistics, BooleanStatistics, ParquetStatistics, PrimitiveStatistics,
};
use polars_parquet::write::{StatisticsOptions, Version, WriteOptions};

/// Values per bit-packed run (definition levels, dictionary keys):
/// polars-parquet's own limit, so no reader meets a longer run than
/// polars writes.
const RUN_VALUES: usize = 8192;

/// [`paged`]'s pages, `None` for a column it leaves to polars-parquet.
#[cfg(test)]
pub fn pages(array: &dyn Array, field: &ParquetType, options: &WriteOptions) -> Option<Vec<Page>> {
    match paged(array, field, options) {
        Paged::Pages(p) => Some(p),
        Paged::Plain | Paged::Theirs => None,
    }
}

/// What [`paged`] made of a column.
pub enum Paged {
    /// The column's pages, ours.
    Pages(Vec<Page>),
    /// Text of too many distinct values for a dictionary whose bounds
    /// polars-parquet truncates: for it to write PLAIN, as it would after
    /// hashing every value again to estimate their number (~2% of
    /// staging's samples on the typed store's ids).
    Plain,
    /// Left to polars-parquet, every encoding open.
    Theirs,
}

/// `array` (one row group's column) as Parquet pages: a dictionary page
/// and a data page of keys when its values repeat ([`worth_a_dictionary`];
/// integers and dates of a narrow span, text), else PLAIN data pages (one
/// for numbers; text in [`plain_text_pages`]). Left to polars-parquet:
/// text with long bounds ([`Paged::Plain`] when of many distinct values),
/// nested and other types, empty arrays, version-2 pages.
pub fn paged(array: &dyn Array, field: &ParquetType, options: &WriteOptions) -> Paged {
    let ParquetType::PrimitiveType(ty) = field else {
        return Paged::Theirs;
    };
    let optional = ty.field_info.repetition == Repetition::Optional;
    if array.is_empty() || options.version != Version::V1 || (!optional && array.null_count() > 0) {
        return Paged::Theirs;
    }
    let stats = &options.statistics;
    let encoded = match (array.dtype(), ty.physical_type) {
        (ArrowDataType::Utf8View, PhysicalType::ByteArray) => match array.as_any().downcast_ref() {
            Some(a) => match texts(a, optional, ty, stats) {
                Texts::Dictionary(e) => Some(*e),
                Texts::Many => {
                    return match plain_text_pages(a, optional, ty, options) {
                        Some(pages) => Paged::Pages(pages),
                        None => Paged::Plain,
                    };
                }
                Texts::Theirs => None,
            },
            None => None,
        },
        _ => others(array, optional, ty, stats),
    };
    match encoded {
        Some(e) => Paged::Pages(data_pages(array, ty, options, e)),
        None => Paged::Theirs,
    }
}

/// A column's data buffer, statistics and dictionary page.
type Encoded = (Vec<u8>, ParquetStatistics, Option<DictPage>);

/// [`paged`] of a column that is not text.
fn others(
    array: &dyn Array,
    optional: bool,
    ty: &PrimitiveType,
    stats: &StatisticsOptions,
) -> Option<Encoded> {
    let any = array.as_any();
    Some(match (array.dtype(), ty.physical_type) {
        (ArrowDataType::Int32 | ArrowDataType::Date32, PhysicalType::Int32) => {
            numbers::<i32>(any.downcast_ref()?, optional, ty, stats)
        }
        (ArrowDataType::Int64, PhysicalType::Int64) => {
            numbers::<i64>(any.downcast_ref()?, optional, ty, stats)
        }
        (ArrowDataType::Float32, PhysicalType::Float) => {
            numbers::<f32>(any.downcast_ref()?, optional, ty, stats)
        }
        (ArrowDataType::Float64, PhysicalType::Double) => {
            numbers::<f64>(any.downcast_ref()?, optional, ty, stats)
        }
        (ArrowDataType::Boolean, PhysicalType::Boolean) => {
            booleans(any.downcast_ref()?, optional, stats)
        }
        _ => return None,
    })
}

/// The data page (after its dictionary page, if any) of `array` encoded.
fn data_pages(
    array: &dyn Array,
    ty: &PrimitiveType,
    options: &WriteOptions,
    (buffer, statistics, dict): Encoded,
) -> Vec<Page> {
    let encoding = match dict {
        Some(_) => Encoding::RleDictionary,
        None => Encoding::Plain,
    };
    let header = DataPageHeader::V1(DataPageHeaderV1 {
        num_values: array.len() as i32,
        encoding: encoding.into(),
        definition_level_encoding: Encoding::Rle.into(),
        repetition_level_encoding: Encoding::Rle.into(),
        statistics: options.has_statistics().then_some(statistics),
    });
    // As polars-parquet describes its flat pages.
    let descriptor = Descriptor {
        primitive_type: ty.clone(),
        max_def_level: 0,
        max_rep_level: 0,
    };
    let data = Page::Data(DataPage::new(
        header,
        CowBuffer::Owned(buffer),
        descriptor,
        array.len(),
    ));
    match dict {
        Some(d) => vec![Page::Dict(d), data],
        None => vec![data],
    }
}

/// A number as Parquet stores it (little-endian) and as its statistics
/// order it.
trait Number: Copy + PartialOrd + polars_parquet::parquet::types::NativeType {
    fn put(self, out: &mut Vec<u8>);
    fn is_nan(self) -> bool;
    /// The value as a dictionary key's integer; `None` for floats.
    fn integer(self) -> Option<i64>;
}

macro_rules! number {
    ($t:ty, $nan:expr, $integer:expr) => {
        impl Number for $t {
            #[inline]
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn is_nan(self) -> bool {
                $nan(self)
            }
            #[inline]
            fn integer(self) -> Option<i64> {
                $integer(self)
            }
        }
    };
}
number!(i32, |_| false, |v| Some(v as i64));
number!(i64, |_| false, Some);
number!(f32, f32::is_nan, |_| None);
number!(f64, f64::is_nan, |_| None);

/// When a column is worth a dictionary, `distinct` values among the first
/// `seen` of its `len`: as polars-parquet decides for text, while its
/// distinct values are at most 3/4 of its values (a customer_id of the
/// typed store, repeated within a row group, gets one). A column whose
/// first [`SAMPLE`] values are nearly all distinct (customer_id of
/// `customer_scores`) is given up at once: text is then polars-parquet's
/// (which writes it plainly), numbers are written PLAIN.
fn worth_a_dictionary(distinct: usize, seen: usize, len: usize) -> bool {
    distinct <= (len * 3 / 4).max(64) && !(seen == SAMPLE && distinct > SAMPLE * 7 / 8)
}

const SAMPLE: usize = 1024;

/// A text column's dictionary page (its distinct values in order of first
/// appearance), then its definition levels and keys (RLE_DICTIONARY: the
/// keys' bit width, then bit-packed runs); statistics from the
/// dictionary, as polars-parquet takes them.
fn texts(
    array: &Utf8ViewArray,
    optional: bool,
    ty: &PrimitiveType,
    stats: &StatisticsOptions,
) -> Texts {
    let valid = array.validity().filter(|v| v.unset_bits() > 0);
    // Text of up to 12 bytes lies whole (zero-padded) in its 16-byte view:
    // such values are looked up by the view, hashed as one integer.
    let mut short: HashMap<u128, u32, FixedState> = Default::default();
    let mut long: HashMap<&[u8], u32, FixedState> = Default::default();
    let mut distinct: Vec<&[u8]> = Vec::new();
    let mut keys: Vec<u32> = Vec::with_capacity(array.len());
    let len = array.len() - array.null_count();
    let fits = each_valid(array.views(), valid, |i, view| {
        let next = distinct.len() as u32;
        let add = || {
            // SAFETY: `i` indexes the array's views.
            distinct.push(unsafe { array.value_unchecked(i) }.as_bytes());
            next
        };
        let k = if view.length <= View::MAX_INLINE_SIZE {
            *short.entry(view.as_u128()).or_insert_with(add)
        } else {
            // SAFETY: as above.
            let v = unsafe { array.value_unchecked(i) }.as_bytes();
            *long.entry(v).or_insert_with(add)
        };
        keys.push(k);
        worth_a_dictionary(distinct.len(), keys.len(), len)
    });
    let (min, max) = (distinct.iter().min(), distinct.iter().max());
    // polars-parquet truncates longer bounds (64 bytes by default); such
    // columns stay its own, so their statistics are what it writes.
    let truncated = |v: Option<&&[u8]>| {
        let limit = stats.binary_statistics_truncate_length_usize();
        v.zip(limit).is_some_and(|(v, l)| v.len() > l)
    };
    // polars-parquet tries a dictionary on any array of up to 128 values.
    if !fits && array.len() > 128 {
        return Texts::Many;
    }
    if !fits || truncated(min) || truncated(max) {
        return Texts::Theirs;
    }
    let mut dict = Vec::with_capacity(distinct.iter().map(|v| 4 + v.len()).sum());
    for v in &distinct {
        dict.extend_from_slice(&(v.len() as u32).to_le_bytes());
        dict.extend_from_slice(v);
    }
    let mut out = Vec::with_capacity(16 + keys.len());
    if optional {
        def_levels(&mut out, valid, array.len());
    }
    dictionary_keys(&mut out, &keys, distinct.len());
    let statistics = BinaryStatistics {
        primitive_type: ty.clone(),
        null_count: stats.null_count.then_some(array.null_count() as i64),
        distinct_count: None,
        min_value: min.filter(|_| stats.min_value).map(|v| v.to_vec()),
        max_value: max.filter(|_| stats.max_value).map(|v| v.to_vec()),
    }
    .serialize();
    let dict = DictPage::new(CowBuffer::Owned(dict), distinct.len(), false);
    Texts::Dictionary(Box::new((out, statistics, Some(dict))))
}

/// A text column not worth a dictionary as PLAIN data pages ([`plain_texts`]),
/// cut at the rows where polars-parquet cuts it: pages of about
/// `data_page_size` (1 MiB by default) by the values' mean length.
fn plain_text_pages(
    array: &Utf8ViewArray,
    optional: bool,
    ty: &PrimitiveType,
    options: &WriteOptions,
) -> Option<Vec<Page>> {
    let rows = array.len();
    let page = options
        .data_page_size
        .unwrap_or(1 << 20)
        .min((1 << 31) - (1 << 25));
    let per_row = (array.total_bytes_len() as f64 / rows as f64) as usize;
    let per_page = (page / (per_row + 1)).max(1);
    let mut pages = Vec::with_capacity(rows.div_ceil(per_page));
    for start in (0..rows).step_by(per_page) {
        let part = array.clone().sliced(start, per_page.min(rows - start));
        let encoded = plain_texts(&part, optional, ty, &options.statistics)?;
        pages.extend(data_pages(&part, ty, options, encoded));
    }
    Some(pages)
}

/// A text column not worth a dictionary as PLAIN: definition levels, then
/// each valid value's length (u32, little-endian) and bytes; bounds over
/// every value in byte order. polars-parquet writes the same bytes, but
/// copies each value by two calls and finds the bounds by comparing whole
/// slices (~2.5% of a cold uniform 10^7 run's samples: the typed store's
/// ids, `customer_scores`' ids and names). `None` when a bound is longer
/// than the statistics keep: polars-parquet then truncates it.
fn plain_texts(
    array: &Utf8ViewArray,
    optional: bool,
    ty: &PrimitiveType,
    stats: &StatisticsOptions,
) -> Option<Encoded> {
    let valid = array.validity().filter(|v| v.unset_bits() > 0);
    let views = array.views();
    // A value of up to 12 bytes is ordered by its view alone: its bytes,
    // first most significant (zero-padded), then its length, which orders
    // a value before the same bytes followed by zeros.
    let order = |view: &View| -> u128 { (view.as_u128() >> 32).swap_bytes() | view.length as u128 };
    let value = |i: usize| -> &[u8] {
        // SAFETY: `i` indexes the array's views.
        unsafe { array.value_unchecked(i) }.as_bytes()
    };
    // The bounds' indices: short values by their order, the others (and
    // any pair with one) by their bytes.
    let (mut lo, mut hi): (Option<usize>, Option<usize>) = (None, None);
    let (mut lo_key, mut hi_key) = (u128::MAX, 0u128);
    let mut long = false;
    // The values' bytes (a slice's total is not kept: it would be counted).
    let mut bytes = 0usize;
    each_valid(views, valid, |i, view| {
        bytes += view.length as usize;
        if view.length <= View::MAX_INLINE_SIZE && !long {
            let k = order(&view);
            if lo.is_none() || k < lo_key {
                (lo, lo_key) = (Some(i), k);
            }
            if hi.is_none() || k > hi_key {
                (hi, hi_key) = (Some(i), k);
            }
        } else {
            long = true;
            let v = value(i);
            if lo.is_none_or(|l| v < value(l)) {
                lo = Some(i);
            }
            if hi.is_none_or(|h| v > value(h)) {
                hi = Some(i);
            }
        }
        true
    });
    let (min, max) = (lo.map(value), hi.map(value));
    let limit = stats.binary_statistics_truncate_length_usize();
    let truncated = |v: Option<&[u8]>| v.zip(limit).is_some_and(|(v, l)| v.len() > l);
    if truncated(min) || truncated(max) {
        return None;
    }
    // 16 bytes to spare: a short value is stored as its whole view.
    let mut out = Vec::with_capacity(16 + array.len() / 4 + bytes + 4 * views.len() + 16);
    if optional {
        def_levels(&mut out, valid, array.len());
    }
    each_valid(views, valid, |i, view| {
        if view.length <= View::MAX_INLINE_SIZE {
            // A view's little-endian bytes are its length (u32), then its
            // inline bytes: the value as PLAIN has it, then padding that
            // the next value overwrites.
            let n = out.len();
            out.extend_from_slice(&view.as_u128().to_le_bytes());
            out.truncate(n + 4 + view.length as usize);
        } else {
            out.extend_from_slice(&view.length.to_le_bytes());
            out.extend_from_slice(value(i));
        }
        true
    });
    let statistics = BinaryStatistics {
        primitive_type: ty.clone(),
        null_count: stats.null_count.then_some(array.null_count() as i64),
        distinct_count: None,
        min_value: min.filter(|_| stats.min_value).map(<[u8]>::to_vec),
        max_value: max.filter(|_| stats.max_value).map(<[u8]>::to_vec),
    }
    .serialize();
    Some((out, statistics, None))
}

/// What [`texts`] made of a text column.
enum Texts {
    Dictionary(Box<Encoded>),
    /// Over 128 values, not [`worth_a_dictionary`]: PLAIN.
    Many,
    /// Longer bounds than the statistics keep, or few values:
    /// polars-parquet's to decide.
    Theirs,
}

/// RLE_DICTIONARY keys of a dictionary of `distinct` values: their bit
/// width, then bit-packed runs.
fn dictionary_keys(out: &mut Vec<u8>, keys: &[u32], distinct: usize) {
    // One bit at least: a width of 0 is legal but not every reader takes it.
    let width = (u32::BITS - (distinct.max(2) as u32 - 1).leading_zeros()) as usize;
    out.push(width as u8);
    for run in keys.chunks(RUN_VALUES) {
        let groups = run.len().div_ceil(8);
        uleb128(out, ((groups as u64) << 1) | 1);
        let (mut acc, mut bits) = (0u64, 0usize);
        for &k in run
            .iter()
            .chain(std::iter::repeat_n(&0, groups * 8 - run.len()))
        {
            acc |= (k as u64) << bits;
            bits += width;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
    }
}

/// Widest span (max − min) of an integer column given a dictionary: its
/// keys are then found by indexing a table of the span, not by hashing.
const MAX_SPAN: i64 = 1 << 16;

/// Definition levels then the non-null values. Statistics as the Parquet
/// format asks: NaN left out of the bounds, zero bounds as -0.0 and +0.0.
/// (polars-parquet's bounds of a column holding NaN can be wrong: on the
/// test's column of 0, 1, …, NaN, … it wrote a minimum of 116508.)
fn numbers<T: Number + polars_arrow::types::NativeType>(
    array: &PrimitiveArray<T>,
    optional: bool,
    ty: &PrimitiveType,
    stats: &StatisticsOptions,
) -> (Vec<u8>, ParquetStatistics, Option<DictPage>) {
    let values = array.values().as_slice();
    let valid = array.validity().filter(|v| v.unset_bits() > 0);
    let bounds = bounds(values, valid);
    let mut out = Vec::with_capacity(16 + size_of_val(values));
    if optional {
        def_levels(&mut out, valid, values.len());
    }
    let len = values.len() - array.null_count();
    let dict = match bounds.and_then(|(lo, hi)| Some((lo.integer()?, hi.integer()?))) {
        // Checked: the span of i64::MIN and i64::MAX overflows.
        Some((lo, hi)) if hi.checked_sub(lo).is_some_and(|s| s < MAX_SPAN) => {
            integer_keys(values, valid, lo, hi, len)
        }
        _ => None,
    };
    let dict = match dict {
        Some((keys, distinct)) => {
            dictionary_keys(&mut out, &keys, distinct.len());
            let mut page = Vec::with_capacity(distinct.len() * size_of::<T>());
            distinct.iter().for_each(|v| v.put(&mut page));
            Some(DictPage::new(CowBuffer::Owned(page), distinct.len(), false))
        }
        None => {
            plain(&mut out, values, valid);
            None
        }
    };
    let statistics = PrimitiveStatistics::<T> {
        primitive_type: ty.clone(),
        null_count: stats.null_count.then_some(array.null_count() as i64),
        distinct_count: None,
        min_value: bounds.filter(|_| stats.min_value).map(|b| b.0.norm_min()),
        max_value: bounds.filter(|_| stats.max_value).map(|b| b.1.norm_max()),
    }
    .serialize();
    (out, statistics, dict)
}

/// The smallest and largest of the values `valid` marks, NaN left out;
/// `None` when there is none. Without nulls, one loop of plain compares
/// from the first non-NaN value (the per-value `Option` state it replaced
/// kept the compiler from vectorizing the integers' loop).
fn bounds<T: Number>(values: &[T], valid: Option<&Bitmap>) -> Option<(T, T)> {
    if valid.is_some() {
        let mut bounds: Option<(T, T)> = None;
        each_valid(values, valid, |_, v| {
            if !v.is_nan() {
                bounds = Some(match bounds {
                    None => (v, v),
                    Some((lo, hi)) => (if v < lo { v } else { lo }, if v > hi { v } else { hi }),
                });
            }
            true
        });
        return bounds;
    }
    let first = values.iter().position(|v| !v.is_nan())?;
    let (mut lo, mut hi) = (values[first], values[first]);
    for &v in &values[first + 1..] {
        // A NaN compares false both ways: it moves neither bound.
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
    }
    Some((lo, hi))
}

/// The values `valid` marks, little-endian one after another (PLAIN):
/// without nulls the values' own bytes in one copy.
fn plain<T: Number>(out: &mut Vec<u8>, values: &[T], valid: Option<&Bitmap>) {
    #[cfg(target_endian = "little")]
    if valid.is_none() {
        // SAFETY: `T` is a primitive number (no padding, every byte
        // initialized), laid out as Parquet's PLAIN on a little-endian
        // machine; the slice covers exactly `values`' bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values))
        };
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(size_of_val(values));
    each_valid(values, valid, |_, v| {
        v.put(out);
        true
    });
}

/// The keys of integers spanning `lo..=hi` ([`MAX_SPAN`] at most) and
/// their distinct values in order of first appearance, or `None` when not
/// [`worth_a_dictionary`].
fn integer_keys<T: Number>(
    values: &[T],
    valid: Option<&Bitmap>,
    lo: i64,
    hi: i64,
    len: usize,
) -> Option<(Vec<u32>, Vec<T>)> {
    let mut slot = vec![u32::MAX; (hi - lo + 1) as usize];
    let (mut keys, mut distinct) = (Vec::with_capacity(len), Vec::new());
    let fits = each_valid(values, valid, |_, v| {
        // Within lo..=hi: the caller's bounds of these integers.
        let s = &mut slot[(v.integer().unwrap_or(lo) - lo) as usize];
        if *s == u32::MAX {
            *s = distinct.len() as u32;
            distinct.push(v);
        }
        keys.push(*s);
        worth_a_dictionary(distinct.len(), keys.len(), len)
    });
    fits.then_some((keys, distinct))
}

/// `f(index, value)` over the values `valid` marks (all when `None`)
/// while it returns true; whether it always did.
fn each_valid<T: Copy>(
    values: &[T],
    valid: Option<&Bitmap>,
    mut f: impl FnMut(usize, T) -> bool,
) -> bool {
    match valid {
        None => values.iter().enumerate().all(|(i, &v)| f(i, v)),
        Some(valid) => values
            .iter()
            .zip(valid.iter())
            .enumerate()
            .all(|(i, (&v, ok))| !ok || f(i, v)),
    }
}

/// Definition levels, then the non-null booleans bit-packed (PLAIN).
fn booleans(
    array: &BooleanArray,
    optional: bool,
    stats: &StatisticsOptions,
) -> (Vec<u8>, ParquetStatistics, Option<DictPage>) {
    let valid = array.validity().filter(|v| v.unset_bits() > 0);
    let mut out = Vec::with_capacity(16 + array.len() / 4);
    if optional {
        def_levels(&mut out, valid, array.len());
    }
    let kept: Cow<Bitmap> = match valid {
        None => Cow::Borrowed(array.values()),
        Some(valid) => Cow::Owned(
            array
                .values()
                .iter()
                .zip(valid.iter())
                .filter_map(|(v, ok)| ok.then_some(v))
                .collect(),
        ),
    };
    out.extend_from_slice(&packed(&kept));
    let (trues, n) = (kept.set_bits(), kept.len());
    let statistics = BooleanStatistics {
        null_count: stats.null_count.then_some(array.null_count() as i64),
        distinct_count: None,
        min_value: (stats.min_value && n > 0).then_some(trues == n),
        max_value: (stats.max_value && n > 0).then_some(trues > 0),
    }
    .serialize();
    (out, statistics, None)
}

/// Version-1 definition levels of a flat optional column: their length,
/// then one run-length run when nothing is null, else the validity bits
/// as bit-packed runs.
fn def_levels(out: &mut Vec<u8>, valid: Option<&Bitmap>, len: usize) {
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    match valid {
        None => {
            uleb128(out, (len as u64) << 1);
            out.push(1);
        }
        Some(valid) => {
            for run in packed(valid).chunks(RUN_VALUES / 8) {
                uleb128(out, ((run.len() as u64) << 1) | 1);
                out.extend_from_slice(run);
            }
        }
    }
    let n = (out.len() - start) as u32;
    out[start - 4..start].copy_from_slice(&n.to_le_bytes());
}

/// A bitmap's bits, least significant first, in ⌈len/8⌉ bytes with the
/// bits past its length zeroed.
fn packed(bits: &Bitmap) -> Cow<'_, [u8]> {
    let (bytes, offset, len) = bits.as_slice();
    if offset % 8 != 0 {
        let aligned: Bitmap = bits.iter().collect();
        return Cow::Owned(packed(&aligned).into_owned());
    }
    let bytes = &bytes[offset / 8..offset / 8 + len.div_ceil(8)];
    match len % 8 {
        0 => Cow::Borrowed(bytes),
        tail => {
            let mut v = bytes.to_vec();
            *v.last_mut().unwrap() &= (1u8 << tail) - 1;
            Cow::Owned(v)
        }
    }
}

fn uleb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use polars_arrow::array::{Float64Array, Int32Array, Int64Array};
    use polars_parquet::write::CompressionOptions;

    use super::*;

    fn options() -> WriteOptions {
        WriteOptions {
            statistics: StatisticsOptions::default(),
            compression: CompressionOptions::Uncompressed,
            version: Version::V1,
            data_page_size: None,
        }
    }

    fn optional(physical_type: PhysicalType) -> ParquetType {
        ParquetType::PrimitiveType(PrimitiveType::from_physical("c".into(), physical_type))
    }

    fn buffers(pages: Vec<Page>) -> Vec<Vec<u8>> {
        pages
            .into_iter()
            .map(|p| match p {
                Page::Data(d) => d.buffer().to_vec(),
                Page::Dict(d) => d.buffer.to_vec(),
            })
            .collect()
    }

    /// Bounds leave NaN out wherever it stands (first, between, last),
    /// with nulls or without; all NaN has none. PLAIN without nulls is the
    /// values' little-endian bytes, as with nulls it is the valid ones'.
    #[test]
    fn bounds_skip_nan_and_plain_is_the_values_little_endian() {
        let nan = f64::NAN;
        assert_eq!(
            bounds(&[nan, 3.0, -1.5, nan, 2.0, nan], None),
            Some((-1.5, 3.0))
        );
        assert_eq!(bounds(&[nan, nan], None), None);
        assert_eq!(bounds::<i64>(&[], None), None);
        assert_eq!(bounds(&[7i32, -3, 12, 0], None), Some((-3, 12)));
        let valid = Bitmap::from([false, true, true, false, true]);
        assert_eq!(
            bounds(&[-9.0, nan, 4.0, 99.0, 1.0], Some(&valid)),
            Some((1.0, 4.0))
        );
        let mut out = Vec::new();
        plain(&mut out, &[1i64, -2], None);
        let mut expected = 1i64.to_le_bytes().to_vec();
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        assert_eq!(out, expected);
        let mut out = Vec::new();
        plain(
            &mut out,
            &[5i32, 6, 7],
            Some(&Bitmap::from([true, false, true])),
        );
        assert_eq!(out, [5, 0, 0, 0, 7, 0, 0, 0]);
    }

    /// [1, null, 70000] (a span too wide for a dictionary): levels 4
    /// bytes long (a bit-packed run of one group, 0b101), then 1 and 70000
    /// little-endian. Sliced at bit 3 of its bitmap, the same column gives
    /// the same bytes.
    #[test]
    fn a_nullable_column_is_its_validity_bits_then_its_values() {
        let expected = vec![vec![
            2, 0, 0, 0, 0x03, 0b101, 1, 0, 0, 0, 0x70, 0x11, 0x01, 0,
        ]];
        let a = Int32Array::from([Some(1), None, Some(70_000)]);
        let field = optional(PhysicalType::Int32);
        assert_eq!(buffers(pages(&a, &field, &options()).unwrap()), expected);
        let longer = Int32Array::from([Some(9), None, None, Some(1), None, Some(70_000)]);
        let sliced = longer.sliced(3, 3);
        assert_eq!(
            buffers(pages(&sliced, &field, &options()).unwrap()),
            expected
        );
        // Nothing null: one run of 3 ones (header 3 << 1, value 1).
        let full = Int32Array::from([Some(1), Some(2), Some(70_000)]);
        let got = buffers(pages(&full, &field, &options()).unwrap());
        assert_eq!(
            got,
            vec![vec![
                2, 0, 0, 0, 6, 1, 1, 0, 0, 0, 2, 0, 0, 0, 0x70, 0x11, 0x01, 0
            ]]
        );
    }

    /// [7, null, 9, 7]: a dictionary of 7 then 9, levels 0b1101, keys 0,
    /// 1, 0 one bit wide in one bit-packed group. Floats get no dictionary.
    #[test]
    fn integers_of_a_narrow_span_are_a_dictionary_and_its_keys() {
        let a = Int64Array::from([Some(7), None, Some(9), Some(7)]);
        let got = buffers(pages(&a, &optional(PhysicalType::Int64), &options()).unwrap());
        let mut dict = 7i64.to_le_bytes().to_vec();
        dict.extend(9i64.to_le_bytes());
        assert_eq!(
            got,
            vec![dict, vec![2, 0, 0, 0, 0x03, 0b1101, 1, 0x03, 0b010]]
        );
        // The widest span is written plain (its width overflows an i64).
        let wide = Int64Array::from([Some(i64::MIN), Some(i64::MAX), Some(i64::MIN)]);
        let got = pages(&wide, &optional(PhysicalType::Int64), &options()).unwrap();
        assert!(matches!(got[..], [Page::Data(_)]));
        let f = Float64Array::from([Some(7.0), None, Some(9.0), Some(7.0)]);
        let got = pages(&f, &optional(PhysicalType::Double), &options()).unwrap();
        assert!(matches!(got[..], [Page::Data(_)]));
    }

    /// ["b", "a", "b", null]: a dictionary of "b" then "a" (each after its
    /// length), keys 0, 1, 0 one bit wide in one bit-packed group.
    #[test]
    fn text_of_few_values_is_a_dictionary_and_its_keys() {
        let a = Utf8ViewArray::from_slice([Some("b"), Some("a"), Some("b"), None]);
        let field = optional(PhysicalType::ByteArray);
        let got = buffers(pages(&a, &field, &options()).unwrap());
        assert_eq!(got[0], [1, 0, 0, 0, b'b', 1, 0, 0, 0, b'a']);
        assert_eq!(got[1], [2, 0, 0, 0, 0x03, 0b0111, 1, 0x03, 0b010]);
        // Values past 12 bytes (not inline in their views) alike.
        let long = "past twelve bytes";
        let a = Utf8ViewArray::from_slice([Some(long), Some("a"), Some(long), None]);
        let got = buffers(pages(&a, &field, &options()).unwrap());
        let mut dict = vec![17, 0, 0, 0];
        dict.extend(long.as_bytes());
        dict.extend([1, 0, 0, 0, b'a']);
        assert_eq!(got[0], dict);
        assert_eq!(got[1], [2, 0, 0, 0, 0x03, 0b0111, 1, 0x03, 0b010]);
        // Nearly all distinct, or more than 3/4 distinct: one PLAIN page.
        let ids: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let ids = Utf8ViewArray::from_slice_values(&ids);
        let mostly: Vec<String> = (0..5000).map(|i| (i % 3900).to_string()).collect();
        let mostly = Utf8ViewArray::from_slice_values(&mostly);
        // Both written PLAIN: the pages polars-parquet writes when it
        // counts and decides so itself, headers and bounds too.
        let theirs_with = |o: WriteOptions, a: &Utf8ViewArray, field: &ParquetType, e: Encoding| {
            let a: Box<dyn Array> = a.to_boxed();
            polars_parquet::write::array_to_columns(a, field.clone(), o, &[e])
                .unwrap()
                .into_iter()
                .flat_map(|pages| pages.map(|p| p.unwrap()))
                .collect::<Vec<Page>>()
        };
        let theirs = |a: &Utf8ViewArray, field: &ParquetType, e: Encoding| {
            theirs_with(options(), a, field, e)
        };
        let described = |pages: Vec<Page>| -> Vec<(String, Vec<u8>)> {
            pages
                .into_iter()
                .map(|p| match p {
                    Page::Data(d) => (format!("{:?}", d.header()), d.buffer().to_vec()),
                    Page::Dict(_) => panic!("a dictionary"),
                })
                .collect()
        };
        // Short and long values, nulls, bytes past ASCII, a value that is
        // another's prefix and one that ends in a zero byte.
        let mixed: Vec<Option<String>> = (0..3000)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(format!("客户{i}")),
                2 => Some(format!("a customer named {i}")),
                3 => Some(format!("{i}\0")),
                _ => Some(format!("{}", i * 7919 % 10007)),
            })
            .collect();
        let mixed = Utf8ViewArray::from_slice(&mixed);
        let short_only: Vec<Option<String>> = (0..3000)
            .map(|i| (i % 5 != 0).then(|| format!("{}", (i * 7919) % 100_003)))
            .collect();
        let short_only = Utf8ViewArray::from_slice(&short_only);
        let mut required = PrimitiveType::from_physical("c".into(), PhysicalType::ByteArray);
        required.field_info.repetition = Repetition::Required;
        let required = ParquetType::PrimitiveType(required);
        for a in [&ids, &mostly, &mixed, &short_only] {
            let ours = pages(a, &field, &options()).expect("ours");
            assert_eq!(
                described(ours),
                described(theirs(a, &field, Encoding::Plain))
            );
            assert_eq!(
                described(theirs(a, &field, Encoding::Plain)),
                described(theirs(a, &field, Encoding::RleDictionary))
            );
        }
        for a in [&ids, &mostly] {
            let ours = pages(a, &required, &options()).expect("ours");
            assert_eq!(
                described(ours),
                described(theirs(a, &required, Encoding::Plain))
            );
        }
        // Cut into pages where polars-parquet cuts them (1 KiB pages of
        // 100-200 values), each with its own levels and bounds; most
        // slices' validity starts mid-byte.
        let small = WriteOptions {
            data_page_size: Some(1024),
            ..options()
        };
        for a in [&mixed, &short_only] {
            let ours = pages(a, &field, &small).expect("ours");
            assert!(ours.len() > 10, "{} pages", ours.len());
            let theirs = theirs_with(small, a, &field, Encoding::Plain);
            assert_eq!(described(ours), described(theirs));
        }
        // A bound over 64 bytes, which polars-parquet truncates: its own.
        let mut wide: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        wide.push("z".repeat(80));
        let wide = Utf8ViewArray::from_slice_values(&wide);
        assert!(matches!(paged(&wide, &field, &options()), Paged::Plain));
        // Up to 128 values polars-parquet tries a dictionary however many
        // are distinct: left to it.
        let few: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let few = Utf8ViewArray::from_slice_values(&few);
        assert!(matches!(paged(&few, &field, &options()), Paged::Theirs));
        // Half distinct, the first SAMPLE values too: a dictionary of 2500
        // values, keys 12 bits wide.
        let half: Vec<String> = (0..5000).map(|i| (i / 2).to_string()).collect();
        let half = Utf8ViewArray::from_slice_values(&half);
        let got = pages(&half, &field, &options()).unwrap();
        let Page::Dict(d) = &got[0] else { panic!() };
        assert_eq!(d.num_values, 2500);
        let keys = buffers(got).pop().unwrap();
        let levels = u32::from_le_bytes(keys[..4].try_into().unwrap()) as usize;
        assert_eq!(keys[4 + levels], 12);
    }

    #[test]
    fn uleb128_is_seven_bits_a_byte_low_first() {
        let mut out = Vec::new();
        for v in [0, 127, 128, 300] {
            uleb128(&mut out, v);
        }
        assert_eq!(out, [0, 0x7f, 0x80, 0x01, 0xac, 0x02]);
    }
}
