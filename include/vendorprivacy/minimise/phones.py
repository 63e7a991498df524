"""Vectorised E.164 normalisation that agrees with ``phonenumbers`` (the scalar reference decides).

``normalise.phone_e164(value, region)`` = ``phonenumbers.parse`` + ``is_valid_number`` + E.164 formatting,
one Python call per value (~33k values/s): at a million customers that is the slowest step of a feed.
``e164_array`` computes the same answer for whole Arrow arrays. It is a port of the library's own parse and
validity steps, expressed as RE2 regex passes over digit strings, driven by the library's *own* metadata
(the same patterns, lengths, prefixes, country codes), for the inputs whose parse is simple:

  * a value made of digits and the separators `` ()-./`` only, with an optional leading ``+`` (no letters,
    no extension, no second number), 3 to 20 digits, a region the library supports;
  * a country calling code that belongs to geographic regions only, metadata without a national-prefix
    transform rule, and patterns that RE2 compiles.

Everything else (nulls, blanks, letters, extensions, unusual prefixes, non-geographic codes...) goes to the
scalar reference, one value at a time. Each call also re-checks a sample of the vectorised answers against
the scalar reference; a single disagreement makes the whole call fall back to the scalar reference (and is
logged, without values). Tests compare the two on every phone of a generated shop and on fuzzed variants.
"""
from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

SHAPE = r"^[ \t]*(?:\+[0-9]|\(?[0-9])[0-9 ().\-/]*[0-9][ \t]*$"
MIN_DIGITS, MAX_DIGITS, MAX_INPUT = 3, 20, 250
SAMPLE = 48  # vectorised answers re-checked against the scalar reference per call


# ------------------------------------------------------------------ the library's metadata, prepared once
def _pn():
    import phonenumbers
    from phonenumbers import phonenumberutil as u

    return phonenumbers, u


_TYPE_DESCS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
               "fixed_line")


class _Meta:
    """What the vectorised steps need from one region's PhoneMetadata."""

    def __init__(self, md, u):
        self.md = md
        self.country_code = md.country_code
        self.cc_str = str(md.country_code)
        gd = md.general_desc
        self.general_pattern = gd.national_number_pattern if gd is not None else None
        self.general_lengths = tuple(gd.possible_length) if gd is not None else ()
        self.national_prefix = md.national_prefix_for_parsing or None
        self.transform = md.national_prefix_transform_rule or None
        self.idd = md.international_prefix or None
        # _test_number_length depends on the length only: tabulate it.
        results = [u._test_number_length("9" * n, md) for n in range(0, MAX_DIGITS + 4)]
        vr = u.ValidationResult
        # per length: TOO_LONG? / usable after stripping the national prefix (parse() keeps the stripped form
        # unless it is TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY or INVALID_LENGTH)
        self.too_long = np.array([r == vr.TOO_LONG for r in results] + [True])
        self.strip_ok = np.array([r not in (vr.TOO_SHORT, vr.IS_POSSIBLE_LOCAL_ONLY, vr.INVALID_LENGTH)
                                  for r in results] + [False])
        descs = [getattr(md, name) for name in _TYPE_DESCS]
        if not md.same_mobile_and_fixed_line_pattern:
            descs.append(md.mobile)
        self.type_descs = [(tuple(d.possible_length), d.national_number_pattern) for d in descs
                           if d is not None and d.national_number_pattern]
        self._valid_by_length: dict[int, str | None] = {}

    def valid_pattern(self, length: int) -> str | None:
        """One RE2 pattern that fully matches exactly the numbers of this length that are of a known type
        (general description *and* one of the type descriptions, each with its possible lengths)."""
        if length not in self._valid_by_length:
            pattern = None
            general_ok = self.general_pattern and (not self.general_lengths or length in self.general_lengths)
            if general_ok:
                alts = [p for lengths, p in self.type_descs if not lengths or length in lengths]
                if alts:
                    pattern = "(?:" + "|".join(f"(?:{p})" for p in alts) + ")"
            self._valid_by_length[length] = pattern
        return self._valid_by_length[length]


@lru_cache(maxsize=None)
def _any_meta(region: str) -> _Meta | None:
    """A region's metadata whose patterns RE2 compiles (enough to *validate* numbers with it)."""
    phonenumbers, u = _pn()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    md = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    if md is None:
        return None
    meta = _Meta(md, u)
    return meta if _re2_ok(meta) else None


@lru_cache(maxsize=None)
def _region_meta(region: str) -> _Meta | None:
    """Metadata the fast path may also *parse* with: no national-prefix transform rule."""
    meta = _any_meta(region)
    return meta if meta is not None and not meta.transform else None


@lru_cache(maxsize=None)
def _cc_meta(cc: int) -> tuple[_Meta, tuple[tuple[str, _Meta], ...]] | None:
    """(metadata used to parse numbers of this calling code, [(region, metadata)...] to validate them)."""
    phonenumbers, u = _pn()
    regions = u.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions or u.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    main = _region_meta(u.region_code_for_country_code(cc))
    if main is None:
        return None
    members = []
    for r in regions:
        if phonenumbers.PhoneMetadata.metadata_for_region(r, None) is None:
            continue  # the library skips regions without metadata too
        m = _any_meta(r)
        if m is None:
            return None
        members.append((r, m))
    return main, tuple(members)


def _re2_ok(meta: _Meta) -> bool:
    probe = pa.array(["0123456789"])
    patterns = [meta.general_pattern, meta.national_prefix, meta.idd, getattr(meta.md, "leading_digits", None)]
    patterns += [p for _, p in meta.type_descs]
    try:
        for p in patterns:
            if p:
                pc.match_substring_regex(probe, pattern=f"^(?:{p})$")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


@lru_cache(maxsize=1)
def _calling_codes() -> tuple[frozenset, frozenset, frozenset]:
    _, u = _pn()
    codes = [str(c) for c in u.COUNTRY_CODE_TO_REGION_CODE]
    return tuple(frozenset(c for c in codes if len(c) == n) for n in (1, 2, 3))  # type: ignore[return-value]


# ------------------------------------------------------------------ vectorised helpers (string arrays of digits)
def _full(arr: pa.Array, pattern: str | None) -> np.ndarray:
    if not pattern or len(arr) == 0:
        return np.zeros(len(arr), dtype=bool)
    return pc.fill_null(pc.match_substring_regex(arr, pattern=f"^(?:{pattern})$"), False).to_numpy(zero_copy_only=False)


def _digits(arr: pa.Array) -> pa.Array:
    """Each string with everything but the ASCII digits removed (nulls become ""), on the raw UTF-8 buffer:
    bytes 0x30-0x39 are never part of a multi-byte sequence."""
    arr = pc.fill_null(arr, "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1]
    data = arr.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    raw = raw[offsets[0]:offsets[-1]]
    keep = (raw >= 48) & (raw <= 57)
    cum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    new_offsets = cum[offsets - offsets[0]].astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(new_offsets.tobytes()), pa.py_buffer(raw[keep].tobytes()))


def _lengths(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.utf8_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _strip_national_prefix(num: pa.Array, meta: _Meta) -> pa.Array:
    """_maybe_strip_national_prefix_carrier_code, without a transform rule (those regions are not vectorised)."""
    if not meta.national_prefix or len(num) == 0:
        return num
    head = f"^(?:{meta.national_prefix})"
    matched = pc.fill_null(pc.match_substring_regex(num, pattern=head), False).to_numpy(zero_copy_only=False)
    matched &= _lengths(num) > 0
    if not matched.any():
        return num
    stripped = pc.replace_substring_regex(num, pattern=head, replacement="", max_replacements=1)
    keep_original = _full(num, meta.general_pattern) & ~_full(stripped, meta.general_pattern)
    use = matched & ~keep_original
    return pc.if_else(pa.array(use), stripped, num)


def _by_length(table: np.ndarray, num: pa.Array) -> np.ndarray:
    return table[np.minimum(_lengths(num), len(table) - 1)]


def _extract_cc(digits: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """_extract_country_code: (calling code, 0 when none; the rest of the number)."""
    n = len(digits)
    cc = np.zeros(n, dtype=np.int64)
    rest = digits
    first_zero = pc.fill_null(pc.starts_with(digits, "0"), True).to_numpy(zero_copy_only=False)
    taken = first_zero.copy()
    cut = np.zeros(n, dtype=np.int64)
    for width, codes in zip((1, 2, 3), _calling_codes()):
        prefix = pc.utf8_slice_codeunits(digits, 0, width)
        hit = pc.fill_null(pc.is_in(prefix, value_set=pa.array(sorted(codes), pa.string())), False).to_numpy(
            zero_copy_only=False)
        hit &= ~taken & (_lengths(digits) >= width)
        if hit.any():
            cc[hit] = pc.cast(pc.filter(prefix, pa.array(hit)), pa.int64()).to_numpy()
            cut[hit] = width
        taken |= hit
    if cut.any():
        rest = _slice_from(digits, cut)
    return cc, rest


def _slice_from(arr: pa.Array, start: np.ndarray) -> pa.Array:
    out = arr
    for width in np.unique(start):
        if width == 0:
            continue
        mask = pa.array(start == width)
        out = pc.if_else(mask, pc.utf8_slice_codeunits(arr, int(width)), out)
    return out


# ------------------------------------------------------------------ the port, per group of rows
def _validate(cc: int, nsn: pa.Array) -> np.ndarray:
    """region_code_for_number + is_valid_number_for_region, for numbers of one calling code."""
    info = _cc_meta(cc)
    n = len(nsn)
    valid = np.zeros(n, dtype=bool)
    if info is None or n == 0:
        return valid
    _, members = info
    lengths = _lengths(nsn)
    if len(members) == 1:
        return _known_type(nsn, lengths, members[0][1])
    undecided = np.ones(n, dtype=bool)
    for _, meta in members:
        if not undecided.any():
            break
        rows = np.flatnonzero(undecided)
        sub = nsn.take(pa.array(rows))
        leading = getattr(meta.md, "leading_digits", None)
        if leading:
            hit = pc.fill_null(pc.match_substring_regex(sub, pattern=f"^(?:{leading})"), False).to_numpy(
                zero_copy_only=False)
            if hit.any():  # chosen by its leading digits: valid if of a known type for this region
                valid[rows[hit]] = _known_type(sub.filter(pa.array(hit)), lengths[rows[hit]], meta)
        else:  # chosen because it is of a known type for this region: valid by the same test
            hit = _known_type(sub, lengths[rows], meta)
            valid[rows[hit]] = True
        undecided[rows[hit]] = False
    return valid


def _known_type(nsn: pa.Array, lengths: np.ndarray, meta: _Meta) -> np.ndarray:
    """_number_type_helper(...) != UNKNOWN."""
    out = np.zeros(len(nsn), dtype=bool)
    for length in np.unique(lengths):
        pattern = meta.valid_pattern(int(length))
        if pattern is None:
            continue
        rows = lengths == length
        sub = nsn.filter(pa.array(rows))
        out[rows] = _full(sub, meta.general_pattern) & _full(sub, pattern)
    return out



def _fast(values: pa.Array, regions: tuple[np.ndarray, np.ndarray], rows: np.ndarray,
          all_digits: pa.Array | None = None) -> tuple[np.ndarray, np.ndarray]:
    """E.164 for ``rows`` (indices into values, all of simple shape). Returns (handled mask, results)."""
    sub = values.take(pa.array(rows))
    n = len(rows)
    handled = np.zeros(n, dtype=bool)
    result = np.full(n, None, dtype=object)
    stripped = pc.utf8_ltrim(sub, characters=" \t")
    plus = pc.fill_null(pc.starts_with(stripped, "+"), False).to_numpy(zero_copy_only=False)
    digits = all_digits.take(pa.array(rows)) if all_digits is not None else _digits(sub)
    codes_of_rows = regions[0][rows]
    names = regions[1]

    # Each row ends in: country code (0 = none), national number, metadata for the final stripping step.
    cc = np.zeros(n, dtype=np.int64)
    national: list[pa.Array] = []
    pieces_idx: list[np.ndarray] = []
    final_meta_key: list[object] = []

    def take(mask):
        return digits.filter(pa.array(mask))

    # 1. '+' numbers: the calling code follows the plus.
    if plus.any():
        idx = np.flatnonzero(plus)
        d = take(plus)
        short = _lengths(d) <= 2  # TOO_SHORT_AFTER_IDD
        code, rest = _extract_cc(d)
        ok = ~short & (code > 0)
        # a '+' with no known code: the library retries without the '+': leave those to the scalar reference
        for c in np.unique(code[ok]):
            sel = ok & (code == c)
            info = _cc_meta(int(c))
            if info is None:
                continue
            cc[idx[sel]] = c
            national.append(rest.filter(pa.array(sel)))
            pieces_idx.append(idx[sel])
            final_meta_key.append(info[0])
        handled[idx[short]] = True  # result None

    # 2. national or IDD-prefixed numbers, per region.
    for code in np.unique(codes_of_rows[~plus]) if (~plus).any() else []:
        region = names[code]
        meta = _region_meta(region)
        if meta is None:
            continue
        sel_mask = (~plus) & (codes_of_rows == code)
        idx = np.flatnonzero(sel_mask)
        d = take(sel_mask)
        lens = _lengths(d)
        idd_hit = np.zeros(len(idx), dtype=bool)
        after_idd = d
        if meta.idd:
            head = f"^(?:{meta.idd})"
            idd_hit = pc.fill_null(pc.match_substring_regex(d, pattern=head), False).to_numpy(zero_copy_only=False)
            if idd_hit.any():
                after_idd = pc.replace_substring_regex(d, pattern=head, replacement="", max_replacements=1)
                zero_next = pc.fill_null(pc.starts_with(after_idd, "0"), False).to_numpy(zero_copy_only=False)
                idd_hit &= ~zero_next
        # 2a. IDD: like '+', but a failure is final (no retry without a plus).
        if idd_hit.any():
            a = after_idd.filter(pa.array(idd_hit))
            ii = idx[idd_hit]
            short = _lengths(a) <= 2
            code, rest = _extract_cc(a)
            handled[ii[short | (code == 0)]] = True  # None
            ok = ~short & (code > 0)
            for c in np.unique(code[ok]):
                sel = ok & (code == c)
                info = _cc_meta(int(c))
                if info is None:
                    continue
                cc[ii[sel]] = c
                national.append(rest.filter(pa.array(sel)))
                pieces_idx.append(ii[sel])
                final_meta_key.append(info[0])
        # 2b. no IDD: maybe the region's own code without '+', else a national number of the region.
        dom = ~idd_hit
        if dom.any():
            a = d.filter(pa.array(dom))
            ii = idx[dom]
            starts = pc.fill_null(pc.starts_with(a, meta.cc_str), False).to_numpy(zero_copy_only=False)
            own_code = np.zeros(len(ii), dtype=bool)
            pot = a
            if starts.any():
                pot = _strip_national_prefix(pc.utf8_slice_codeunits(a, len(meta.cc_str)), meta)
                full_ok = _full(a, meta.general_pattern)
                pot_ok = _full(pot, meta.general_pattern)
                too_long = _by_length(meta.too_long, a)
                own_code = starts & ((~full_ok & pot_ok) | too_long)
            if own_code.any():
                info = _cc_meta(meta.country_code)
                if info is not None:
                    cc[ii[own_code]] = meta.country_code
                    national.append(pot.filter(pa.array(own_code)))
                    pieces_idx.append(ii[own_code])
                    final_meta_key.append(info[0])
            plain = ~own_code
            if plain.any() and _cc_meta(meta.country_code) is not None:
                # no code found: the region's code, and the region's own metadata for the final step
                cc[ii[plain]] = meta.country_code
                national.append(a.filter(pa.array(plain)))
                pieces_idx.append(ii[plain])
                final_meta_key.append(meta)

    # 3. parse()'s tail with the final metadata, then validity, then E.164.
    for nat, ii, meta in zip(national, pieces_idx, final_meta_key):
        if len(ii) == 0:
            continue
        lens = _lengths(nat)
        too_short = lens < 2
        pot = _strip_national_prefix(nat, meta)
        use_pot = _by_length(meta.strip_ok, pot)
        nsn = pc.if_else(pa.array(use_pot), pot, nat)
        nlen = _lengths(nsn)
        out_of_range = too_short | (nlen < 2) | (nlen > 17)
        handled[ii] = True
        codes = cc[ii]
        for c in np.unique(codes):
            sel = (codes == c) & ~out_of_range
            if not sel.any():
                continue
            sub_nsn = nsn.filter(pa.array(sel))
            valid = _validate(int(c), sub_nsn)
            if valid.any():
                formatted = pc.binary_join_element_wise(pa.scalar(f"+{int(c)}"), sub_nsn.filter(pa.array(valid)), "")
                result[ii[sel][valid]] = np.array(formatted.to_pylist() + [None], dtype=object)[:-1]
    return handled, result


# ------------------------------------------------------------------ public
def _regions(regions: pa.Array | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-cased region per row as the scalar form does it (``(region or "").upper() or None``), computed
    once per distinct value; "" where there is none. Returns (per-row names, per-row codes, names by code)."""
    if regions is None:
        names = np.array([""], dtype=object)
        codes = np.zeros(n, dtype=np.int64)
        return names[codes], codes, names
    text = regions if pa.types.is_string(regions.type) else pc.cast(regions, pa.string())
    enc = pc.dictionary_encode(text)
    names = np.array([(v or "").upper() for v in enc.dictionary.to_pylist()] + [""], dtype=object)
    codes = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)
    return names[codes], codes, names


def e164_array(values: pa.Array, regions: pa.Array | None, *, check: int = SAMPLE) -> pa.Array:
    """E.164 with '+' for each value (None where the scalar reference says None). Agrees with
    ``normalise.phone_e164`` value by value; re-checks ``check`` answers against it on every call."""
    from .normalise import phone_e164

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(regions, pa.ChunkedArray):
        regions = regions.combine_chunks()
    n = len(values)
    if n == 0:
        return pa.array([], pa.string())
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    region_np, region_codes, region_names = _regions(regions, n)
    shape = pc.fill_null(pc.match_substring_regex(text, pattern=SHAPE), False).to_numpy(zero_copy_only=False)
    all_digits = _digits(text)
    digit_count = _lengths(all_digits)
    shape &= (digit_count >= MIN_DIGITS) & (digit_count <= MAX_DIGITS) & (_lengths(text) <= MAX_INPUT)
    for code in np.unique(region_codes[shape]) if shape.any() else []:
        r = region_names[code]
        if not r or _region_meta(r) is None:
            shape &= region_codes != code
    out = np.full(n, None, dtype=object)
    done = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(shape)
    if len(rows):
        handled, result = _fast(text, (region_codes, region_names), rows, all_digits)
        out[rows[handled]] = result[handled]
        done[rows[handled]] = True
    rest = np.flatnonzero(~done)
    if len(rest):
        raw = text.take(pa.array(rest)).to_pylist()
        out[rest] = np.array([phone_e164(v, region_np[j] or None) for v, j in zip(raw, rest.tolist())] + [None],
                             dtype=object)[:-1]
    fast_rows = np.flatnonzero(done)
    if check and len(fast_rows):
        pick = np.unique(fast_rows[np.linspace(0, len(fast_rows) - 1, num=min(check, len(fast_rows))).astype(np.int64)])
        sample = text.take(pa.array(pick)).to_pylist()
        if any(phone_e164(v, region_np[j] or None) != out[j] for v, j in zip(sample, pick.tolist())):
            log.warning("vectorised E.164 disagreed with the phonenumbers reference on a sampled value; this "
                        "batch of %d values falls back to the reference", n)
            raw = text.to_pylist()
            return pa.array([phone_e164(v, r or None) for v, r in zip(raw, region_np.tolist())], pa.string())
    return pa.array(out, pa.string())
