"""A seeded mutation fuzzer over facecore's readers of untrusted files: image decoding (JPEG, PNG),
label parsing (labelme JSON, Pascal VOC XML) and dataset import (zip).

Each format's mutants (bit flips, truncations, runs of 0x00/0xFF, duplicated slices, corrupted length
and size fields, with chunk CRCs sometimes fixed up so the damage gets past them, and text edits for
labels) run in a worker subprocess whose address space is capped (``resource.setrlimit``) at what it
holds after warming up plus 512 MB. The test fails on any exception that is not facecore's own
(``FaceCoreError``), on a worker killed by a signal, on a call over 512 MB or over 10 s, and on an
import that leaves images in the dataset its report does not list. A failing mutant is saved under
the test's tmp folder to reproduce it.

Run one format by hand: ``python tests/test_fuzz.py png 0 300 /tmp/fuzz``. ``FACETRACK_FUZZ_N`` sets
the mutants per format (default 300).
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest

FORMATS = ("jpeg", "png", "labelme", "voc", "zip")
N_PER_FORMAT = int(os.environ.get("FACETRACK_FUZZ_N", "300"))
CAP_MB = 512
SLOW_CALL_S = 10.0


# -- seeds: small valid files -------------------------------------------------------------------
def _image(w=64, h=48, seed=0):
    import numpy as np
    from facecore.testing import face_image

    return face_image(np.random.default_rng(seed), w, h)[0]


def seed_file(fmt: str) -> bytes:
    import cv2
    import numpy as np
    from facecore.datasets.labels import ImageLabel, labelme_document, voc_document

    label = ImageLabel(64, 48, np.asarray([[0.1, 0.1, 0.5, 0.6], [0.55, 0.2, 0.9, 0.8]], np.float32))
    if fmt == "jpeg":
        from PIL import Image

        buf, ex = io.BytesIO(), Image.Exif()
        ex[0x0112] = 6  # an EXIF block too (orientation: turned)
        Image.fromarray(_image()).save(buf, "JPEG", quality=85, exif=ex.tobytes())
        return buf.getvalue()
    if fmt == "png":
        return cv2.imencode(".png", _image(seed=1))[1].tobytes()
    if fmt == "labelme":
        return json.dumps(labelme_document(label, "a.jpg"), indent=1).encode()
    if fmt == "voc":
        return voc_document(label, "a.jpg").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/images/a.jpg", seed_file("jpeg"))
        zf.writestr("set/labels/a.json", seed_file("labelme"))
        zf.writestr("set/images/b.png", cv2.imencode(".png", _image(seed=2))[1].tobytes(),
                    compress_type=zipfile.ZIP_BZIP2)
        zf.writestr("set/labels/b.xml", seed_file("voc"), compress_type=zipfile.ZIP_LZMA)
        zf.writestr("set/images/c.jpg", cv2.imencode(".jpg", _image(seed=3))[1].tobytes(),
                    compress_type=zipfile.ZIP_STORED)
        zf.comment = b"fuzz seed"
    return buf.getvalue()


# -- where the length and size fields are ---------------------------------------------------------
def _png_chunks(b: bytes):
    pos = 8
    while pos + 12 <= len(b):
        length = struct.unpack_from(">I", b, pos)[0]
        yield pos, length
        pos += 12 + length


def _jpeg_segments(b: bytes):
    pos = 2
    while pos + 4 <= len(b) and b[pos] == 0xFF:
        marker, length = b[pos + 1], struct.unpack_from(">H", b, pos + 2)[0]
        yield pos, marker, length
        if marker == 0xDA:
            return
        pos += 2 + length


def _zip_fields(b: bytes) -> list[tuple[int, int]]:
    """(offset, width in bytes) of every size, count, offset, length, method, flag and CRC field."""
    out = []
    for sig, fields in ((b"PK\x03\x04", [(6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)]),
                        (b"PK\x01\x02", [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2),
                                         (42, 4)]),
                        (b"PK\x05\x06", [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)])):
        pos = b.find(sig)
        while pos >= 0:
            out += [(pos + o, w) for o, w in fields if pos + o + w <= len(b)]
            pos = b.find(sig, pos + 4)
    return out


_EXTREME = (0, 1, 2, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def _value(rnd: random.Random, width: int, old: int) -> int:
    top = (1 << (8 * width)) - 1
    v = rnd.choice([rnd.choice(_EXTREME), old + rnd.randint(-8, 8), rnd.randint(0, top), old * 2, old // 2])
    return max(0, min(top, v))


def _fix_png_crcs(b: bytearray) -> None:
    for pos, length in list(_png_chunks(bytes(b))):
        if pos + 12 + length <= len(b):
            struct.pack_into(">I", b, pos + 8 + length, zlib.crc32(bytes(b[pos + 4:pos + 8 + length])))


# -- mutators ---------------------------------------------------------------------------------
def _binary_mutation(b: bytearray, rnd: random.Random, fmt: str) -> bytearray:
    kind = rnd.choice(["flip", "flip", "truncate", "run", "dup", "delete", "byte", "length", "length"])
    if not b:
        return b
    p = rnd.randrange(len(b))
    if kind == "flip":
        for _ in range(rnd.randint(1, 8)):
            q = rnd.randrange(len(b))
            b[q] ^= 1 << rnd.randrange(8)
    elif kind == "truncate":
        del b[p:]
    elif kind == "run":
        n = rnd.choice([1, 4, 16, 64, 512])
        b[p:p + n] = bytes([rnd.choice([0, 0xFF])]) * n
    elif kind == "dup":
        n = rnd.randint(1, 2048)
        b[p:p] = b[p:p + n]
    elif kind == "delete":
        del b[p:p + rnd.randint(1, 256)]
    elif kind == "byte":
        b[p] = rnd.randrange(256)
    else:
        _length_mutation(b, rnd, fmt)
    return b


def _length_mutation(b: bytearray, rnd: random.Random, fmt: str) -> None:
    if fmt == "png":
        chunks = list(_png_chunks(bytes(b)))
        if chunks:
            pos, length = rnd.choice(chunks)
            if rnd.random() < 0.5 or bytes(b[pos + 4:pos + 8]) != b"IHDR":
                struct.pack_into(">I", b, pos, _value(rnd, 4, length))
            else:  # the declared image size, CRC fixed below: only the size limits stand in the way
                field = pos + 8 + rnd.choice([0, 4])
                struct.pack_into(">I", b, field, _value(rnd, 4, struct.unpack_from(">I", b, field)[0]))
                _fix_png_crcs(b)
    elif fmt == "jpeg":
        segs = list(_jpeg_segments(bytes(b)))
        if segs:
            pos, marker, length = rnd.choice(segs)
            if marker in (0xC0, 0xC1, 0xC2) and rnd.random() < 0.6:  # the frame size
                field = pos + 5 + rnd.choice([0, 2])
                struct.pack_into(">H", b, field, _value(rnd, 2, struct.unpack_from(">H", b, field)[0]))
            else:
                struct.pack_into(">H", b, pos + 2, _value(rnd, 2, length))
    elif fmt == "zip":
        fields = _zip_fields(bytes(b))
        if fields:
            pos, width = rnd.choice(fields)
            old = int.from_bytes(b[pos:pos + width], "little")
            b[pos:pos + width] = _value(rnd, width, old).to_bytes(width, "little")


_TEXT_SWAPS = ["-1", "0", "1e308", "-1e308", "NaN", "Infinity", "1e999", "99999999999999999999", "true", "null",
               '""', "[]", "{}", "[[[[[[[[", "]]]]", "<", ">", "</object>", "<object>", "&amp;", "&#0;", "\ufeff",
               "\x00", "'", '"', ",", ":", "\\u0000", "\\ud800"]


def _text_mutation(b: bytearray, rnd: random.Random) -> bytearray:
    text = b.decode("utf-8", "replace")
    kind = rnd.choice(["number", "swap", "dup_line", "drop_line", "binary"])
    if kind == "number":
        import re

        nums = [m.span() for m in re.finditer(r"-?\d+(\.\d+)?", text)]
        if nums:
            s, e = rnd.choice(nums)
            text = text[:s] + rnd.choice(_TEXT_SWAPS[:8] + [str(rnd.randint(-10**6, 10**7))]) + text[e:]
    elif kind == "swap":
        p = rnd.randrange(len(text) + 1)
        text = text[:p] + rnd.choice(_TEXT_SWAPS) + text[p + rnd.randint(0, 3):]
    elif kind in ("dup_line", "drop_line"):
        lines = text.split("\n")
        i = rnd.randrange(len(lines))
        j = min(len(lines), i + rnd.randint(1, 8))
        lines[i:i] = lines[i:j] * rnd.randint(1, 3) if kind == "dup_line" else []
        if kind == "drop_line":
            del lines[i:j]
        text = "\n".join(lines)
    else:
        return _binary_mutation(b, rnd, "text")
    return bytearray(text.encode("utf-8", "surrogatepass"))


def mutant(seed: bytes, fmt: str, index: int) -> bytes:
    """Mutant ``index`` of ``seed``: one to three stacked mutations, the same for the same index."""
    rnd = random.Random(f"{fmt}-{index}")
    b = bytearray(seed)
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        b = _text_mutation(b, rnd) if fmt in ("labelme", "voc") else _binary_mutation(b, rnd, fmt)
    if fmt == "png" and rnd.random() < 0.3:
        _fix_png_crcs(b)  # get past the CRC check to the decoder and the pixel data check
    return bytes(b)


# -- the worker: runs in a subprocess under a memory cap ----------------------------------------------
def _target(fmt: str, scratch: Path):
    from facecore.datasets.dataset import Dataset
    from facecore.images import decode_image, image_header
    from facecore.datasets.labels import parse_label_bytes

    if fmt in ("jpeg", "png"):
        def run(data: bytes, i: int):
            image_header(data, f"m{i}")
            return decode_image(data, f"m{i}").shape
    elif fmt in ("labelme", "voc"):
        def run(data: bytes, i: int):
            notes: list[str] = []
            name = f"m{i}." + ("json" if fmt == "labelme" else "xml")
            label = parse_label_bytes(data, name, None, notes)
            return len(label.boxes)
    else:
        def run(data: bytes, i: int):
            ds = Dataset.create(scratch / f"ds{i}")
            before = {it.stem for it in ds.items()}
            try:
                report = ds.import_zip(data)
            finally:
                new = {it.stem for it in ds.items()} - before
            if new != set(report.added):  # a half-import its report does not list
                raise AssertionError(f"the import added {sorted(new)}, its report says {report.added}")
            return len(report.added), len(report.skipped)
    return run


def _vm_mb() -> tuple[float, float]:
    """(address space, resident) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmSize"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def _peak_rss_mb() -> float:
    """The most this process has held resident, in MB: VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss does not: a worker started by a 2 GB pytest reported 2 GB before its first call)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


def worker(fmt: str, start: int, count: int, out: Path) -> None:
    """Run mutants ``start`` .. ``start + count`` of ``fmt``; one JSON line per mutant on stdout (and a
    ``start`` line before each, so a crash names its mutant); the last line sums up."""
    import resource

    from facecore.errors import FaceCoreError

    out.mkdir(parents=True, exist_ok=True)
    seed = seed_file(fmt)
    run = _target(fmt, out)
    run(seed, -1)  # warm up: libraries loaded, threads and allocator arenas made
    vm, rss0 = _vm_mb()
    cap = int((vm + CAP_MB) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    base_peak = _peak_rss_mb()
    counts = {"accepted": 0, "refused": 0}
    slowest = 0.0
    for i in range(start, start + count):
        data = mutant(seed, fmt, i)
        print(json.dumps({"start": i}), flush=True)
        t0 = time.perf_counter()
        try:
            run(data, i)
            counts["accepted"] += 1
        except FaceCoreError:
            counts["refused"] += 1
        except BaseException as exc:  # noqa: BLE001 - what the test is looking for
            path = out / f"{fmt}-{i}.bin"
            path.write_bytes(data)
            print(json.dumps({"escape": i, "error": f"{type(exc).__name__}: {str(exc)[:300]}", "file": str(path)}),
                  flush=True)
        slowest = max(slowest, time.perf_counter() - t0)
        if time.perf_counter() - t0 > SLOW_CALL_S:
            print(json.dumps({"slow": i, "s": round(time.perf_counter() - t0, 1)}), flush=True)
    peak = _peak_rss_mb()
    print(json.dumps({"done": fmt, "mutants": count, **counts, "rss_start_mb": round(rss0),
                      "peak_rss_mb": round(peak), "peak_growth_mb": round(max(0.0, peak - min(base_peak, rss0))),
                      "cap_mb": round(cap / 2**20), "slowest_s": round(slowest, 3)}), flush=True)


# -- the test ---------------------------------------------------------------------------------
def _worker_env() -> dict:
    env = dict(os.environ)
    # one thread each: the address-space cap is about the decoders, not thread stacks or arenas
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MALLOC_ARENA_MAX="2", OPENCV_FOR_THREADS_NUM="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    # the worker runs this file as a script (its folder, tests/, first on sys.path): facecore comes from the
    # repository, as in CI's clean clone, where facecore is not pip-installed
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.mark.slow
def test_fuzzed_files_end_in_facecore_errors_within_512_mb(tmp_path):
    t0 = time.perf_counter()
    procs = {fmt: subprocess.Popen([sys.executable, __file__, fmt, "0", str(N_PER_FORMAT), str(tmp_path / fmt)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_worker_env(),
                                   cwd=Path(__file__).resolve().parent.parent)
             for fmt in FORMATS}
    problems, summaries = [], {}
    for fmt, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            problems.append(f"{fmt}: the worker hung (killed after 900 s)")
        lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
        started = [x["start"] for x in lines if "start" in x]
        problems += [f"{fmt} mutant {x['escape']}: {x['error']} (saved as {x['file']})" for x in lines if "escape" in x]
        problems += [f"{fmt} mutant {x['slow']}: took {x['s']} s" for x in lines if "slow" in x]
        done = [x for x in lines if "done" in x]
        if proc.returncode != 0 or not done:
            why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            problems.append(f"{fmt}: the worker died ({why}) at mutant {started[-1] if started else '?'}: "
                            f"{stderr[-1500:]}")
            continue
        summaries[fmt] = done[0]
        if done[0]["peak_growth_mb"] > CAP_MB:
            problems.append(f"{fmt}: a call took {done[0]['peak_growth_mb']} MB")
    elapsed = time.perf_counter() - t0
    print(f"\nfuzz: {N_PER_FORMAT} mutants per format in {elapsed:.0f} s")
    for fmt, s in summaries.items():
        print(f"  {fmt}: {s}")
    assert not problems, "\n".join(problems)
    assert set(summaries) == set(FORMATS)
    for s in summaries.values():
        assert s["mutants"] >= N_PER_FORMAT and s["accepted"] + s["refused"] == s["mutants"]


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
