"""`python -m shardspace.encode`: one answer line per input line, for the Rust property test."""

import hashlib
import queue
import subprocess
import sys
import threading


def test_encodes_each_line_or_says_why_not():
    lines = [
        '{"b": [1, true, null], "a": "\\u00e9 😀"}',
        "[1.5]",
        "not json",
        "[18446744073709551616]",
        '"\\ud800"',
        "{}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "shardspace.encode"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answers = result.stdout.splitlines()
    assert len(answers) == len(lines)
    canonical = '{"a":"\\u00e9 \\ud83d\\ude00","b":[1,true,null]}'
    assert answers[0] == f"{hashlib.sha256(canonical.encode()).hexdigest()} {canonical}"
    assert answers[1].startswith("error float_number: [0]")
    assert answers[2].startswith("error ")
    assert answers[3].startswith("error number_out_of_range")
    assert answers[4].startswith("error lone_surrogate")
    assert answers[5] == f"{hashlib.sha256(b'{}').hexdigest()} {{}}"


def test_answers_each_line_at_once():
    # The Rust test writes a line and waits for its answer: nothing may sit in a buffer.
    child = subprocess.Popen(
        [sys.executable, "-m", "shardspace.encode"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    answers = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in child.stdout], daemon=True).start()
    try:
        for value in ("[1]", "[2]"):
            child.stdin.write(value + "\n")
            child.stdin.flush()
            assert answers.get(timeout=20).rstrip("\n").endswith(" " + value)
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
