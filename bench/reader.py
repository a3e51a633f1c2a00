"""The trainer's read-and-aggregate step, reader against reader, on one generated file.

    .venv/bin/python -m bench.reader --rows 5000000 [--rounds 3]

Each candidate runs in a fresh child process (its peak RSS is its own: ``VmHWM``), in an order
that rotates every round, so that a busy machine weighs on all alike; the figures are medians
over the rounds. Every full candidate must produce the same train and test counts as today's
reader (a digest of them is compared), or the bench fails. Writes ``bench/results/reader.json``.

- ``pandas``: the reader before issue 14, kept here as the reference (the pandas C engine, every
  column read as categorical; its helpers still live in :mod:`shared.data.loader`, where they
  are the fallback for files pyarrow could read differently).
- ``arrow``: what training runs now, :class:`shared.data.loader.EncodedCsv`: pyarrow on both
  cores (segments of 8 MiB cut at a line break, each parsed as one block on a pool of two
  threads, eight columns dictionary-encoded as they are parsed), encoded, split and counted in
  the main thread while the next segments are parsed.
- ``arrow_stream``: what training ran before that, pyarrow's streaming reader on one parsing
  thread (``newlines_in_values``, blocks of 1 MiB), taken from commit ``eec26de`` with git.
- ``arrow_strings``: pyarrow reading the eight columns as plain strings, each encoded with
  ``pyarrow.compute.index_in`` (one hash lookup per cell, in this thread).
- floors, which do less than training needs: ``arrow_parse_only`` (pyarrow's streaming reader
  on one thread, the eight columns as dictionaries, nothing else: no codes, no split, no
  sha256), ``arrow_segments_parse_only`` (the segments of ``arrow`` parsed on both cores, with
  the sha256, but no codes and no split) and ``polars_group_by`` (a streaming group-by on the
  eight columns: no split, no sha256; it reads a path, and a binary stream from an object
  store only by holding it whole in memory).

The generated file is cached under ``.cache/bench/`` (643 MB for 5M rows).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.schema import FEATURE_COLUMNS, LABEL_COLUMN

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
RESULTS = ROOT / "bench" / "results"
SEED = 1
FULL = ("pandas", "arrow", "arrow_stream", "arrow_strings")
#: The commit whose reader ``arrow_stream`` runs: the last before the reader parsed on both cores.
STREAM_READER_COMMIT = "eec26de"
FLOORS = ("arrow_parse_only", "arrow_segments_parse_only", "polars_group_by")
CANDIDATES = (*FULL, *FLOORS)
_COLUMNS_READ = (*FEATURE_COLUMNS, LABEL_COLUMN)


def dataset(rows: int) -> Path:
    """The synthetic file of ``rows`` rows (seed 1), generated once into the cache."""
    from shared.data.synthetic import write_synthetic_csv

    path = CACHE / f"synthetic_{rows}_seed{SEED}.csv"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        write_synthetic_csv(path, rows, seed=SEED)
    return path


# --- the candidates, each run in a child process ----------------------------------------------


def _pandas_chunks(path: Path, chunk_rows: int = 250_000) -> Any:
    """Today's reader before issue 14: ``EncodedCsv.__iter__`` as it was, on the helpers that
    :mod:`shared.data.loader` keeps for its fallback."""
    from shared.data import loader
    from shared.data.schema import FEATURE_COLUMNS, LABEL_COLUMN

    class PandasCsv:
        def __init__(self) -> None:
            self.header = loader.read_header(path)
            self.total_bytes = path.stat().st_size
            self.report = loader.LoadReport()
            self.sha256 = ""

        def __iter__(self) -> Iterator[loader.EncodedChunk]:
            columns = (*FEATURE_COLUMNS, LABEL_COLUMN)
            with path.open("rb") as raw:
                reader = loader.HashingReader(raw)
                buffered = io.BufferedReader(reader, buffer_size=1 << 20)
                rows = loader._rows_per_chunk(self.header, chunk_rows)
                frames = loader._csv_frames(buffered, rows)
                current = next(frames, None)
                first_row = 0
                while current is not None:
                    following = next(frames, None)
                    if following is None:
                        buffered.read()
                        reader.drain()
                        self.sha256 = reader.sha256.hexdigest()
                    frame = loader._select(current, self.header, columns)
                    features = np.column_stack(
                        [loader._encode_column(c, frame[c], self.report) for c in FEATURE_COLUMNS]
                    )
                    labels = loader._encode_labels(frame[LABEL_COLUMN])
                    loader._count_labels(self.report, labels)
                    yield loader.EncodedChunk(features, labels, first_row, reader.bytes_read)
                    first_row += len(frame)
                    current = following

    return PandasCsv()


def _stream_reader_chunks(path: Path) -> Any:
    """``EncodedCsv`` with the reader of :data:`STREAM_READER_COMMIT` (pyarrow's streaming
    reader, one parsing thread), taken from the repository's history rather than kept twice."""
    import importlib.util
    import tempfile

    from shared.data import loader

    source = subprocess.run(
        ["git", "show", f"{STREAM_READER_COMMIT}:shared/data/fast_reader.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.NamedTemporaryFile(suffix=".py") as file:
        file.write(source)
        file.flush()
        spec = importlib.util.spec_from_file_location("stream_fast_reader", file.name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    loader.encoded_blocks = module.encoded_blocks  # type: ignore[attr-defined]
    return loader.EncodedCsv(path)


def _arrow_strings_chunks(path: Path) -> Any:
    """pyarrow with plain string columns, encoded by ``index_in`` (valid values only: the
    synthetic file has no other kind, and the counts are checked against today's reader)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from shared.data import loader
    from shared.data.schema import FEATURE_COLUMNS, VOCABULARY

    vocab = {c: pa.array([v.encode() for v in VOCABULARY[c]]) for c in FEATURE_COLUMNS}
    labels_set = pa.array([b"No", b"Yes"])

    class ArrowStrings:
        total_bytes = path.stat().st_size
        report = loader.LoadReport()

        def __iter__(self) -> Iterator[loader.EncodedChunk]:
            sha = hashlib.sha256()
            with path.open("rb") as raw:

                class Hashing(io.RawIOBase):
                    def readable(self) -> bool:
                        return True

                    def read(self, size: int | None = -1) -> bytes:
                        data = raw.read(size if size and size > 0 else 1 << 20)
                        sha.update(data)
                        return data

                reader = pacsv.open_csv(
                    Hashing(),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(
                        include_columns=list(_COLUMNS_READ),
                        column_types=dict.fromkeys(_COLUMNS_READ, pa.binary()),
                        strings_can_be_null=False,
                        null_values=[],
                    ),
                )
                first = 0
                for batch in reader:
                    features = np.empty((batch.num_rows, len(FEATURE_COLUMNS)), np.int8)
                    for j, col in enumerate(FEATURE_COLUMNS):
                        found = pc.index_in(batch.column(j), value_set=vocab[col])
                        features[:, j] = found.fill_null(
                            VOCABULARY[col].index("Missing")
                        ).to_numpy()
                    found = pc.index_in(batch.column(len(FEATURE_COLUMNS)), value_set=labels_set)
                    labels = found.fill_null(-1).to_numpy().astype(np.int8)
                    loader._count_labels(self.report, labels)
                    yield loader.EncodedChunk(features, labels, first, 0)
                    first += batch.num_rows

    return ArrowStrings()


def _aggregate(stream: Any) -> dict[str, Any]:
    from shared.model.training import SplitParams, aggregate

    train, test = aggregate(stream, SplitParams())
    digest = hashlib.sha256()
    for counts in (train, test):
        for array in (counts.codes, counts.negatives, counts.positives):
            digest.update(np.ascontiguousarray(array).tobytes())
    return {"rows": stream.report.rows_read, "counts_digest": digest.hexdigest()[:16]}


def _parse_only(path: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    dictionary = pa.dictionary(pa.int32(), pa.binary())
    reader = pacsv.open_csv(
        path.open("rb"),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(_COLUMNS_READ),
            column_types=dict.fromkeys(_COLUMNS_READ, dictionary),
            strings_can_be_null=False,
            null_values=[],
            check_utf8=False,
        ),
    )
    return {"rows": sum(batch.num_rows for batch in reader)}


def _segments_parse_only(path: Path) -> dict[str, Any]:
    from shared.data import fast_reader
    from shared.data.header import read_header

    header = read_header(path)
    marker = b"rvt-end-bench"
    with path.open("rb") as raw:
        segments = fast_reader.Segments(raw, b"\n" + b",".join([marker] * header.columns) + b"\n")
        parser = fast_reader._SegmentParser(header, _COLUMNS_READ, marker)
        rows = sum(b.num_rows for b in fast_reader._parsed_segments(segments, parser))
    return {"rows": rows, "sha256": segments.sha256.hexdigest()[:16]}


def _polars_group_by(path: Path) -> dict[str, Any]:
    import polars as pl

    types = dict.fromkeys(_COLUMNS_READ, pl.String)
    counts = (
        pl.scan_csv(path, schema_overrides=types, infer_schema=False)
        .select(list(_COLUMNS_READ))
        .group_by(list(_COLUMNS_READ))
        .len()
        .collect(engine="streaming")
    )
    return {"rows": int(counts["len"].sum()), "groups": counts.height}


def _run_child(name: str, path: Path) -> dict[str, Any]:
    import importlib

    from shared.data.loader import EncodedCsv

    # Imports are not reading: load what the candidate uses before the clock starts.
    for module in ("shared.model.training", "pyarrow.csv", "pyarrow.compute", "polars"):
        if module != "polars" or name.startswith("polars"):
            importlib.import_module(module)

    # The earlier reader is loaded from git before the clock starts, too.
    stream_reader = _stream_reader_chunks(path) if name == "arrow_stream" else None
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "pandas": lambda: _aggregate(_pandas_chunks(path)),
        "arrow": lambda: _aggregate(EncodedCsv(path)),
        "arrow_stream": lambda: _aggregate(stream_reader),
        "arrow_strings": lambda: _aggregate(_arrow_strings_chunks(path)),
        "arrow_parse_only": lambda: _parse_only(path),
        "arrow_segments_parse_only": lambda: _segments_parse_only(path),
        "polars_group_by": lambda: _polars_group_by(path),
    }
    started = time.perf_counter()
    cpu = time.process_time()
    result = runners[name]()
    wall = time.perf_counter() - started
    return {
        **result,
        "wall_s": round(wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "rows_per_s": round(result["rows"] / wall),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# --- the parent -------------------------------------------------------------------------------


def measure(name: str, path: Path, timeout_s: float = 900) -> dict[str, Any]:
    """One candidate in a fresh process (imports included in its RSS, not in its time)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.reader", "--child", name, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(rows: int, rounds: int, candidates: tuple[str, ...]) -> dict[str, Any]:
    from bench.procstat import machine_cpu_model

    path = dataset(rows)
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in candidates}
    for i in range(rounds):
        order = candidates[i % len(candidates) :] + candidates[: i % len(candidates)]
        for name in order:
            result = measure(name, path)
            runs[name].append(result)
            print(
                f"  round {i + 1} {name:<17} {result['wall_s']:7.2f} s "
                f"{result['rows_per_s'] / 1e6:5.2f}M rows/s  cpu {result['cpu_s']:6.2f} s  "
                f"peak RSS {result['peak_rss_mib']:6.1f} MiB  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    digests = {r.get("counts_digest") for name in FULL if name in runs for r in runs[name]}
    if len(digests) > 1:
        raise RuntimeError(f"the readers disagree on the counts: {sorted(map(str, digests))}")
    medians = {
        name: {
            key: statistics.median(r[key] for r in results)
            for key in ("wall_s", "cpu_s", "rows_per_s", "peak_rss_mib")
        }
        for name, results in runs.items()
    }
    reference = medians.get("pandas", {}).get("wall_s")
    for values in medians.values():
        if reference:
            values["speedup_vs_pandas"] = round(reference / values["wall_s"], 2)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": machine_cpu_model(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "libraries": _versions(),
        "file": {"rows": rows, "bytes": path.stat().st_size, "seed": SEED},
        "rounds": rounds,
        "counts_agree": len(digests) <= 1,
        "medians": medians,
        "runs": runs,
        "notes": __doc__.split("\n\n", 2)[2].strip() if __doc__ else "",
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("pandas", "pyarrow", "polars", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reader", description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS / "reader.json")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run_child(args.child[0], Path(args.child[1]))), flush=True)
        return
    candidates = tuple(c for c in args.candidates.split(",") if c)
    if unknown := set(candidates) - set(CANDIDATES):
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {CANDIDATES}")
    results = run(args.rows, args.rounds, candidates)
    for name, values in results["medians"].items():
        print(
            f"{name:<17} median {values['wall_s']:7.2f} s  {values['rows_per_s'] / 1e6:5.2f}M "
            f"rows/s  peak RSS {values['peak_rss_mib']:6.1f} MiB"
            + (f"  x{values['speedup_vs_pandas']}" if "speedup_vs_pandas" in values else "")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
