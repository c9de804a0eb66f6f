#!/usr/bin/env python3
"""Turn bench/run's samples into the Markdown table (stdout) and a TSV.

Samples: one line per run, "case variant tool iter wall_s rss_kib rc".
Iteration 0 is a warm-up and is not counted. A failed sample (rc != 0) is
left out of the median; a cell whose samples all failed says FAIL.
"""
import argparse
import statistics
import sys

CASE_ORDER = ["harness", "parallel", "rebuild", "bigsnap", "manyfiles", "floors", "pushpull", "parse"]
VARIANT_ORDER = ["noop", "four-stages", "four-stages-j4", "one-stage", "cold", "no-change", "edit-one", "base-50k",
                 "base-small", "cached", "pack", "pack-zstd", "push", "pull", "graph", "meta-build"]
BUILDERS = ["kiln", "buildah", "buildkit"]
LABEL = {"kiln": "kiln", "buildah": "buildah", "buildkit": "BuildKit"}
WHAT = {
    ("harness", "noop"): "`true` through the harness (its own cost per sample)",
    ("parallel", "four-stages"): "4 independent 2 s stages + a stage copying from each, cold",
    ("parallel", "four-stages-j4"): "the same, kiln with `-j 4` (its default was the CPU count before 3a8186f)",
    ("parallel", "one-stage"): "the same with one 2 s stage (the ideal for four-stages)",
    ("rebuild", "cold"): "six-stage build, empty cache",
    ("rebuild", "no-change"): "six-stage build, nothing changed",
    ("rebuild", "edit-one"): "six-stage build, one source file edited",
    ("bigsnap", "base-50k"): "`RUN touch /x` on a base with 50,000 files (base pulled)",
    ("bigsnap", "base-small"): "`RUN touch /x` on the busybox base (base pulled)",
    ("manyfiles", "cold"): "`COPY . /app` of 20,000 files + 200 MiB, empty cache",
    ("manyfiles", "cached"): "the same, nothing changed",
    ("floors", "pack"): "`FROM scratch` + `COPY . /` of the manyfiles tree, empty cache (kiln: `--compression zstd`)",
    ("pushpull", "push"): "push a 200 MiB image to an empty local registry",
    ("pushpull", "pull"): "pull it back into an empty store",
    ("parse", "graph"): "`kiln graph` of a 10,000-instruction Dockerfile",
    ("parse", "meta-build"): "build of 1,000 config-only instructions (ENV, LABEL, ARG, EXPOSE), cold",
}


def order(key):
    c, v = key[0], key[1]
    return (CASE_ORDER.index(c) if c in CASE_ORDER else 99,
            VARIANT_ORDER.index(v) if v in VARIANT_ORDER else 99, v)


class Cell:
    def __init__(self):
        self.walls = []
        self.rss = []
        self.fails = []

    @property
    def median(self):
        return statistics.median(self.walls) if self.walls else None

    @property
    def peak_rss(self):
        return max(self.rss) if self.rss else None


def lookup(cells, c, v, t):
    """The cell of (c, v, t), and whether it was borrowed: the peers' layer
    creation for floors/pack is manyfiles/cold when that case ran (the same
    COPY of the same tree), so bench/run does not build it twice."""
    cell = cells.get((c, v, t))
    if cell is None and (c, v) == ("floors", "pack") and t in BUILDERS and t != "kiln":
        cell = cells.get(("manyfiles", "cold", t))
        return cell, cell is not None
    return cell, False


def fmt_s(x):
    if x is None:
        return "—"
    if x < 1:
        return "%.0f ms" % (x * 1000)
    return "%.2f s" % x


def fmt_cell(cell):
    if cell is None:
        return "—"
    if cell.median is None:
        return "FAIL (exit %s)" % ",".join(sorted(set(cell.fails)))
    s = fmt_s(cell.median)
    if cell.fails:
        s += " (%d failed)" % len(cell.fails)
    return s


def fmt_ratio(a, b):
    if a is None or b is None or a.median is None or b.median is None or b.median == 0:
        return "—"
    return "%.2f×" % (a.median / b.median)


def fmt_rss(cell):
    if cell is None or cell.peak_rss is None:
        return "—"
    return "%.1f MiB" % (cell.peak_rss / 1024)


def load(path):
    cells = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 7:
                continue
            c, v, t, it, wall, rss, rc = parts
            if it == "0":
                continue
            cell = cells.setdefault((c, v, t), Cell())
            if rc == "0":
                cell.walls.append(float(wall))
                cell.rss.append(int(rss))
            else:
                cell.fails.append(rc)
    return cells


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", required=True)
    p.add_argument("--versions", required=True)
    p.add_argument("--tsv", required=True)
    p.add_argument("--tools", default="kiln,buildah,buildkit")
    a = p.parse_args()

    cells = load(a.samples)
    tools = [t for t in BUILDERS if t in a.tools.split(",")]
    peers = [t for t in tools if t != "kiln"]
    versions = []
    with open(a.versions) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            versions.append((k, v))
    vd = dict(versions)

    rows = sorted({(c, v) for (c, v, t) in cells}, key=order)
    borrowed = False
    out = []
    w = out.append
    w("Measured %s on %s cores, kernel %s, %s, %s RAM; median of %s runs per cell, "
      "tools interleaved per iteration." % (vd.get("date", "?"), vd.get("nproc", "?"),
                                            vd.get("kernel", "?"), vd.get("cpu", "?"),
                                            vd.get("memory", "?"), vd.get("iterations", "?")))
    w("")
    w("Versions: " + "; ".join("%s %s" % (k, v) for k, v in versions
                               if k in ("kiln", "buildah", "buildkit", "skopeo", "zstd")) + ".")
    w("")
    hdr = ["case", "what"] + [LABEL[t] for t in tools]
    hdr += ["kiln/%s" % LABEL[t] for t in peers] if "kiln" in tools else []
    hdr += ["peak RSS %s" % LABEL[t] for t in tools]
    w("| " + " | ".join(hdr) + " |")
    w("|" + "|".join(["---", "---"] + ["---:"] * (len(hdr) - 2)) + "|")
    for c, v in rows:
        if c == "harness":
            continue
        if not any((c, v, t) in cells for t in tools):
            continue
        r = ["%s/%s" % (c, v), WHAT.get((c, v), "")]
        got = {t: lookup(cells, c, v, t) for t in tools}
        r += [fmt_cell(got[t][0]) + (" †" if got[t][1] else "") for t in tools]
        if "kiln" in tools:
            r += [fmt_ratio(got["kiln"][0], got[t][0]) for t in peers]
        r += [fmt_rss(got[t][0]) for t in tools]
        borrowed = borrowed or any(b for _, b in got.values())
        w("| " + " | ".join(r) + " |")

    if borrowed:
        w("")
        w("† the peer's manyfiles/cold figure: the same COPY of the same tree, measured in "
          "this run (bench/run does not build it twice).")
    others = [(c, v, t) for (c, v, t) in cells if t not in BUILDERS and c != "harness"]
    if others:
        w("")
        w("Reference tools (floors: the manyfiles tree through `tar --sort=name \\| zstd -T0 -3`, "
          "`tar \\| gzip -6`, and `sha256sum` of every file; pushpull: `skopeo copy` between the "
          "OCI layout and the registry):")
        w("")
        w("| case | tool | median | peak RSS | kiln/tool |")
        w("|---|---|---:|---:|---:|")
        for c, v, t in sorted(others, key=lambda k: order(k) + (k[2],)):
            kcell = cells.get((c, v, "kiln"))
            w("| %s/%s | %s | %s | %s | %s |" % (c, v, t, fmt_cell(cells[(c, v, t)]),
                                                 fmt_rss(cells[(c, v, t)]),
                                                 fmt_ratio(kcell, cells[(c, v, t)])))

    # The targets of the other issues, beside what was measured.
    def med(c, v, t):
        cell = lookup(cells, c, v, t)[0]
        return cell.median if cell else None

    def ratio(n, d):
        return None if n is None or d is None or d == 0 else n / d

    targets = []

    def target(name, limit, kind, f):
        vals = {t: f(t) for t in tools}
        targets.append((name, limit, kind, vals))

    target("parallel stages: four-stages / one-stage", 1.10, "ratio",
           lambda t: ratio(med("parallel", "four-stages", t), med("parallel", "one-stage", t)))
    target("no-change rebuild of the six-stage build", 0.050, "time",
           lambda t: med("rebuild", "no-change", t))
    target("bigsnap: base-50k / base-small", 1.5, "ratio",
           lambda t: ratio(med("bigsnap", "base-50k", t), med("bigsnap", "base-small", t)))
    target("no-change manyfiles rebuild", 0.200, "time",
           lambda t: med("manyfiles", "cached", t))
    target("layer packing / `tar \\| zstd -T0` (same tree)", 1.5, "ratio",
           lambda t: ratio(med("floors", "pack", t),
                           med("floors", "pack", "tar+zstd")))

    def peak(t):
        vals = [cell.peak_rss for (c, v, tt), cell in cells.items()
                if tt == t and c != "harness" and cell.peak_rss is not None]
        return max(vals) / 1024 if vals else None

    target("peak RSS over all cases (MiB)", 32, "mib", peak)
    w("")
    w("Targets (from the project's issues) beside what was measured; peers for comparison:")
    w("")
    w("| target | limit | " + " | ".join(LABEL[t] for t in tools) + " | kiln meets it |")
    w("|---|---:|" + "---:|" * len(tools) + "---|")
    for name, limit, kind, vals in targets:
        def f(x):
            if x is None:
                return "—"
            if kind == "ratio":
                return "%.2f×" % x
            if kind == "time":
                return fmt_s(x)
            return "%.1f" % x
        lim = {"ratio": "≤ %.2f×" % limit, "time": "< %s" % fmt_s(limit), "mib": "< %d" % limit}[kind]
        k = vals.get("kiln")
        met = "—" if k is None else ("yes" if k <= limit else "**no**")
        w("| %s | %s | %s | %s |" % (name, lim, " | ".join(f(vals[t]) for t in tools), met))
    noop = cells.get(("harness", "noop", "true"))
    if noop and noop.median is not None:
        w("")
        w("The harness's own cost per sample (fork, `/usr/bin/time`, wait): %s, included in "
          "every figure." % fmt_s(noop.median))
    print("\n".join(out))

    with open(a.tsv, "w") as f:
        for k, v in versions:
            f.write("# %s\t%s\n" % (k, v))
        f.write("case\tvariant\ttool\truns_ok\truns_failed\tmedian_s\tmin_s\tmax_s\t"
                "peak_rss_kib\tkiln_ratio\n")
        for (c, v, t) in sorted(cells, key=lambda k: order(k) + (k[2],)):
            cell = cells[(c, v, t)]
            kc = cells.get((c, v, "kiln"))
            r = ""
            if kc and kc.median is not None and cell.median:
                r = "%.4f" % (kc.median / cell.median)
            f.write("\t".join([c, v, t, str(len(cell.walls)), str(len(cell.fails)),
                               "%.4f" % cell.median if cell.median is not None else "",
                               "%.4f" % min(cell.walls) if cell.walls else "",
                               "%.4f" % max(cell.walls) if cell.walls else "",
                               str(cell.peak_rss or ""), r]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
