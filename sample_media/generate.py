#!/usr/bin/env python3
"""Write a synthetic test clip: moving, grainy picture with shot changes (or a screen recording), and audio.

    python sample_media/generate.py OUT.mp4 --duration 60 --size 1920x1080 --fps 30 \
        [--kind grain|screen] [--no-audio] [--container webm] [--rotation 90] [--vfr] [--gop 2]

A thin wrapper over vtp.synth (install the project first: pip install -e .).
The container defaults to the output file's extension when that is a known one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vtp.core.tools import FfmpegFailed
from vtp.synth import CONTAINERS, KINDS, ROTATIONS, ClipSpec, generate_clip


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, like 1280x720, not {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="file to write")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--fps", default="30", help="frame rate: 30, 25, 30000/1001 ... (default 30)")
    parser.add_argument(
        "--kind", choices=KINDS, default="grain",
        help="grain: grainy, moving, shot changes (hard to encode; default); screen: a screen recording (easy)",
    )
    parser.add_argument("--no-audio", action="store_true", help="leave out the audio stream")
    parser.add_argument(
        "--container",
        choices=sorted(CONTAINERS),
        help="mp4/mov/mkv: H.264 + AAC, webm: VP9 + Opus, mpg: MPEG-2 + MP2 (default: from the extension, else mp4)",
    )
    parser.add_argument("--rotation", type=int, choices=ROTATIONS, default=0, help="display rotation (mp4/mov)")
    parser.add_argument("--vfr", action="store_true", help="irregular frame timestamps")
    parser.add_argument("--gop", type=float, help="fixed keyframe interval in seconds (default: the encoder's own)")
    parser.add_argument("--pix-fmt", default="yuv420p", help="pixel format (default yuv420p)")
    args = parser.parse_args(argv)

    container = args.container
    if container is None:
        suffix = args.output.suffix.lower().lstrip(".")
        container = suffix if suffix in CONTAINERS else "mp4"
    try:
        spec = ClipSpec(
            duration_s=args.duration,
            width=args.size[0],
            height=args.size[1],
            fps=args.fps,
            audio=not args.no_audio,
            container=container,
            rotation=args.rotation,
            vfr=args.vfr,
            source_gop_s=args.gop,
            pix_fmt=args.pix_fmt,
            kind=args.kind,
        )
    except ValueError as error:
        parser.error(str(error))

    started = time.monotonic()
    try:
        path = generate_clip(args.output, spec)
    except FfmpegFailed as error:
        print(f"generate.py: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {path} ({path.stat().st_size:,} bytes, {spec.kind}, {spec.width}x{spec.height} {spec.video_codec}"
        f" {spec.effective_pix_fmt}, {'no audio' if not spec.audio else spec.audio_codec}) in"
        f" {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
