"""``clusterdeck inspect``'s report as aligned lines for a terminal; the figures are the JSON's
(``jobs.shard.inspect``): a shard set's report, per split, or an input's."""

from __future__ import annotations

from typing import Any

from clusterdeck.app.table import table_lines
from clusterdeck.jobs.shard.encode import DEFAULT_RESIZE_QUALITY


def render(report: dict[str, Any]) -> str:
    if "splits" in report:
        return "\n".join(_shard_lines(report))
    return "\n".join(_input_lines(report))


def _line(key: str, value: str) -> str:
    return f"{key:<9} {value}".rstrip()


def _mb(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n} ({n / scale:.1f} {unit})"
    return f"{n}"


def _sizes(sizes: dict[str, Any]) -> str:
    if not sizes["measured"]:
        return "-" + (f" ({sizes['unreadable']} unreadable)" if sizes["unreadable"] else "")
    w, h = sizes["width"], sizes["height"]
    text = f"{w['min']}×{h['min']} / {w['median']}×{h['median']} / {w['max']}×{h['max']}"
    return text + (f", {sizes['unreadable']} unreadable" if sizes["unreadable"] else "")


def _skip_text(skipped: dict[str, Any]) -> str:
    first = skipped["first"]
    return f"{skipped['count']}" + (f" (first: {first['path']}: {first['reason']})" if first else "")


def _input_lines(r: dict[str, Any]) -> list[str]:
    lines = [_line("path", r["path"]), _line("format", r["format"]), _line("images", str(r["images"]))]
    c = r["classes"]
    if c is None:
        lines.append(_line("classes", r["classes_note"]))
    else:
        more = ", …" if c["count"] > len(c["first"]) else ""
        lines.append(_line("classes", f"{c['count']}: {', '.join(c['first'])}{more}"))
        lines.append(_line("per class", f"{c['per_class_min']} to {c['per_class_max']} images"))
        if c["with_images"] != c["count"]:
            lines.append(_line("", f"{c['with_images']} of the {c['count']} classes have images"))
    lines.append(_line("bytes", _mb(r["bytes"])))
    if r["npz"]:
        n = r["npz"]
        batches = f"{n['batches']} batch" + ("es" if n["batches"] != 1 else "")
        lines.append(_line("npz", f"{batches} of {n['side']}×{n['side']}, {_mb(n['file_bytes'])} on disk"))
    if r.get("cifar"):
        n = r["cifar"]
        lines.append(
            _line("cifar", f"{n['dataset']}, {n['split']} split: {', '.join(n['batches'])}; {n['labels']} labels")
        )
    sizes = r["image_sizes"]
    lines.append(_line("sizes", f"{_sizes(sizes)}  (W×H min / median / max of {sizes['measured']})"))
    lines.append(_line("skipped", _skip_text(r["skipped"])))
    return lines


def _shard_lines(r: dict[str, Any]) -> list[str]:
    c, enc = r["classes"], r["encoding"]
    more = ", …" if c["count"] > len(c["first"]) else ""
    if enc["resize_shorter"] is None and enc["jpeg_quality"] is None:
        encoding = "original bytes"
    else:
        parts = [f"shorter side {enc['resize_shorter']}"] if enc["resize_shorter"] is not None else []
        encoding = ", ".join([*parts, f"JPEG quality {enc['jpeg_quality'] or DEFAULT_RESIZE_QUALITY}"])
    lines = [
        _line("path", r["path"]),
        _line("format", f"shards ({r['index_format']})"),
        _line("classes", f"{c['count']}: {', '.join(c['first'])}{more}"),
        _line("encoding", encoding),
        "",
    ]
    rows = [["split", "samples", "shards", "bytes", "MB", "skipped", "excluded", "sizes W×H min / median / max"]]
    for name, s in r["splits"].items():
        sizes = s["image_sizes"]
        rows.append(
            [
                name,
                str(s["samples"]),
                str(s["shards"]),
                str(s["bytes"]),
                f"{s['bytes'] / 1e6:.1f}",
                str(s["skipped"]["count"]),
                str(s["excluded"]),
                f"{_sizes(sizes)} (of {sizes['measured']})",
            ]
        )
    lines += table_lines(rows, right=range(1, len(rows[0]) - 1))  # first and last left, the numbers right
    for name, s in r["splits"].items():
        if s["skipped"]["first"]:
            lines.append(f"{name}: first skipped: {s['skipped']['first']['path']}: {s['skipped']['first']['reason']}")
    v = r["verify"]
    checked = "size only: --no-verify"
    if v.get("checksum"):
        checked = "size and sha256" if v["sha256"] else "size and xxh3-128"
    lines.append("")
    if not v["problems"]:
        lines.append(_line("verify", f"{v['ok']} of {v['shards']} shards match the index ({checked})"))
    else:
        lines.append(
            _line("verify", f"{len(v['problems'])} of {v['shards']} shards do not match the index ({checked})")
        )
        width = max(len(p["file"]) for p in v["problems"])
        lines += [f"  {p['file']:<{width}}  {p['problem']}" for p in v["problems"]]
    return lines
