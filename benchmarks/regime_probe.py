"""Probe pre-trained checkpoints for the paper's regime and append them to results/regime_search.csv.

    python benchmarks/regime_probe.py DIR [DIR ...] [--note "what this config tried"] [--command "how it was trained"] [--n 64]
"""
import argparse
import json

from critkl.regime import probe, record


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+")
    p.add_argument("--note", default="")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--csv", default="results/regime_search.csv")
    p.add_argument("--command", default="", help="the command that trained the checkpoint, kept in the table")
    args = p.parse_args()
    for d in args.dirs:
        row = probe(d, n=args.n)
        if args.command:
            row["command"] = args.command
        print(json.dumps(row, indent=1))
        record(row, args.csv, args.note)


if __name__ == "__main__":
    main()
