#!/usr/bin/env python3
"""Times pyiso8583 decoding and encoding the same 0200 purchase that `benches/codec.rs`
times for isoswitch (spec iso87ascii = pyiso8583's default_ascii), and prints msgs/s.

Usage: PYTHON benches/pyiso8583_compare.py [--hex HEX] [--seconds S]
PYTHON is any python with pyiso8583 installed (not a project dependency). The message is
rebuilt here from the same field values as benches/common/purchase.rs and checked
against the bytes isoswitch produces (ISOSWITCH_HEX, which benches/codec.rs asserts
too, or --hex) before timing.
"""

import argparse
import time

import iso8583
from iso8583.specs import default_ascii as spec

# The same fields, in the same text form, as benches/common/purchase.rs.
FIELDS = {
    "t": "0200",
    "2": "4761739001010010",
    "3": "000000",
    "4": "000000001000",
    "7": "1124003400",
    "11": "123456",
    "12": "003400",
    "13": "1124",
    "14": "2812",
    "18": "5411",
    "22": "051",
    "25": "00",
    "35": "4761739001010010=28122011143804489",
    "37": "432812345678",
    "41": "TERM0001",
    "42": "MERCHANT0000001",
    "49": "840",
}

# isoswitch's encoding of the purchase with iso87ascii (what the criterion bench decodes).
ISOSWITCH_HEX = (
    "30323030373233433434383032384330383030303136343736313733393030313031303031303030"
    "30303030303030303030303031303030313132343030333430303132333435363030333430303131"
    "3234323831323534313130353130303334343736313733393030313031303031303d323831323230"
    "31313134333830343438393433323831323334353637385445524d303030314d45524348414e5430"
    "303030303031383430"
)


def rate(fn, seconds):
    """Best messages per second over five runs of about seconds/5 each."""
    n = 1000
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= seconds / 10:
            break
        n *= 2
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hex", help="isoswitch's encoding of the purchase (default: ISOSWITCH_HEX)")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    encoded, _ = iso8583.encode(dict(FIELDS), spec)
    wire = bytes(encoded)
    want = bytes.fromhex(args.hex or ISOSWITCH_HEX)
    if wire != want:
        raise SystemExit(f"pyiso8583 builds different bytes:\n {wire.hex()}\n {want.hex()}")
    decoded, _ = iso8583.decode(wire, spec)
    assert {k: v for k, v in decoded.items() if k not in ("p", "1")} == FIELDS, decoded
    assert len(decoded) - 2 == 16, "16 data fields plus MTI and primary bitmap"

    dec = rate(lambda: iso8583.decode(wire, spec), args.seconds)
    enc = rate(lambda: iso8583.encode(dict(FIELDS), spec), args.seconds)
    print(f"pyiso8583 {iso8583.__version__} iso87ascii purchase ({len(wire)} bytes)")
    print(f"pyiso8583 decode: {dec:,.0f} msgs/s")
    print(f"pyiso8583 encode: {enc:,.0f} msgs/s")


if __name__ == "__main__":
    main()
