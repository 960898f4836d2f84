"""The SpamAssassin public corpus as bench/accuracy uses it: where it is, which messages are ham or
spam, the fixed train/tune/test split and the date order of the online run.

The split is part of the interface with moat's own evaluation (examples/classifier_eval): both must
put every message in the same part, so it is defined here once, in words, and in code:

    key  = the message's path relative to the corpus's data/ directory, with '/' as separator,
           e.g. "spam-1/00001.7848dde101aa985090474a91ec93fcf0.txt"
    b    = the first byte of SHA-256(key as UTF-8)
    part = train if b % 4 in (0, 1); tune if b % 4 == 2; test if b % 4 == 3

`python3 bench/accuracy/corpus.py --corpus DIR --list test` prints "key<TAB>label" for one part, so
another implementation of the split can be checked against this one with diff.
"""

import argparse
import email.utils
import hashlib
import os
import re
import sys
from datetime import timezone

HAM_GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
SPAM_GROUPS = ("spam-1", "spam-2")
PARTS = ("train", "tune", "test")


def find_data_dir(path):
    """The directory holding the groups, given it, its parent package/ or the unpacked root."""
    for cand in (path, os.path.join(path, "data"), os.path.join(path, "package", "data")):
        if all(os.path.isdir(os.path.join(cand, g)) for g in HAM_GROUPS + SPAM_GROUPS):
            return os.path.abspath(cand)
    raise SystemExit(f"{path}: no SpamAssassin corpus here (expected data/{{{','.join(HAM_GROUPS + SPAM_GROUPS)}}}/)")


def part_of(key):
    b = hashlib.sha256(key.encode("utf-8")).digest()[0]
    return ("train", "train", "tune", "test")[b % 4]


def messages(data_dir):
    """Every message as (key, label, absolute path), sorted by key (the "file order")."""
    out = []
    for label, groups in (("ham", HAM_GROUPS), ("spam", SPAM_GROUPS)):
        for g in groups:
            for name in os.listdir(os.path.join(data_dir, g)):
                if name.endswith(".txt"):
                    out.append((f"{g}/{name}", label, os.path.join(data_dir, g, name)))
    out.sort()
    return out


def split(data_dir):
    parts = {p: [] for p in PARTS}
    for m in messages(data_dir):
        parts[part_of(m[0])].append(m)
    return parts


_DATE = re.compile(rb"^Date:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def message_date(path):
    """The Date header as a UTC timestamp, or None when it is missing or unparseable."""
    with open(path, "rb") as f:
        head = f.read(65536)
    end = re.search(rb"\r?\n\r?\n", head)
    if end:
        head = head[: end.start()]
    m = _DATE.search(head)
    if not m:
        return None
    try:
        d = email.utils.parsedate_to_datetime(m.group(1).decode("latin-1").replace("\n", " ").strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    if 100 <= d.year < 200:  # "Thu, 22 Aug 102": a mailer's year - 1900 (62 messages here)
        try:
            d = d.replace(year=d.year + 1900)
        except ValueError:
            return None
    try:
        return d.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def date_order(msgs):
    """msgs in the order of their Date header. A message without a usable Date keeps its place in
    file order: it takes the date of the message before it in file order (or sorts first)."""
    keyed, last, undated = [], float("-inf"), 0
    for i, m in enumerate(msgs):
        d = message_date(m[2])
        if d is None:
            d, undated = last, undated + 1
        last = d
        keyed.append((d, i, m))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in keyed], undated


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="the unpacked corpus (data/ or a directory above it)")
    ap.add_argument("--list", choices=PARTS, help="print key<TAB>label of one part")
    a = ap.parse_args()
    parts = split(find_data_dir(a.corpus))
    if a.list:
        for key, label, _ in parts[a.list]:
            print(f"{key}\t{label}")
    else:
        for p in PARTS:
            ham = sum(1 for m in parts[p] if m[1] == "ham")
            print(f"{p}\t{len(parts[p])} messages\t{ham} ham\t{len(parts[p]) - ham} spam")


if __name__ == "__main__":
    sys.exit(main())
