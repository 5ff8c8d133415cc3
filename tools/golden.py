#!/usr/bin/env python3
"""Fingerprints of the outputs of every shipped scenario, to check that a refactor changes no output.

    python3 tools/golden.py BINARY OUTDIR        # writes OUTDIR/hashes.txt (path -> sha256)
    diff OUTDIR_BEFORE/hashes.txt OUTDIR_AFTER/hashes.txt

Each scenario under scenarios/ runs with the command its header names (run, sweep, local, ep-fidelity,
device), shrunk by overrides so the whole set takes a few minutes (training: 1 epoch, 300 training / 100
test samples; the same overrides for both binaries). manifest.json files (they hold timestamps and the
binary's version) are left out, and so are wall-clock fields (`wall_s` in JSON files and CSV columns) and
the absolute scenario path in JSON files (`path`), which differs between checkouts.
Standard library only.
"""
import csv, hashlib, io, json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHRINK_TRAIN = ["train.epochs=1", "train.train_samples=300", "train.test_samples=100"]


def command_of(path: Path) -> str:
    text = path.read_text()
    if path.parent.name == "devices" or path.name == "device-quickstart.toml":
        return "device"
    m = re.search(r"--\s+(run|sweep|local|ep-fidelity|device)\s", text)
    return m.group(1) if m else "run"


def attempt(binary, cmd, scen, out, sets):
    args = [binary, cmd, str(scen), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True)


def strip_wall(obj):
    if isinstance(obj, dict):
        # Wall-clock fields, and the scenario's absolute path (it differs between checkouts).
        return {k: strip_wall(v) for k, v in obj.items() if "wall" not in k and k != "path"}
    if isinstance(obj, list):
        return [strip_wall(v) for v in obj]
    return obj


def fingerprint(f: Path) -> str:
    data = f.read_bytes()
    if f.suffix == ".json":
        data = json.dumps(strip_wall(json.loads(data)), sort_keys=True).encode()
    elif f.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(data.decode())))
        if rows:
            keep = [i for i, h in enumerate(rows[0]) if "wall" not in h]
            data = "\n".join(",".join(r[i] for i in keep if i < len(r)) for r in rows).encode()
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    binary, outdir = sys.argv[1], Path(sys.argv[2]).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    lines = []
    for scen in sorted(ROOT.glob("scenarios/**/*.toml")):
        rel = scen.relative_to(ROOT)
        cmd = command_of(scen)
        out = outdir / str(rel).replace("/", "__")
        tries = [[]]
        if cmd in ("run", "sweep"):
            tries = [SHRINK_TRAIN + ["train.validation=50"], SHRINK_TRAIN, []]
        for sets in tries:
            r = attempt(binary, cmd, scen, out, sets)
            if r.returncode == 0:
                break
        status = "ok" if r.returncode == 0 else f"FAILED rc={r.returncode}: {r.stderr.strip().splitlines()[-1:] }"
        print(f"{rel}: {cmd} {' '.join(sets)} -> {status}", flush=True)
        lines.append(f"# {rel}: {cmd} {' '.join(sets)} -> {status}")
        for f in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"):
            lines.append(f"{f.relative_to(outdir)} {fingerprint(f)}")
    (outdir / "hashes.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
