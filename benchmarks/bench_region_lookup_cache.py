"""The region lookup cache (lesson 05): comparisons per lookup, with and without the cache, over
a list and over a tree, on the seeded malloc trace of `refimpl.history.region_lookup_cost`.

    .venv/bin/python benchmarks/bench_region_lookup_cache.py

Counts, not times: the same trace always gives the same numbers. Prints a Markdown table.
"""

from __future__ import annotations

from refimpl.history.region_lookup_cost import VARIANTS, measure_lookup_costs, saving, variant_name


def main() -> None:
    names = [variant_name(*variant) for variant in VARIANTS]
    print("| regions | lookups | hit rate | " + " | ".join(names) +
          " | saved over the list | saved over the tree |")
    print("|---" * (5 + len(names)) + "|")
    for row in measure_lookup_costs():
        costs = " | ".join(f"{row[name]:.1f}" for name in names)
        print(f"| {row['regions']:.0f} | {row['lookups']} | {row['hit rate']:.0%} | {costs} | "
              f"{saving(row, 'list'):.1f} | {saving(row, 'tree'):.1f} |")


if __name__ == "__main__":
    main()
