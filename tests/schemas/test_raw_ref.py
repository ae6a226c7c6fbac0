from schemas.raw_ref import RawRef, format_raw_ref, parse_raw_ref


def test_current_refs_round_trip_with_and_without_incarnation():
    ref = format_raw_ref("foundry.raw", 3, 17, "Zq4-_x")
    assert ref == "foundry.raw@Zq4-_x:3:17"
    assert parse_raw_ref(ref) == RawRef("foundry.raw", "Zq4-_x", 3, 17)
    assert parse_raw_ref(format_raw_ref("t.raw", 0, 5)) == RawRef("t.raw", None, 0, 5)


def test_streams_keep_topics_and_incarnations_apart():
    a = parse_raw_ref("foundry.raw@one:3:17")
    assert a.stream != parse_raw_ref("foundry.raw@two:3:17").stream
    assert a.stream != parse_raw_ref("other.raw:3:17").stream
    assert parse_raw_ref("3:17") == RawRef(None, None, 3, 17) and parse_raw_ref("3:17").stream == "3"


def test_unreadable_refs():
    for bad in (None, "", "garbage", "a:b:c", ":3:17", "t:x:1"):
        assert parse_raw_ref(bad) is None, bad
