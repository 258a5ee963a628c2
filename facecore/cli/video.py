"""``python -m facecore video``: detect faces in a video file and write the annotated (or blurred) MP4."""

from __future__ import annotations

from pathlib import Path

from ..video import VideoConfig, VideoError, check_output, format_time, probe, process_video
from .args import int_range, positive_float, probability
from .progress import line_printer

DEFAULTS = VideoConfig()


def _line(p) -> str:
    done, total, elapsed = int(p.done), int(p.total), p.extra["elapsed_s"]
    eta = elapsed / done * max(0, total - done) if done else 0
    return f"{done}/{total} frames, {done / max(elapsed, 1e-9):.1f} fps, ETA {format_time(eta)}   "


def _video(args) -> int:
    from ..registry import load_detector
    from ..datasets.workspace import Workspace

    models_root = args.models or Workspace.from_env().models_root
    check_output(args.output, args.input)
    for extra in (args.json, args.csv):
        if extra:
            check_output(extra, args.input)
            if Path(extra).resolve() == Path(args.output).resolve():
                raise VideoError(f"{extra}: is also the video output; give the detections another file name")
    detector = load_detector(args.model, models_root)
    config = VideoConfig(threshold=args.threshold, every=args.every, smooth=args.smooth, blur=args.blur,
                         batch_size=args.batch, allow_truncated=args.allow_truncated)
    info = probe(args.input)
    print(f"{args.input}: {info.summary()}")
    result = process_video(args.input, args.output, detector, config, progress=line_printer(_line, every=1.0))
    print()
    for w in result.warnings:
        print(f"warning: {w}")
    if args.json or args.csv:
        from ..io import atomic_write_text

        for path, text in ((args.json, result.to_json), (args.csv, result.to_csv)):
            if path:
                atomic_write_text(path, text())
                print(f"wrote {path}")
    faces = sum(1 for r in result.records if r.score >= config.threshold)
    print(f"wrote {result.output}: {result.frames} frames in {result.seconds:.1f} s ({result.fps:.1f} fps), "
          f"face in {faces} frames" + (", audio kept" if result.audio_kept else ""))
    return 0


def _seconds(text: str) -> float:
    """``--every``: 0 (every frame) or a positive number of seconds."""
    return 0.0 if text.strip() in ("0", "0.0") else positive_float(text)


def add_parser(sub) -> None:
    p = sub.add_parser("video", help="detect faces in a video; write an annotated (or blurred) H.264 MP4")
    p.add_argument("input", help="video file (mp4, mov, avi, webm, mkv)")
    p.add_argument("output", help="the .mp4 to write")
    p.add_argument("--model", required=True, help="'haar' or the name of a trained model in models/")
    p.add_argument("--models", help="models folder (default: $FACETRACK_MODELS or ./models)")
    p.add_argument("--every", type=_seconds, default=DEFAULTS.every,
                   help="seconds between detections, boxes held in between (default 0: every frame)")
    p.add_argument("--threshold", type=probability, default=DEFAULTS.threshold,
                   help=f"minimum face probability drawn (default {DEFAULTS.threshold})")
    p.add_argument("--smooth", type=probability, default=DEFAULTS.smooth, help="0..0.95 box smoothing between samples")
    p.add_argument("--blur", action="store_true", help="blur faces instead of drawing boxes")
    p.add_argument("--batch", type=int_range(1, 256), default=DEFAULTS.batch_size, help="frames per inference batch")
    p.add_argument("--allow-truncated", action="store_true",
                   help="process the readable start of a truncated file instead of refusing it")
    p.add_argument("--json", metavar="DETECTIONS", help="also write per-frame detections as JSON")
    p.add_argument("--csv", metavar="DETECTIONS", help="also write per-frame detections as CSV")
    p.set_defaults(func=_video)
