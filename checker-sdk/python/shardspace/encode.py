"""`python -m shardspace.encode`: the reference encoder, as a filter, for the other SDK's tests.

Reads one JSON value per line on stdin (a transaction, usually; the shape is not
checked: this is the encoder, not a validator) and writes, per line, either
`<txId> <canonical JSON>` or `error <message>` when the line is not JSON or holds
what the canonical encoding refuses (floats, integers out of range, lone
surrogates). One output line per input line, flushed at once, so a caller can
drive it line by line.
"""

import json
import sys

from .encoding import canonical_json, sha256_hex


def encode_line(line: bytes) -> str:
    """The answer line (without its newline) for one input line."""
    try:
        value = json.loads(line.decode("utf-8"))
        canonical = canonical_json(value)
    except UnicodeDecodeError:
        return "error the line is not UTF-8"
    except RecursionError:
        return "error the value is nested too deeply"
    except ValueError as error:
        return "error " + " ".join(str(error).split())  # one line, whatever the message holds
    return f"{sha256_hex(canonical.encode('ascii'))} {canonical}"


def main() -> int:
    for line in sys.stdin.buffer:
        sys.stdout.write(encode_line(line.rstrip(b"\r\n")) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
