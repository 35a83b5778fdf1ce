import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.hw import I386, I686_PAE, TINY, X86_64, PagingFormat, PTEFlags

FORMATS = [X86_64, I686_PAE, I386, TINY]

# OSTEP's multi-level paging homework: 32-byte pages, 5+5 index bits, one-byte entries with the
# valid bit on top and a 7-bit frame number below it.
OSTEP = PagingFormat(name="ostep", page_shift=5, level_bits=(5, 5), entry_size=1,
                     present_bit=7, frame_shift=0, frame_bits=7)


def test_x86_64_geometry():
    assert X86_64.page_size == 4096 and X86_64.levels == 4
    assert X86_64.virtual_address_bits == 48
    assert X86_64.indices(0x2000200000) == (0, 128, 1, 0)
    assert X86_64.mask(PTEFlags.NO_EXECUTE) == 1 << 63
    assert X86_64.span(2) == 2 * 1024 * 1024


def test_i686_pae_and_i386_geometry():
    assert I686_PAE.indices(0xC0200000) == (3, 1, 0)
    assert I686_PAE.entries_per_table(0) == 4
    assert I386.indices(0xC0200000) == (0x300, 0x200)
    assert not I386.has(PTEFlags.NO_EXECUTE)


def test_tiny_fits_on_one_screen():
    assert TINY.page_size == 16 and TINY.virtual_address_bits == 12
    assert TINY.max_physical_address == 512
    assert TINY.encode(0x1A, PTEFlags.PRESENT | PTEFlags.READ_WRITE) == 0b1101_1010


def test_ostep_style_one_byte_entries():
    entry = OSTEP.encode(0x55, PTEFlags.PRESENT)
    assert entry == 0x80 | 0x55
    assert OSTEP.decode_frame(entry) == 0x55
    assert OSTEP.decode_flags(entry) == PTEFlags.PRESENT
    assert OSTEP.indices(0x611C) == (0x18, 0x08)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_encode_decode_round_trip(fmt):
    @given(st.integers(0, fmt.frame_mask),
           st.sets(st.sampled_from([f for f in PTEFlags if fmt.has(f)])))
    def check(frame, flag_set):
        flags = PTEFlags(0)
        for flag in flag_set:
            flags |= flag
        entry = fmt.encode(frame, flags)
        assert entry < 1 << (8 * fmt.entry_size)
        assert fmt.decode_frame(entry) == frame
        assert fmt.decode_flags(entry) == flags

    check()


def test_bad_formats_and_entries_are_refused_clearly():
    with pytest.raises(ValueError, match="overlap"):
        PagingFormat("bad", 4, (4,), 1, present_bit=0, frame_shift=0, frame_bits=4)
    with pytest.raises(ValueError, match="fit in one page"):
        PagingFormat("bad", 4, (8,), 1, present_bit=7, frame_shift=0, frame_bits=4)
    with pytest.raises(ValueError, match="entry_size"):
        PagingFormat("bad", 12, (9,), 3, present_bit=0, frame_shift=12, frame_bits=8)
    with pytest.raises(ValueError, match="does not fit"):
        TINY.encode(32, PTEFlags.PRESENT)
    with pytest.raises(ValueError, match="no NO_EXECUTE bit"):
        TINY.encode(1, PTEFlags.NO_EXECUTE)


def test_address_problems():
    assert X86_64.address_problem(0x7FFF_FFFF_F000) is None
    assert X86_64.address_problem(0xFFFF_8000_0000_0000) is None
    assert "not canonical" in X86_64.address_problem(0x0000_8000_0000_0000)
    assert "64-bit" in X86_64.address_problem(-1)
    assert "12-bit" in TINY.address_problem(0x1000)


# K10: every field is checked, and the message names it ---------------------------------------------

X86_FIELDS = dict(name="f", page_shift=12, level_bits=(9, 9), entry_size=8, present_bit=0,
                  frame_shift=12, frame_bits=20)


@pytest.mark.parametrize("field, value, error", [
    ("present_bit", -1, ValueError), ("frame_shift", -3, ValueError),
    ("frame_bits", 0, ValueError), ("page_shift", 0, ValueError),
    ("frame_bits", 2.5, TypeError), ("page_shift", None, TypeError),
    ("entry_size", "8", TypeError), ("level_bits", (9, -1), ValueError),
    ("level_bits", "99", TypeError), ("canonical", 1, TypeError), ("name", 3, TypeError),
    ("flag_bits", {PTEFlags.READ_WRITE: -1}, ValueError),
    ("flag_bits", {"RW": 1}, TypeError),
])
def test_k10_a_bad_field_is_refused_by_name(field, value, error):
    with pytest.raises(error, match=field.split("[")[0]):
        PagingFormat(**{**X86_FIELDS, field: value})


def test_k10_virtual_addresses_wider_than_64_bits_are_refused():
    with pytest.raises(ValueError, match="64"):
        PagingFormat(**{**X86_FIELDS, "page_shift": 70, "frame_shift": 0})
    with pytest.raises(ValueError, match="64"):
        PagingFormat(**{**X86_FIELDS, "level_bits": (9,) * 6, "canonical": True})
