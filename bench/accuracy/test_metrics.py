"""Hand-computed cases for metrics.py and the split in corpus.py.

    python3 -m unittest discover -s bench/accuracy      (bench/accuracy/run runs them first)
"""

import hashlib
import os
import tempfile
import unittest

import corpus
import metrics


def rows(ham, spam, ham_dec=None, spam_dec=None):
    out = [(f"h{i}", "ham", s, ham_dec[i] if ham_dec else None) for i, s in enumerate(ham)]
    return out + [(f"s{i}", "spam", s, spam_dec[i] if spam_dec else None) for i, s in enumerate(spam)]


class OneMinusRoca(unittest.TestCase):
    def test_perfect(self):
        self.assertEqual(metrics.one_minus_roca(rows([0.1, 0.2], [0.8, 0.9])), 0.0)

    def test_reversed(self):
        self.assertEqual(metrics.one_minus_roca(rows([0.8, 0.9], [0.1, 0.2])), 100.0)

    def test_all_tied_is_half(self):
        self.assertEqual(metrics.one_minus_roca(rows([0.5, 0.5], [0.5, 0.5, 0.5])), 50.0)

    def test_mixed_with_a_tie(self):
        # 9 (spam, ham) pairs. Spam 0.3 beats ham 0.1 only: 1. Spam 0.6 beats 0.1 and 0.4 and ties
        # 0.6: 2.5. Spam 0.9 beats all three: 3. AUC = 6.5 / 9; 1-ROCA = 2.5 / 9.
        r = metrics.one_minus_roca(rows([0.1, 0.4, 0.6], [0.3, 0.6, 0.9]))
        self.assertAlmostEqual(r, 100 * 2.5 / 9)

    def test_one_ham_above_one_of_four_spam(self):
        # 1 ham, 4 spam; the ham is above one spam: 1 bad pair of 4.
        self.assertAlmostEqual(metrics.one_minus_roca(rows([5.0], [1.0, 6.0, 7.0, 8.0])), 25.0)

    def test_scale_free(self):
        a = rows([0.1, 0.4, 0.6], [0.3, 0.6, 0.9])
        b = [(k, l, 100 * s - 7, d) for k, l, s, d in a]
        self.assertAlmostEqual(metrics.one_minus_roca(a), metrics.one_minus_roca(b))

    def test_one_class_only(self):
        self.assertIsNone(metrics.one_minus_roca(rows([0.1], [])))


class CaughtAtHamRate(unittest.TestCase):
    def test_one_ham_allowed_in_1000(self):
        # 0.1 % of 1000 ham = 1 may be held. Highest ham 0.95, second 0.9: any t in (0.9, 0.95]
        # holds one ham; spam above 0.9 are 0.99, 0.95, 0.92 = 3 of 4.
        r = rows([0.0] * 998 + [0.9, 0.95], [0.99, 0.95, 0.92, 0.5])
        self.assertEqual(metrics.caught_at_ham_rate(r, 0.1), (75.0, 0.92))

    def test_no_ham_allowed_in_999(self):
        # floor(0.999) = 0 ham may be held: t must be above 0.95; only 0.99.
        r = rows([0.0] * 997 + [0.9, 0.95], [0.99, 0.95, 0.92, 0.5])
        self.assertEqual(metrics.caught_at_ham_rate(r, 0.1), (25.0, 0.99))

    def test_tied_top_ham(self):
        # Two ham tie at 0.95 and one may be held: no threshold separates them, so t > 0.95.
        r = rows([0.0] * 998 + [0.95, 0.95], [0.99, 0.97, 0.95, 0.5])
        self.assertEqual(metrics.caught_at_ham_rate(r, 0.1), (50.0, 0.97))

    def test_spam_tied_with_the_limit_is_not_caught(self):
        r = rows([0.2, 0.5], [0.5, 0.6])
        self.assertEqual(metrics.caught_at_ham_rate(r, 0.1), (50.0, 0.6))

    def test_nothing_caught(self):
        self.assertEqual(metrics.caught_at_ham_rate(rows([0.9], [0.1]), 0.1), (0.0, None))

    def test_exact_boundary_2000_ham(self):
        # 0.1 % of 2000 = 2 ham allowed (floating point must not make it 1): t = 0.75 holds ham
        # 0.8 and 0.9 and every spam. With 1 allowed it would be t > 0.8: 2 of 3.
        r = rows([0.0] * 1997 + [0.7, 0.8, 0.9], [0.75, 0.85, 0.95])
        self.assertEqual(metrics.caught_at_ham_rate(r, 0.1), (100.0, 0.75))
        r = rows([0.0] * 1996 + [0.7, 0.8, 0.9], [0.75, 0.85, 0.95])
        self.assertEqual(metrics.caught_at_ham_rate(r, 0.1), (200 / 3, 0.85))


class AgainstBruteForce(unittest.TestCase):
    """Random small cases with many ties, against the definitions computed the slow way."""

    def test_random(self):
        import random
        rnd = random.Random(16)
        for _ in range(300):
            ham = [rnd.choice([0, 1, 2, 3, 4, 5]) / 5 for _ in range(rnd.randint(1, 30))]
            spam = [rnd.choice([0, 1, 2, 3, 4, 5]) / 5 for _ in range(rnd.randint(1, 30))]
            r = rows(ham, spam)
            bad = sum(1.0 if h > s else 0.5 if h == s else 0.0 for h in ham for s in spam)
            self.assertAlmostEqual(metrics.one_minus_roca(r), 100 * bad / (len(ham) * len(spam)))
            pct = rnd.choice([0.1, 5, 20, 50])
            best = 0.0
            for t in sorted(set(ham + spam)) + [2.0]:
                if sum(h >= t for h in ham) <= len(ham) * pct / 100 + 1e-9:
                    best = max(best, 100 * sum(s >= t for s in spam) / len(spam))
            self.assertAlmostEqual(metrics.caught_at_ham_rate(r, pct)[0], best)


class HeldRates(unittest.TestCase):
    def test_decision_column(self):
        r = rows([0.1, 0.2, 0.995, 0.6], [0.999, 0.7, 0.3, 0.999],
                 ["not", "not", "held", "unsure"], ["held", "unsure", "not", "held"])
        h = metrics.held_rates(r)
        self.assertEqual(h, {"ham_held": 25.0, "ham_unsure": 25.0, "spam_held": 50.0, "spam_unsure": 25.0})

    def test_threshold_is_inclusive_and_overrides(self):
        r = rows([4.9, 5.0, 1.0, 0.0], [5.0, 12.0, 4.99, 3.0], ["not"] * 4, ["not"] * 4)
        h = metrics.held_rates(r, threshold=5.0)
        self.assertEqual((h["ham_held"], h["spam_held"], h["spam_unsure"]), (25.0, 50.0, 0.0))

    def test_missing_decision_needs_threshold(self):
        with self.assertRaises(metrics.ScoreFileError):
            metrics.held_rates(rows([0.1], [0.9]))


class ScoreFile(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".tsv")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_round_trip(self):
        r = [("spam-1/a.txt", "spam", 0.9899096247012662, "unsure"), ("easy-ham-1/b.txt", "ham", -1.5, None)]
        path = self.write("")
        metrics.write_scores(path, r)
        self.assertEqual(metrics.read_scores(path), r)

    def test_comments_and_errors(self):
        self.assertEqual(len(metrics.read_scores(self.write("# x\n\nk\tham\t1\n"))), 1)
        for bad in ("k\tbad\t1\n", "k\tham\tx\n", "k\tham\n", "k\tham\t1\tmaybe\n", "k\tham\t1\nk\tspam\t2\n",
                    "k\tham\tnan\n"):
            with self.assertRaises(metrics.ScoreFileError, msg=bad):
                metrics.read_scores(self.write(bad))


class Split(unittest.TestCase):
    def test_rule(self):
        key = "spam-1/00001.7848dde101aa985090474a91ec93fcf0.txt"
        b = hashlib.sha256(key.encode()).digest()[0]
        self.assertEqual(corpus.part_of(key), {0: "train", 1: "train", 2: "tune", 3: "test"}[b % 4])

    def test_known_keys(self):
        # Fixed expectations (first byte of SHA-256 in the comment), so that a change to the split
        # cannot pass unnoticed: moat's evaluation must put these in the same parts.
        known = {
            "spam-1/00001.7848dde101aa985090474a91ec93fcf0.txt": "train",  # 0x25: 37 % 4 = 1
            "easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.txt": "train",  # 0xdd: 221 % 4 = 1
            "easy-ham-1/00002.9c4069e25e1ef370c078db7ee85ff9ac.txt": "train",  # 0x28: 40 % 4 = 0
            "easy-ham-1/00003.860e3c3cee1b42ead714c5c874fe25f7.txt": "tune",  # 0xda: 218 % 4 = 2
            "easy-ham-1/00015.4d7026347ba7478c9db04c70913e68fd.txt": "test",  # 0x6b: 107 % 4 = 3
        }
        for key, part in known.items():
            self.assertEqual(corpus.part_of(key), part, key)


if __name__ == "__main__":
    unittest.main()
