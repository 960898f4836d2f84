"""Accuracy figures from score files (bench/accuracy's shared interface).

Score file: UTF-8 text, one line per scored message, fields separated by one TAB:

    key <TAB> label <TAB> score [<TAB> decision]

  key       the message's path relative to the corpus's data/ directory (see corpus.py)
  label     the truth: "spam" or "ham"
  score     a number, higher = spammier (any scale: a probability, SpamAssassin points, ...)
  decision  optional: what the contender does with the message at its own operating point:
            "held"   quarantined or rejected (bogofilter: Spam; SpamAssassin: score >= required)
            "unsure" not held, but flagged as unsure (bogofilter's tristate middle); counted as
                     not held, and also reported separately
            "not"    delivered
            Without the column, give a threshold (--threshold T): held means score >= T.

Lines that are empty or start with '#' are ignored.

Figures (percentages of the messages in the file):
  ham held %      held ham / ham
  spam held %     held spam / spam
  spam caught at <= 0.1 % ham held
                  the largest share of spam held by any threshold t (held = score >= t) that
                  holds at most 0.1 % of the ham, i.e. at most floor(0.001 x ham) ham messages
  1-ROCA %        100 x the area above the ROC curve = 100 x P(a random ham scores above a
                  random spam), ties counting one half (Mann-Whitney with mid-ranks)

    python3 bench/accuracy/metrics.py [--threshold T] FILE...
"""

import argparse
import math
import sys

DECISIONS = ("held", "unsure", "not")


class ScoreFileError(ValueError):
    pass


def read_scores(path):
    """[(key, label, score, decision or None)] from a score file."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) not in (3, 4):
                raise ScoreFileError(f"{path}:{n}: expected 3 or 4 TAB-separated fields, got {len(fields)}")
            key, label, score = fields[:3]
            if label not in ("spam", "ham"):
                raise ScoreFileError(f"{path}:{n}: label must be spam or ham, not {label!r}")
            try:
                s = float(score)
            except ValueError:
                raise ScoreFileError(f"{path}:{n}: score {score!r} is not a number") from None
            if math.isnan(s):
                raise ScoreFileError(f"{path}:{n}: score is NaN")
            d = fields[3] if len(fields) == 4 else None
            if d is not None and d not in DECISIONS:
                raise ScoreFileError(f"{path}:{n}: decision must be one of {', '.join(DECISIONS)}, not {d!r}")
            rows.append((key, label, s, d))
    keys = [r[0] for r in rows]
    if len(set(keys)) != len(keys):
        raise ScoreFileError(f"{path}: a key appears twice")
    return rows


def write_scores(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for key, label, score, decision in rows:
            f.write(f"{key}\t{label}\t{score!r}" + (f"\t{decision}" if decision else "") + "\n")


def decisions(rows, threshold=None):
    """Each row's decision: its own column, or score >= threshold when a threshold is given."""
    if threshold is not None:
        return ["held" if r[2] >= threshold else "not" for r in rows]
    missing = sum(1 for r in rows if r[3] is None)
    if missing:
        raise ScoreFileError(f"{missing} rows have no decision column and no threshold was given")
    return [r[3] for r in rows]


def held_rates(rows, threshold=None):
    """Percentages: ham_held, spam_held, ham_unsure, spam_unsure (None when there is no such message)."""
    dec = decisions(rows, threshold)
    count = {(l, d): 0 for l in ("ham", "spam") for d in DECISIONS}
    for r, d in zip(rows, dec):
        count[(r[1], d)] += 1
    out = {}
    for l in ("ham", "spam"):
        n = sum(count[(l, d)] for d in DECISIONS)
        out[f"{l}_held"] = 100.0 * count[(l, "held")] / n if n else None
        out[f"{l}_unsure"] = 100.0 * count[(l, "unsure")] / n if n else None
    return out


def caught_at_ham_rate(rows, max_ham_percent=0.1):
    """(spam caught %, threshold): the best threshold t (held = score >= t) holding at most
    max_ham_percent % of the ham. The threshold returned is the lowest score above the (k+1)-th
    highest ham score that some spam has (None when no spam is caught)."""
    ham = sorted((r[2] for r in rows if r[1] == "ham"), reverse=True)
    spam = [r[2] for r in rows if r[1] == "spam"]
    if not ham or not spam:
        return None, None
    k = math.floor(len(ham) * max_ham_percent / 100.0 + 1e-9)  # ham messages allowed to be held
    if k >= len(ham):
        return 100.0, min(spam)
    # Any t <= ham[k] would hold ham[0..k], k+1 messages; every t > ham[k] holds at most k.
    above = [s for s in spam if s > ham[k]]
    return 100.0 * len(above) / len(spam), (min(above) if above else None)


def one_minus_roca(rows):
    """100 x (1 - area under the ROC curve), ties between a ham and a spam score counting 1/2."""
    scored = sorted((r[2], r[1]) for r in rows)
    n_ham = sum(1 for _, l in scored if l == "ham")
    n_spam = len(scored) - n_ham
    if not n_ham or not n_spam:
        return None
    # Mid-ranks (1-based) over all scores; sum them over the spam.
    rank_sum, i = 0.0, 0
    while i < len(scored):
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        mid = (i + 1 + j) / 2.0  # mean of ranks i+1 .. j
        rank_sum += mid * sum(1 for _, l in scored[i:j] if l == "spam")
        i = j
    auc = (rank_sum - n_spam * (n_spam + 1) / 2.0) / (n_spam * n_ham)
    return 100.0 * (1.0 - auc)


def summary(rows, threshold=None):
    """Every figure for one score file, as a dict."""
    s = {
        "messages": len(rows),
        "ham": sum(1 for r in rows if r[1] == "ham"),
        "spam": sum(1 for r in rows if r[1] == "spam"),
    }
    try:
        s.update(held_rates(rows, threshold))
    except ScoreFileError:
        s.update(ham_held=None, spam_held=None, ham_unsure=None, spam_unsure=None)
    s["caught_at_0.1"], s["caught_threshold"] = caught_at_ham_rate(rows, 0.1)
    s["one_minus_roca"] = one_minus_roca(rows)
    return s


def rate(n, seconds):
    """Messages per second, or None without a timing."""
    return n / seconds if n and seconds else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, help="held = score >= T (overrides a decision column)")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    print("file\tmessages\tham held %\tspam held %\tspam unsure %\tcaught at <= 0.1 % ham held\t1-ROCA %")
    for path in a.files:
        s = summary(read_scores(path), a.threshold)
        f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
        print(f"{path}\t{s['messages']}\t{f(s['ham_held'])}\t{f(s['spam_held'])}\t{f(s['spam_unsure'])}"
              f"\t{f(s['caught_at_0.1'], 1)}\t{f(s['one_minus_roca'], 3)}")


if __name__ == "__main__":
    sys.exit(main())
