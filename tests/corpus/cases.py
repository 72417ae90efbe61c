"""The input corpus of issue 9: hostile or broken files, and unusual but valid ones.

Every input is made here, in the test session, with the project's own ffmpeg (argument
lists through `vtp.core.tools.run_ffmpeg`, never a shell) or with a few lines of Python
(a PNG, a zip, a sparse file). Nothing binary is committed. Inputs are small (16x16 to
720x576, a few seconds) so that the whole corpus runs in a few minutes on two cores;
640x360 sources give two rungs (360p and 240p) so that keyframes and segments are
compared across rungs.

A case is:
- `make(folder)`: writes its input(s) into its own folder and says what to give `vtp run`
  (by default the input's absolute path; some cases give a bare name from the working
  directory, or feed standard input);
- `expect`: COMPLETE for a valid case, else the reason code it must be refused with;
- `args`: extra `vtp run` options (a lowered limit, a shorter chunk);
- `check`: extra checks on a finished job (rotation, holes, audio placement...).

Every valid input carries metadata with MARK in it (title, comment, and chapters or
stream titles where the container holds them): none of it may reach a published file.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vtp.core.tools import run_ffmpeg

MARK = "VTPCORPUSMARK"
COMPLETE = "COMPLETE"


@dataclass(frozen=True)
class Made:
    """What a case's maker produced."""

    source: Path  # the file the job must be checked against (or the hostile input itself)
    arg: str | None = None  # what `vtp run` is given; None: source's absolute path
    in_cwd: tuple[Path, ...] = ()  # files copied into the working directory before the run
    stdin: Path | None = None  # fed to vtp's standard input
    watch_fifo: Path | None = None  # a FIFO that must never be opened for reading (see conftest)
    feed: Path | None = None  # what the FIFO's writer would send if it were opened


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "hostile" | "valid"
    expect: str  # COMPLETE, or the ErrorCode a hostile input is refused with
    make: Callable[[Path], Made]
    args: tuple[str, ...] = ()
    check: Callable[..., None] | None = None
    note: str = ""
    make_cost: float = 1.0  # rough seconds to make, for scheduling the slow ones first


# --- ffmpeg helpers ----------------------------------------------------------------------------


def ffmpeg(*args: str, timeout_s: float = 120) -> None:
    run_ffmpeg(["-v", "error", *map(str, args)], timeout_s=timeout_s)


def video(size: str = "640x360", rate: str = "30", duration: float = 2.0, pattern: str = "testsrc2") -> list[str]:
    joiner = ":" if "=" in pattern else "="
    return ["-f", "lavfi", "-i", f"{pattern}{joiner}size={size}:rate={rate}:duration={duration:g}"]


def tone(duration: float = 2.0, rate: int = 48000, frequency: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={rate}:duration={duration:g}"]


def meta(case: str) -> list[str]:
    return ["-metadata", f"title={MARK} title of {case}", "-metadata", f"comment={MARK} comment"]


X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "96k", "-ac", "2"]


def simple(name: str, suffix: str, *codec_args: str, size: str = "640x360", rate: str = "30",
           duration: float = 2.0, audio: bool = True, before: tuple[str, ...] = ()) -> Callable[[Path], Made]:
    """A testsrc2 picture (and a tone), encoded as asked."""

    def make(folder: Path) -> Made:
        dest = folder / f"{name}{suffix}"
        inputs = [*before, *video(size, rate, duration)] + (tone(duration) if audio else [])
        ffmpeg(*inputs, *codec_args, *meta(name), *([] if audio else ["-an"]), dest)
        return Made(dest)

    return make


# --- hostile makers --------------------------------------------------------------------------


def write_bytes(name: str, data: bytes) -> Callable[[Path], Made]:
    def make(folder: Path) -> Made:
        dest = folder / name
        dest.write_bytes(data)
        return Made(dest)

    return make


def random_bytes(folder: Path) -> Made:
    dest = folder / "random.mov"
    dest.write_bytes(bytes((i * 7919 + (i >> 3) * 104729) % 251 for i in range(300_000)))
    return Made(dest)


def zip_file(folder: Path) -> Made:
    dest = folder / "holiday_videos.zip"
    inner = folder / "inner.mp4"
    ffmpeg(*video("160x90", "30", 1.0), *X264, inner)
    with zipfile.ZipFile(dest, "w") as archive:
        archive.write(inner, "holiday.mp4")
    inner.unlink()
    return Made(dest)


def png(folder: Path) -> Made:
    """A 64x48 PNG written by hand (this ffmpeg build has no PNG encoder)."""
    dest = folder / "picture.png"
    width, height = 64, 48
    rows = b"".join(b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 128)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    dest.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return Made(dest)


def jpeg(folder: Path) -> Made:
    dest = folder / "photo.jpg"
    ffmpeg(*video("320x180", "1", 1.0), "-frames:v", "1", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p",
           "-f", "image2", "-update", "1", dest)
    return Made(dest)


def gif(folder: Path) -> Made:
    dest = folder / "animation.gif"
    ffmpeg(*video("160x90", "10", 2.0), "-c:v", "gif", dest)
    return Made(dest)


def gif_in_mkv(folder: Path) -> Made:
    dest = folder / "gif_frames.mkv"
    ffmpeg(*video("160x90", "10", 2.0), "-c:v", "gif", dest)
    return Made(dest)


def referenced(folder: Path) -> tuple[Path, Path]:
    """A real local video, and a FIFO a list will name: opening the FIFO would be reading a local file."""
    real = folder / "private_video.mp4"
    ffmpeg(*video("160x90", "30", 2.0), *X264, "-movflags", "+faststart", real)
    fifo = folder / "private_segment.ts"
    os.mkfifo(fifo)
    return real, fifo


def hls_playlist(name: str) -> Callable[[Path], Made]:
    def make(folder: Path) -> Made:
        real, fifo = referenced(folder)
        dest = folder / name
        dest.write_text(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
            f"#EXTINF:2.0,\n{fifo}\n#EXTINF:2.0,\nfile:{real}\n#EXT-X-ENDLIST\n"
        )
        return Made(dest, watch_fifo=fifo, feed=real)

    return make


def ffconcat(folder: Path) -> Made:
    real, fifo = referenced(folder)
    dest = folder / "list.ffconcat"
    dest.write_text(f"ffconcat version 1.0\nfile '{fifo}'\nfile '{real}'\n")
    return Made(dest, watch_fifo=fifo, feed=real)


def audio_only(suffix: str, *codec: str) -> Callable[[Path], Made]:
    def make(folder: Path) -> Made:
        dest = folder / f"song{suffix}"
        ffmpeg(*tone(2.0), *codec, dest)
        return Made(dest)

    return make


def subtitles_only(folder: Path) -> Made:
    srt = folder / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,500\nHello\n\n2\n00:00:02,000 --> 00:00:03,000\nWorld\n")
    dest = folder / "subtitles_only.mkv"
    ffmpeg("-i", srt, "-c:s", "srt", dest)
    srt.unlink()
    return Made(dest)


def truncated_moov_at_end(folder: Path) -> Made:
    """An MP4 written with its index (moov) at the end, cut in the middle: no index at all."""
    whole = folder / "whole.mp4"
    ffmpeg(*video("320x180", "30", 3.0), *tone(3.0), *X264, *AAC, whole)
    data = whole.read_bytes()
    assert data.find(b"moov") > len(data) // 2, "the index is at the end"
    dest = folder / "upload_interrupted.mp4"
    dest.write_bytes(data[: len(data) // 2])
    whole.unlink()
    return Made(dest)


def mdat_cut(folder: Path) -> Made:
    """An MP4 with its index first (faststart) whose media data is cut off: the index points past the end."""
    whole = folder / "whole.mp4"
    ffmpeg(*video("320x180", "30", 4.0), *tone(4.0), *X264, *AAC, "-movflags", "+faststart", whole)
    data = whole.read_bytes()
    dest = folder / "media_cut.mp4"
    dest.write_bytes(data[: int(len(data) * 0.6)])
    whole.unlink()
    return Made(dest)


def damaged_ts(folder: Path) -> Made:
    """An MPEG-TS with 2 % of the bytes of its middle third overwritten: packet headers and
    timestamps too (a frame lands at 11.8 s of a 4 s clip)."""
    whole = folder / "whole.ts"
    ffmpeg(*video("320x180", "30", 4.0), *tone(4.0), *X264, "-g", "30", *AAC, "-f", "mpegts", whole)
    data = bytearray(whole.read_bytes())
    third = len(data) // 3
    for at in range(third, 2 * third, 50):
        data[at] ^= 0x5A
    dest = folder / "damaged_broadcast.ts"
    dest.write_bytes(bytes(data))
    whole.unlink()
    return Made(dest)


def bit_rot_ts(folder: Path) -> Made:
    """An MPEG-TS with one bit flipped every 3001 bytes of its middle third: the payload is
    damaged, the packets and timestamps are not; the decoders conceal the damage."""
    dest = folder / "bit_rot.ts"
    ffmpeg(*video("320x180", "30", 4.0), *tone(4.0), *X264, "-g", "30", *AAC, *meta("bitrot"), "-f", "mpegts", dest)
    data = bytearray(dest.read_bytes())
    third = len(data) // 3
    for number, at in enumerate(range(third, 2 * third, 3001)):
        data[at] ^= 1 << (number * 5 % 8)
    dest.write_bytes(bytes(data))
    return Made(dest)


def _patch_matroska_size(data: bytearray, old: int, new: int) -> bytearray:
    """Set Matroska's PixelWidth (B0) and PixelHeight (BA) elements, two-byte values, in place."""
    for element in (0xB0, 0xBA):
        marker = bytes([element, 0x82]) + old.to_bytes(2, "big")
        at = data.find(marker)
        assert at > 0 and data.find(marker, at + 1) < 0, f"one {element:#x} element of {old}"
        data[at + 2:at + 4] = new.to_bytes(2, "big")
    return data


def huge_picture(folder: Path) -> Made:
    """Raw video whose Matroska header says 30000x30000 (the frames are 256x256, cut short)."""
    whole = folder / "256x256.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=256x256:rate=30", "-frames:v", "3",
           "-c:v", "rawvideo", "-pix_fmt", "gray", whole)
    dest = folder / "30000x30000.mkv"
    dest.write_bytes(_patch_matroska_size(bytearray(whole.read_bytes()), 256, 30000)[:100_000])
    whole.unlink()
    return Made(dest)


def tiny_picture(size: str) -> Callable[[Path], Made]:
    def make(folder: Path) -> Made:
        dest = folder / f"{size}.mp4"
        ffmpeg(*video(size, "30", 1.0, "color=c=red"), "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv444p", dest)
        return Made(dest)

    return make


def fps_1000(folder: Path) -> Made:
    """16x16 at 1000 fps for 300 s: 300,000 packets (issue 9: such files took 20 s and 578 MB to refuse)."""
    second = folder / "one_second.mp4"
    ffmpeg(*video("16x16", "1000", 1.0, "color=c=red"), "-c:v", "libx264", "-preset", "ultrafast",
           "-tune", "zerolatency", second)
    dest = folder / "1000fps.mp4"
    ffmpeg("-stream_loop", "299", "-i", second, "-c", "copy", "-movflags", "+faststart", dest)
    second.unlink()
    return Made(dest)


def declared_13_hours(folder: Path) -> Made:
    """Two frames 13 hours apart: over the default 12-hour limit by what the container says."""
    dest = folder / "thirteen_hours.mp4"
    ffmpeg(*video("160x90", "1", 2.0), "-vf", "settb=1/1000,setpts='N*46800000'", "-fps_mode", "passthrough",
           "-enc_time_base:v", "1:1000", *X264, dest)
    return Made(dest)


def sparse(folder: Path) -> Made:
    """A 3 GiB sparse file whose first bytes are a real MP4 (its size is known before any read)."""
    dest = folder / "huge_sparse.mp4"
    ffmpeg(*video("160x90", "30", 1.0), *X264, "-movflags", "+faststart", dest)
    with dest.open("r+b") as handle:
        handle.truncate(3 * 1024**3)
    return Made(dest)


def named(name: str, content: bytes) -> Callable[[Path], Made]:
    """A file whose name ffmpeg would take for an option or a protocol, given by that name from the cwd."""

    def make(folder: Path) -> Made:
        dest = folder / name
        dest.write_bytes(content)
        return Made(dest, arg=name, in_cwd=(dest,))

    return make


def pipe_name(folder: Path) -> Made:
    """`pipe:0.mp4` holds text; standard input holds a real video, which must not be read."""
    dest = folder / "pipe:0.mp4"
    dest.write_text("not a video: if this job completes, standard input was read\n")
    feed = folder / "stdin_video.mp4"
    ffmpeg(*video("160x90", "30", 2.0), *X264, "-movflags", "+frag_keyframe+empty_moov", "-f", "mp4", feed)
    return Made(dest, arg="pipe:0.mp4", in_cwd=(dest,), stdin=feed)


def directory(folder: Path) -> Made:
    dest = folder / "a_folder.mp4"
    dest.mkdir()
    return Made(dest)


def missing(folder: Path) -> Made:
    return Made(folder / "does_not_exist.mp4")


def one_frame(folder: Path) -> Made:
    dest = folder / "one_frame.mp4"
    ffmpeg(*video("160x90", "30", 1.0), "-frames:v", "1", *X264, dest)
    return Made(dest)


def raw_h264(folder: Path) -> Made:
    dest = folder / "camera.264"
    ffmpeg(*video("160x90", "30", 2.0), *X264, "-f", "h264", dest)
    return Made(dest)


def av1(folder: Path) -> Made:
    dest = folder / "av1.mp4"
    ffmpeg(*video("160x90", "30", 2.0), "-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1", dest)
    return Made(dest)


def one_keyframe_6_minutes(folder: Path) -> Made:
    """16x16 at 30 fps for 6 minutes with a single keyframe: 10,800 frames for one encoder."""
    dest = folder / "one_keyframe.mp4"
    ffmpeg(*video("16x16", "30", 360.0, "color=c=blue"), "-c:v", "libx264", "-preset", "ultrafast",
           "-x264-params", "keyint=infinite:scenecut=0", "-movflags", "+faststart", dest)
    return Made(dest)


def long_declared(folder: Path) -> Made:
    dest = folder / "long.mp4"
    ffmpeg(*video("160x90", "30", 4.0), *X264, dest)
    return Made(dest)


def extra_track_unaccepted(folder: Path) -> Made:
    """Good H.264 + AAC, and a second audio track in ADPCM (no accepted codec)."""
    dest = folder / "second_track_adpcm.mkv"
    ffmpeg(*video("160x90", "30", 2.0), *tone(2.0), *tone(2.0, frequency=1000), "-map", "0", "-map", "1", "-map", "2",
           *X264, "-c:a:0", "aac", "-c:a:1", "adpcm_ms", dest)
    return Made(dest)


HOSTILE: list[Case] = [
    Case("empty_file", "hostile", "EMPTY_INPUT", write_bytes("empty.mp4", b"")),
    Case("text_named_mp4", "hostile", "UNSUPPORTED_INPUT",
         write_bytes("notes.mp4", b"shopping list: eggs, milk, a video that is not this file\n")),
    Case("random_bytes", "hostile", "UNSUPPORTED_INPUT", random_bytes),
    Case("zip_archive", "hostile", "UNSUPPORTED_INPUT", zip_file),
    Case("png_image", "hostile", "UNSUPPORTED_INPUT", png),
    Case("jpeg_image", "hostile", "UNSUPPORTED_INPUT", jpeg),
    Case("gif_file", "hostile", "UNSUPPORTED_INPUT", gif),
    Case("gif_frames_in_mkv", "hostile", "UNSUPPORTED_INPUT", gif_in_mkv),
    Case("hls_playlist", "hostile", "UNSUPPORTED_INPUT", hls_playlist("stream.m3u8"),
         note="names a FIFO and a real local video; the FIFO must never be opened"),
    Case("hls_playlist_named_mp4", "hostile", "UNSUPPORTED_INPUT", hls_playlist("playlist_in_disguise.mp4")),
    Case("ffconcat_list", "hostile", "UNSUPPORTED_INPUT", ffconcat),
    Case("audio_only_mp3", "hostile", "NO_VIDEO_STREAM", audio_only(".mp3", "-c:a", "libmp3lame")),
    Case("audio_only_wav", "hostile", "NO_VIDEO_STREAM", audio_only(".wav", "-c:a", "pcm_s16le")),
    Case("audio_only_m4a", "hostile", "NO_VIDEO_STREAM", audio_only(".m4a", "-c:a", "aac")),
    Case("subtitles_only_mkv", "hostile", "NO_VIDEO_STREAM", subtitles_only),
    Case("mp4_truncated_no_moov", "hostile", "CORRUPT_INPUT", truncated_moov_at_end,
         note="an upload cut off before its index (moov at the end)"),
    Case("mp4_mdat_cut", "hostile", "CORRUPT_INPUT", mdat_cut,
         note="the index names media past the end of the file"),
    Case("ts_heavily_damaged", "hostile", "CORRUPT_INPUT", damaged_ts,
         note="packets and timestamps damaged: the chunks cannot be made to fit, and the damage is named"),
    Case("declared_30000x30000", "hostile", "RESOLUTION_TOO_HIGH", huge_picture),
    Case("picture_1x1", "hostile", "UNSUPPORTED_INPUT", tiny_picture("1x1")),
    Case("picture_8x8", "hostile", "UNSUPPORTED_INPUT", tiny_picture("8x8")),
    Case("fps_1000", "hostile", "FRAME_RATE_TOO_HIGH", fps_1000, make_cost=3, note="300,000 packets of 16x16"),
    Case("too_long_max_duration", "hostile", "INPUT_TOO_LONG", long_declared, args=("--max-duration", "3")),
    Case("declared_13_hours", "hostile", "INPUT_TOO_LONG", declared_13_hours, note="default limit: 12 hours"),
    Case("too_large_limit", "hostile", "INPUT_TOO_LARGE", long_declared, args=("--max-size-gib", "0.00001")),
    Case("sparse_3gib", "hostile", "INPUT_TOO_LARGE", sparse, args=("--max-size-gib", "2")),
    Case("named_dash_report", "hostile", "UNSUPPORTED_INPUT", named("-report", b"not a video\n"),
         note="ffmpeg would take it for -report and write ffreport-*.log into the cwd"),
    Case("named_pipe_0", "hostile", "UNSUPPORTED_INPUT", pipe_name,
         note="text in the file; a real video on stdin that must not be read"),
    Case("directory_input", "hostile", "INPUT_NOT_FOUND", directory),
    Case("missing_path", "hostile", "INPUT_NOT_FOUND", missing),
    Case("one_frame_under_0.1s", "hostile", "UNSUPPORTED_INPUT", one_frame),
    Case("raw_h264_elementary", "hostile", "UNSUPPORTED_INPUT", raw_h264,
         note="no container timestamps: chunks could not be cut by time"),
    Case("av1_without_decoder", "hostile", "UNSUPPORTED_INPUT", av1,
         note="this FFmpeg build decodes AV1 only with hardware acceleration"),
    # Not ideal, left as is (see the report): ffprobe opens a decoder for every stream, so a
    # stream in a codec off the whitelist refuses the file even where vtp would ignore it.
    Case("extra_audio_track_unaccepted_codec", "hostile", "UNSUPPORTED_INPUT", extra_track_unaccepted,
         note="today: refused for a track vtp would not use (a decoder whitelist for every stream)"),
    Case("one_keyframe_6min", "hostile", "UNSUPPORTED_INPUT", one_keyframe_6_minutes, make_cost=4,
         note="10,800 frames after the only keyframe, over max_chunk_frames 9000"),
]


# --- valid makers ------------------------------------------------------------------------------


def ts_broadcast(folder: Path) -> Made:
    """H.264 + AAC in MPEG-TS, 25 fps, a keyframe a second: timestamps start at 1.4 s, no index."""
    dest = folder / "broadcast.ts"
    ffmpeg(*video("640x360", "25", 14.0), *tone(14.0), *X264, "-g", "25", "-bf", "2", *AAC,
           *meta("ts"), "-f", "mpegts", dest)
    return Made(dest)


def mpeg_ps(folder: Path) -> Made:
    """MPEG-2 video + MP2 in MPEG-PS: open GOPs with B-frames, the video starts at about 0.5 s."""
    dest = folder / "mpeg2.mpg"
    ffmpeg(*video("640x360", "25", 4.0), *tone(4.0), "-c:v", "mpeg2video", "-b:v", "1500k", "-bf", "2",
           "-g", "12", "-c:a", "mp2", "-b:a", "128k", *meta("mpg"), "-f", "vob", dest)
    return Made(dest)


def rotated(degrees: int) -> Callable[[Path], Made]:
    def make(folder: Path) -> Made:
        plain = folder / "unrotated.mp4"
        ffmpeg(*video("640x360", "30", 2.0), *tone(2.0), *X264, *AAC, *meta("rotated"), plain)
        dest = folder / f"rotated_{degrees}.mp4"
        ffmpeg("-display_rotation", str(degrees), "-i", plain, "-c", "copy", "-map_metadata", "0",
               "-movflags", "+faststart", dest)
        plain.unlink()
        return Made(dest)

    return make


def interlaced(folder: Path) -> Made:
    """MPEG-2 720x576 interlaced, top field first, in MPEG-TS (as SD broadcast comes)."""
    dest = folder / "interlaced_tff.ts"
    ffmpeg(*video("720x576", "25", 2.0), *tone(2.0), "-vf", "setfield=tff", "-c:v", "mpeg2video",
           "-flags", "+ilme+ildct", "-top", "1", "-b:v", "3000k", "-g", "12", "-c:a", "mp2", *meta("interlaced"),
           "-f", "mpegts", dest)
    return Made(dest)


# Frame n at (n + jitter) / 30 s; from frame 90 on, 12 s later: a 12 s hole after 3 s.
HOLE_AT_S, HOLE_S = 3.0, 12.0


def vfr_with_hole(folder: Path) -> Made:
    dest = folder / "vfr_hole.mp4"
    ffmpeg(*video("640x360", "30", 6.0), *tone(18.0),
           "-vf", "settb=1/90000,setpts='(N+0.3*sin(1.3*N)*lt(N\\,89)+if(gte(N\\,90)\\,360\\,0))/(30*TB)'",
           "-fps_mode", "passthrough", "-enc_time_base:v", "1:90000", *X264, "-g", "30", *AAC, *meta("hole"), dest)
    return Made(dest)


def hour_apart(folder: Path) -> Made:
    """Two frames, the second an hour after the first (a P-frame: decoding starts at 0)."""
    dest = folder / "two_frames_an_hour_apart.mp4"
    ffmpeg(*video("320x180", "1", 2.0), "-vf", "settb=1/90000,setpts='N*3600/TB'", "-fps_mode", "passthrough",
           "-enc_time_base:v", "1:90000", *X264, *meta("hour"), dest)
    return Made(dest)


def stream_copy_cut(folder: Path) -> Made:
    """Cut by stream copy at 1.3 s, between keyframes: an edit list hides the frames before, which start negative."""
    whole = folder / "whole.mp4"
    ffmpeg(*video("640x360", "30", 6.0), *tone(6.0), *X264, "-g", "60", *AAC, *meta("cut"), whole)
    dest = folder / "cut_by_copy.mp4"
    ffmpeg("-ss", "1.3", "-i", whole, "-t", "3", "-c", "copy", "-map_metadata", "0", dest)
    whole.unlink()
    return Made(dest)


def ts_mid_gop(folder: Path) -> Made:
    """An H.264 MPEG-TS cut at a packet boundary in the middle of a GOP: it starts with P/B frames."""
    whole = folder / "whole.ts"
    ffmpeg(*video("640x360", "30", 6.0), *tone(6.0), *X264, "-g", "90", "-bf", "2", *AAC, *meta("midgop"),
           "-f", "mpegts", whole)
    data = whole.read_bytes()
    start = (len(data) * 3 // 10) // 188 * 188  # about 1.8 s in: the next keyframe is at 3 s
    dest = folder / "starts_mid_gop.ts"
    dest.write_bytes(data[start:])
    whole.unlink()
    return Made(dest)


def ts_wrap(folder: Path) -> Made:
    """MPEG-TS whose 33-bit timestamps wrap 1.8 s in (a capture 26.5 hours into a broadcast)."""
    dest = folder / "timestamps_wrap.ts"
    ffmpeg(*video("640x360", "25", 6.0), *tone(6.0), *X264, "-g", "25", *AAC, "-output_ts_offset", "95440.5",
           *meta("wrap"), "-f", "mpegts", dest)
    return Made(dest)


def anamorphic(folder: Path) -> Made:
    """PAL DVD-style MPEG-2: 720x576 pixels shown at 16:9 (sample aspect 64:45)."""
    dest = folder / "anamorphic.mpg"
    ffmpeg(*video("720x576", "25", 2.0), *tone(2.0), "-c:v", "mpeg2video", "-b:v", "2500k", "-aspect", "16:9",
           "-c:a", "mp2", *meta("anamorphic"), "-f", "vob", dest)
    return Made(dest)


def check_wide(done: Finished) -> None:
    from vtp.core.tools import ffprobe_json

    for entry in done.manifest["renditions"]:
        stream = ffprobe_json(["-show_streams", str(done.rendition(entry["name"]).joined)])["streams"][0]
        shown = stream["width"] * _ratio(stream.get("sample_aspect_ratio", "1:1")) / stream["height"]
        assert abs(shown - 16 / 9) < 0.01, (entry["name"], stream["width"], stream["height"], stream.get("sample_aspect_ratio"))


def _ratio(text: str) -> float:
    numerator, denominator = (int(v) for v in text.replace(":", "/").split("/"))
    return numerator / denominator


def delayed_audio(folder: Path) -> Made:
    dest = folder / "audio_starts_at_2s.mp4"
    ffmpeg(*video("640x360", "30", 4.0), "-itsoffset", "2", *tone(2.0), *X264, *AAC, *meta("late"), dest)
    return Made(dest)


def early_audio(folder: Path) -> Made:
    dest = folder / "audio_ends_at_1.5s.mp4"
    ffmpeg(*video("640x360", "30", 4.0), *tone(1.5), *X264, *AAC, *meta("early"), dest)
    return Made(dest)


def two_audio_tracks(folder: Path) -> Made:
    dest = folder / "two_audio_tracks.mp4"
    ffmpeg(*video("640x360", "30", 2.0), *tone(2.0, frequency=440), *tone(2.0, frequency=1000),
           "-map", "0:v", "-map", "1:a", "-map", "2:a", *X264, *AAC, *meta("two"),
           "-metadata:s:a:1", "language=fra", dest)
    return Made(dest)


def subtitles_and_data(folder: Path) -> Made:
    """H.264 + AAC + a mov_text subtitle track + a timecode (tmcd) data track."""
    srt = folder / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n")
    dest = folder / "subtitles_and_data.mp4"
    ffmpeg(*video("640x360", "30", 2.0), *tone(2.0), "-i", srt, "-map", "0:v", "-map", "1:a", "-map", "2:s",
           *X264, *AAC, "-c:s", "mov_text", "-timecode", "01:00:00:00", *meta("subs"), dest)
    srt.unlink()
    return Made(dest)


def metadata_and_chapters(folder: Path) -> Made:
    """Title, comment, artist, stream titles and chapters, all carrying MARK, in Matroska."""
    chapters = folder / "chapters.txt"
    chapters.write_text(
        ";FFMETADATA1\n"
        f"title={MARK} global title\nartist={MARK} artist\n"
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle={MARK} chapter one\n"
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle={MARK} chapter two\n"
    )
    dest = folder / "metadata_chapters.mkv"
    ffmpeg(*video("640x360", "30", 2.0), *tone(2.0), "-i", chapters, "-map", "0:v", "-map", "1:a",
           "-map_metadata", "2", "-map_chapters", "2", *X264, *AAC, *meta("chapters"),
           "-metadata:s:v:0", f"title={MARK} video track", "-metadata:s:a:0", f"title={MARK} audio track",
           "-metadata:s:a:0", "language=deu", dest)
    chapters.unlink()
    return Made(dest)


def unicode_name(folder: Path) -> Made:
    dest = folder / "my holiday – été 日本 (final) [v2].mp4"
    ffmpeg(*video("640x360", "30", 2.0), *tone(2.0), *X264, *AAC, *meta("unicode"), dest)
    return Made(dest)


def decoy(folder: Path) -> Made:
    """`file:decoy.mp4` (3 s) beside `decoy.mp4` (1 s, 160x90): the one named must be the one transcoded."""
    real = folder / "file:decoy.mp4"
    ffmpeg(*video("640x360", "30", 3.0), *tone(3.0), *X264, *AAC, *meta("decoy"), real)
    other = folder / "decoy.mp4"
    ffmpeg(*video("160x90", "30", 1.0), *X264, other)
    return Made(real, arg="file:decoy.mp4", in_cwd=(real, other))


# --- extra checks on finished jobs -------------------------------------------------------------


@dataclass
class Finished:
    job: Path  # the job folder
    made: Made
    manifest: dict
    scratch: Path  # a folder for joined renditions

    def rendition(self, name: str | None = None):
        from tests.support.checks import join_rendition

        entry = next(r for r in self.manifest["renditions"] if name in (None, r["name"]))
        return join_rendition(self.job / entry["hls_playlist"], self.scratch)

    def audio(self):
        from tests.support.checks import join_rendition

        return join_rendition(self.job / self.manifest["audio"]["hls_playlist"], self.scratch)


def _gray(path: Path, width: int, height: int, *input_options: str) -> bytes:
    """The first frame of `path`, scaled to width x height, 8-bit gray (ffmpeg turns it upright unless told not to)."""
    result = run_ffmpeg(["-v", "error", *input_options, "-i", str(path), "-frames:v", "1",
                         "-vf", f"scale={width}:{height},format=gray", "-f", "rawvideo", "-"])
    assert len(result.stdout) == width * height
    return result.stdout


def _difference(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def check_rotation(degrees: int) -> Callable[[Finished], None]:
    def check(done: Finished) -> None:
        for entry in done.manifest["renditions"]:
            portrait = entry["height"] > entry["width"]
            assert portrait == (degrees in (90, 270)), (entry["name"], entry["width"], entry["height"])
        top = done.rendition()
        width, height = (36, 64) if degrees in (90, 270) else (64, 36)
        upright = _gray(done.made.source, width, height)
        published = _gray(top.joined, width, height)
        as_stored = _gray(done.made.source, width, height, "-noautorotate")
        right, wrong = _difference(published, upright), _difference(published, as_stored)
        assert right < 8 and right < wrong / 3, f"the picture is not turned as a player shows it ({right:.1f} vs {wrong:.1f})"

    return check


def check_hole(done: Finished) -> None:
    """The frames after the hole stay 12 s after those before it, in every rung (HLS and DASH read the same files)."""
    for entry in done.manifest["renditions"]:
        times = done.rendition(entry["name"]).times
        gaps = [(b - a, a) for a, b in zip(times, times[1:])]
        widest, at = max(gaps)
        assert abs(widest - (HOLE_S + 1 / 30)) < 0.05 and abs(at - (HOLE_AT_S - 1 / 30)) < 0.05, (widest, at)
        assert len(times) == 180
        extinf = done.rendition(entry["name"]).extinf
        assert min(extinf[:-1]) > 0.9, f"a segment of a frame or two around the hole: {extinf}"


def check_hour(done: Finished) -> None:
    for entry in done.manifest["renditions"]:
        assert done.rendition(entry["name"]).times == [0.0, 3600.0]


def _volume(path: Path, start: float, duration: float) -> float:
    result = run_ffmpeg(["-v", "info", "-ss", f"{start}", "-t", f"{duration}", "-i", str(path), "-af", "volumedetect",
                         "-f", "null", "-"])
    line = next(line for line in result.stderr.splitlines() if "max_volume:" in line)
    value = line.split("max_volume:")[1].split()[0]
    return float("-inf") if value == "-inf" else float(value)


def check_audio_window(silent: tuple[float, float], loud: tuple[float, float]) -> Callable[[Finished], None]:
    """Where the published audio is silent and where it sounds (the tone is where the source had it)."""

    def check(done: Finished) -> None:
        joined = done.audio().joined
        quiet = _volume(joined, silent[0], silent[1] - silent[0])
        sound = _volume(joined, loud[0], loud[1] - loud[0])
        assert quiet < -50, f"{silent}: {quiet} dB where the source has no audio"
        assert sound > -30, f"{loud}: {sound} dB where the source has its tone"

    return check


def check_stereo(done: Finished) -> None:
    from vtp.core.tools import ffprobe_json

    stream = ffprobe_json(["-show_streams", str(done.audio().joined)])["streams"][0]
    assert stream["channels"] == 2 and stream["sample_rate"] == "48000", stream


def check_progressive(done: Finished) -> None:
    from vtp.core.tools import ffprobe_json

    source = ffprobe_json(["-show_streams", "-select_streams", "v:0", str(done.made.source)])["streams"][0]
    assert source.get("field_order") == "tt", "the source is interlaced, top field first"
    for entry in done.manifest["renditions"]:
        out = ffprobe_json(["-show_streams", "-select_streams", "v:0", str(done.rendition(entry["name"]).joined)])
        assert out["streams"][0].get("field_order", "progressive") == "progressive"


def check_only_audio_and_video(done: Finished) -> None:
    mpd = (done.job / done.manifest["outputs"]["dash_manifest"]).read_text()
    kinds = {part.split('"')[0] for part in mpd.split('contentType="')[1:]}
    assert kinds <= {"video", "audio"}, kinds
    master = (done.job / done.manifest["outputs"]["hls_master"]).read_text()
    assert "SUBTITLES" not in master and "CLOSED-CAPTIONS=\"" not in master
    assert mpd.count("<AdaptationSet") == 2, "one audio track is published"


def check_undecodable_lead(done: Finished) -> None:
    from vtp.core.tools import ffprobe_json

    packets = ffprobe_json(["-select_streams", "v:0", "-show_entries", "packet=pts", str(done.made.source)])["packets"]
    frames = len(done.rendition().times)
    assert len(packets) > frames + 10, f"{len(packets)} packets, {frames} published: the leading ones cannot be decoded"


def check_edit_list(done: Finished) -> None:
    from vtp.core.tools import ffprobe_json

    packets = ffprobe_json(["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags",
                            str(done.made.source)])["packets"]
    hidden = [p for p in packets if "D" in p.get("flags", "") or float(p.get("pts_time", 0)) < 0]
    assert hidden, "the cut keeps frames before its start, hidden by the edit list"
    assert abs(done.manifest["source"]["duration_s"] - 3.0) < 0.1, done.manifest["source"]["duration_s"]


def check_duration(seconds: float) -> Callable[[Finished], None]:
    def check(done: Finished) -> None:
        assert abs(done.manifest["source"]["duration_s"] - seconds) < 0.05, done.manifest["source"]["duration_s"]

    return check


VP9 = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "600k"]
VP8 = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "600k"]
X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p"]
OPUS = ["-c:a", "libopus", "-b:a", "64k", "-ac", "2"]
MP3 = ["-c:a", "libmp3lame", "-b:a", "96k", "-ar", "44100"]
PCM = ["-c:a", "pcm_s16le"]


def x264(pix_fmt: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", pix_fmt]


VALID: list[Case] = [
    Case("ts_h264_aac_broadcast", "valid", COMPLETE, ts_broadcast, make_cost=2,
         note="MPEG-TS, timestamps from 1.4 s, seeks by estimate, 2 chunks"),
    Case("mpeg_ps_mpeg2_open_gop", "valid", COMPLETE, mpeg_ps, note="video starts at 0.5 s"),
    Case("ts_timestamp_wrap_33bit", "valid", COMPLETE, ts_wrap, args=("--chunk", "2", "--segment", "2", "--gop", "1"),
         note="the 33-bit clock wraps inside a chunk and between chunks"),
    Case("mpeg2_anamorphic_16_9", "valid", COMPLETE, anamorphic, check=check_wide,
         note="720x576 shown at 16:9"),
    Case("mkv_h264_aac", "valid", COMPLETE, simple("mkv_h264", ".mkv", *X264, *AAC)),
    Case("webm_vp9_opus", "valid", COMPLETE, simple("vp9", ".webm", *VP9, *OPUS)),
    Case("webm_vp8_opus", "valid", COMPLETE, simple("vp8", ".webm", *VP8, *OPUS)),
    Case("hevc_in_mp4", "valid", COMPLETE, simple("hevc", ".mp4", *X265, "-tag:v", "hvc1", *AAC)),
    Case("hevc_in_mkv", "valid", COMPLETE, simple("hevc", ".mkv", *X265, *AAC)),
    Case("prores_in_mov", "valid", COMPLETE,
         simple("prores", ".mov", "-c:v", "prores_ks", "-profile:v", "0", "-pix_fmt", "yuv422p10le", *PCM)),
    Case("mjpeg_in_avi", "valid", COMPLETE,
         simple("mjpeg", ".avi", "-c:v", "mjpeg", "-q:v", "5", "-pix_fmt", "yuvj420p", *PCM)),
    Case("flv_h264_aac", "valid", COMPLETE, simple("h264", ".flv", *X264, *AAC)),
    Case("flv_sorenson_mp3", "valid", COMPLETE, simple("sorenson", ".flv", "-c:v", "flv", "-b:v", "800k", *MP3)),
    Case("avi_mpeg4_asp_bframes", "valid", COMPLETE,
         simple("xvid", ".avi", "-c:v", "mpeg4", "-q:v", "4", "-bf", "2", "-vtag", "XVID", *MP3)),
    Case("avi_msmpeg4v3", "valid", COMPLETE, simple("divx3", ".avi", "-c:v", "msmpeg4", "-b:v", "800k", *MP3)),
    Case("asf_wmv2_wmav2", "valid", COMPLETE, simple("wmv", ".wmv", "-c:v", "wmv2", "-b:v", "800k", "-c:a", "wmav2")),
    Case("mkv_h264_dts", "valid", COMPLETE,
         simple("dts", ".mkv", *X264, "-c:a", "dca", "-strict", "-2", "-ac", "2", "-ar", "48000")),
    Case("h264_10bit", "valid", COMPLETE, simple("h264_10bit", ".mp4", *x264("yuv420p10le"), *AAC)),
    Case("h264_422", "valid", COMPLETE, simple("h264_422", ".mp4", *x264("yuv422p"), *AAC)),
    Case("h264_444", "valid", COMPLETE, simple("h264_444", ".mp4", *x264("yuv444p"), *AAC)),
    Case("odd_size_641x361", "valid", COMPLETE, simple("odd", ".mp4", *x264("yuv444p"), *AAC, size="641x361")),
    Case("rotation_90", "valid", COMPLETE, rotated(90), check=check_rotation(90)),
    Case("rotation_180", "valid", COMPLETE, rotated(180), check=check_rotation(180)),
    Case("rotation_270", "valid", COMPLETE, rotated(270), check=check_rotation(270)),
    Case("interlaced_mpeg2_tff", "valid", COMPLETE, interlaced, check=check_progressive,
         note="deinterlaced by bwdif, one frame per frame"),
    Case("vfr_12s_hole", "valid", COMPLETE, vfr_with_hole, check=check_hole, make_cost=2,
         note="issue 9 item 2: frames keep their times in HLS and DASH"),
    Case("vfr_12s_hole_chunk_4s", "valid", COMPLETE, vfr_with_hole, check=check_hole, args=("--chunk", "4"),
         note="the hole spans whole chunks; a frame a tick before a chunk boundary"),
    Case("two_frames_an_hour_apart", "valid", COMPLETE, hour_apart, check=check_hour,
         note="a hole far longer than a chunk"),
    Case("stream_copy_cut_edit_list", "valid", COMPLETE, stream_copy_cut, check=check_edit_list,
         note="issue 9 item 4: edit list, negative start"),
    Case("ts_starts_mid_gop", "valid", COMPLETE, ts_mid_gop, check=check_undecodable_lead,
         note="issue 9 item 5: leading packets that cannot be decoded are not frames"),
    Case("ts_bit_rot_concealed", "valid", COMPLETE, bit_rot_ts,
         note="decided: isolated bit flips are transcoded as the decoders conceal them"),
    Case("ntsc_29.97fps", "valid", COMPLETE, simple("ntsc", ".mp4", *X264, *AAC, rate="30000/1001", duration=3.0)),
    Case("fps_120", "valid", COMPLETE, simple("fps120", ".mp4", *X264, *AAC, size="320x180", rate="120")),
    Case("still_image_10s", "valid", COMPLETE, simple("still", ".mp4", *X264, *AAC, rate="1/10", duration=10.0),
         note="a 10 s slideshow at 0.1 fps: one frame, shown for the whole video"),
    Case("slideshow_0.1fps_30s", "valid", COMPLETE,
         simple("slideshow", ".mp4", *X264, *AAC, rate="1/10", duration=30.0), note="3 frames, 10 s each"),
    Case("audio_5.1", "valid", COMPLETE,
         simple("surround", ".mp4", *X264, "-c:a", "aac", "-ac", "6"), check=check_stereo),
    Case("audio_mono", "valid", COMPLETE, simple("mono", ".mp4", *X264, "-c:a", "aac", "-ac", "1"), check=check_stereo),
    Case("audio_44.1khz", "valid", COMPLETE, simple("cd_rate", ".mp4", *X264, *AAC, "-ar", "44100"),
         check=check_stereo),
    Case("audio_8khz_pcm", "valid", COMPLETE,
         simple("phone", ".mov", *X264, "-c:a", "pcm_s16le", "-ar", "8000", "-ac", "1"), check=check_stereo),
    Case("audio_starts_2s_late", "valid", COMPLETE, delayed_audio,
         check=check_audio_window(silent=(0.1, 1.9), loud=(2.1, 3.9))),
    Case("audio_ends_early", "valid", COMPLETE,
         early_audio, check=check_audio_window(silent=(1.6, 3.9), loud=(0.1, 1.4))),
    Case("no_audio", "valid", COMPLETE, simple("silent", ".mp4", *X264, audio=False)),
    Case("two_audio_tracks", "valid", COMPLETE, two_audio_tracks, check=check_only_audio_and_video),
    Case("subtitles_and_data_streams", "valid", COMPLETE, subtitles_and_data, check=check_only_audio_and_video),
    Case("metadata_title_comment_chapters", "valid", COMPLETE, metadata_and_chapters,
         note="issue 9 item 8: no metadata in any published file"),
    Case("clip_2s", "valid", COMPLETE, simple("two_seconds", ".mp4", *X264, *AAC, duration=2.0),
         note="issue 9 item 9: every sprite thumbnails.vtt names exists"),
    Case("clip_1.5s", "valid", COMPLETE, simple("one_and_a_half", ".mp4", *X264, *AAC, duration=1.5)),
    Case("unicode_and_spaces_name", "valid", COMPLETE, unicode_name),
    Case("file_colon_decoy", "valid", COMPLETE, decoy, check=check_duration(3.0),
         note="the file named file:decoy.mp4, not decoy.mp4"),
]

CASES: list[Case] = HOSTILE + VALID
